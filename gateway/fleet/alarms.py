"""Alarm rules over the status document: raised once, repeated while they last, cleared once.

Theory of operation. `conditions(doc, rules, now)` (pure) turns the status document — the one
`Gateway.status()` builds, which `edgegw status` and `/metrics` read too — into the set of
conditions that hold now, each keyed by (kind, subject). `AlarmEngine.evaluate(held, now)` keeps,
per key, since when the condition holds; once it has held for the rule's `for_s` the alarm is
RAISED (one event), every `repeat_s` while it holds it is REPEATED, and the first evaluation where
it no longer holds CLEARS it (one event). A condition that ends before `for_s` raises nothing.
The engine's state is a plain dict that the service saves after each change, so a restart neither
raises an active alarm again nor forgets to clear it.

`uplink_not_delivering` is timed from an outage's start, kept in that state too (`outages`,
maintained by `uplink_outages`): an uplink's `last_delivery` and the gateway's `started_at` are
its generation's, so a reload or restart would read "nothing delivered yet" as "down for no time"
and clear the alarm, then raise it again `for_s` later; a box restarting more often than `for_s`
would never alarm. An outage begins when rows have waited `min(for_s, ONSET_S)` with no delivery
(at once in a generation that has delivered nothing yet), dated from the last delivery or the
generation's start; it ends only with a delivery after that date, or with the uplink gone from
the config. A kill thus loses at most ONSET_S of an outage that had not begun yet.

`render_mail` and `alarm_reading` turn an event into an e-mail (Japanese or English catalog) and
a Smart Data Models `Alert` entity.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.fleet.config import AlarmKind, AlarmRule, AlarmsConfig, Language, Severity
from gateway.records import Attribute, Lane, Reading, Source, TimeSource, iso_utc

__all__ = [
    "AlarmEngine",
    "AlarmEvent",
    "Condition",
    "EventKind",
    "alarm_reading",
    "conditions",
    "render_mail",
    "uplink_outages",
]

TOKYO = ZoneInfo("Asia/Tokyo")
CATALOGS = Path(__file__).with_name("catalogs")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# the Alert model's severities; the model has no category for a machine's own faults: "security" is
# the closest of its seven (traffic, naturalDisaster, weather, environment, health, security,
# agriculture), and subCategory "gatewayAlarm" tells a platform's rules these apart
_ALERT_SEVERITY = {Severity.CRITICAL: "critical", Severity.WARNING: "medium"}
ALERT_CATEGORY = "security"
ALERT_SUB_CATEGORY = "gatewayAlarm"


_FAILING = ("backing-off", "refused")
# kinds whose condition measures its own duration (since the outage began): the engine adds none
_TIMED_IN_CONDITION = frozenset({AlarmKind.UPLINK_NOT_DELIVERING})
# rows waiting this long with no delivery begin an outage (and a write of the state): a busy uplink
# delivering every few seconds never does
ONSET_S = 60.0


class EventKind(enum.Enum):
    RAISED = "raised"
    REPEATED = "repeated"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """A rule's condition holding now for one subject (an uplink, an adapter, a gauge, or "" for the box)."""

    kind: AlarmKind
    subject: str
    severity: Severity
    detail: str  # English, for logs and status; the mail's title comes from the catalog

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.subject}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmEvent:
    kind: EventKind
    condition: Condition
    raised_at: float
    at: float


def _rule_map(rules: Iterable[AlarmRule]) -> dict[AlarmKind, AlarmRule]:
    return {r.kind: r for r in rules}


def _pending(doc: Mapping[str, Any], uplink: Mapping[str, Any]) -> int:
    cursors = (doc.get("buffer") or {}).get("uplinks") or {}
    return sum((cursors.get(uplink["name"]) or {}).get("pending", {}).values())


def uplink_outages(
    doc: Mapping[str, Any], previous: Mapping[str, float], rules: Iterable[AlarmRule], now: float
) -> dict[str, float]:
    """Uplink name -> since when it has delivered nothing while rows waited (see the module docstring)."""
    rule = _rule_map(rules).get(AlarmKind.UPLINK_NOT_DELIVERING)
    if rule is None:
        return {}
    out: dict[str, float] = {}
    for uplink in doc.get("uplinks", ()):
        name, live = uplink["name"], uplink.get("last_delivery") or 0.0
        since = previous.get(name)
        if since is not None and live <= since:
            out[name] = since  # a generation that has delivered nothing yet says nothing about the outage
            continue
        # rows in the batch being retried are no longer "pending" (read past): a failing state counts too
        if not (_pending(doc, uplink) or uplink.get("failing") or uplink.get("state") in _FAILING):
            continue  # nothing waiting: an idle uplink is not failing
        start = live or doc.get("started_at") or now
        if not live or now - start >= min(rule.for_s, ONSET_S):
            out[name] = start
    return out


def conditions(
    doc: Mapping[str, Any], rules: Iterable[AlarmRule], now: float, outages: Mapping[str, float] | None = None
) -> list[Condition]:
    """The conditions of `rules` that hold in the status document `doc` at `now` (durations aside).

    `outages`: the engine's, carried across generations; None reads them from `doc` alone.
    """
    by_kind = _rule_map(rules)
    out: list[Condition] = []

    def add(kind: AlarmKind, subject: str, detail: str) -> None:
        rule = by_kind.get(kind)
        if rule is not None:
            out.append(Condition(kind=kind, subject=subject, severity=rule.severity, detail=detail))

    buffer = doc.get("buffer") or {}
    rule = by_kind.get(AlarmKind.UPLINK_NOT_DELIVERING)
    if outages is None:
        outages = uplink_outages(doc, {}, by_kind.values(), now)
    for uplink in doc.get("uplinks", ()):
        since = outages.get(uplink["name"])
        if rule is not None and since is not None and now - since >= rule.for_s:
            add(
                AlarmKind.UPLINK_NOT_DELIVERING,
                uplink["name"],
                f"uplink {uplink['name']}: nothing delivered for {now - since:.0f} s, {_pending(doc, uplink)} rows "
                f"waiting (state {uplink.get('state')}, last error: {uplink.get('last_error') or 'none'})",
            )
    fleet = doc.get("fleet") or {}
    stopped_by_safe_mode = set(fleet.get("safe_mode", {}).get("stopped_adapters", ()))
    for adapter in doc.get("adapters", ()):
        if adapter.get("state") != "running" and adapter["name"] not in stopped_by_safe_mode:
            add(
                AlarmKind.ADAPTER_DOWN,
                adapter["name"],
                f"adapter {adapter['name']}: {adapter.get('state')}, last error: {adapter.get('last_error') or 'none'}",
            )
        for device in _offline_devices(adapter.get("diagnostics") or {}):
            add(AlarmKind.DEVICE_DOWN, f"{adapter['name']}/{device}", f"device {device} of {adapter['name']}: offline")
    rule = by_kind.get(AlarmKind.BUFFER_FULL)
    max_rows = (fleet.get("buffer_cap") or {}).get("max_rows")
    if rule is not None and max_rows:
        percent = 100.0 * buffer.get("rows", 0) / max_rows
        if percent >= rule.threshold:
            add(AlarmKind.BUFFER_FULL, "", f"buffer: {percent:.1f} % of max_rows {max_rows} used")
    system = fleet.get("system") or {}
    rule = by_kind.get(AlarmKind.DISK_LOW)
    free = system.get("disk_free_percent")
    if rule is not None and free is not None and free < rule.threshold:
        add(AlarmKind.DISK_LOW, "", f"disk: {system['disk_free_percent']:.1f} % free in the data directory")
    if fleet.get("safe_mode", {}).get("active"):
        add(AlarmKind.CRASH_LOOP, "", f"safe mode: {fleet['safe_mode'].get('reason', '')}")
    rule = by_kind.get(AlarmKind.BACKUP_FAILED)
    backup = fleet.get("backup")
    if rule is not None and backup is not None:
        age_h = (now - backup["at"]) / 3600 if backup.get("at") is not None else None
        if not backup.get("ok", False):
            add(AlarmKind.BACKUP_FAILED, "", "backup: the last one failed")
        elif age_h is not None and rule.threshold and age_h > rule.threshold:
            add(AlarmKind.BACKUP_FAILED, "", f"backup: the last one is {age_h:.0f} h old, over {rule.threshold:g} h")
    if system.get("clock_synchronised") is False:
        add(AlarmKind.CLOCK_UNSYNCHRONISED, "", "clock: the kernel reports the clock as not synchronised")
    for source in fleet.get("river_alerts", ()):
        add(AlarmKind.RIVER_ALERT, source, f"river alert raised for {source}")
    return out


def _offline_devices(diagnostics: Mapping[str, Any]) -> list[str]:
    """The devices an adapter reports offline: a top-level `offline` list (a family's diagnostics contract)."""
    offline = diagnostics.get("offline")
    return [str(d) for d in offline] if isinstance(offline, list) else []


class AlarmEngine:
    """Durations, repeats and clears; state as a JSON-able dict (see the module docstring)."""

    def __init__(self, config: AlarmsConfig, state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.rules = _rule_map(config.rules)
        self.pending: dict[str, float] = {}  # key -> since when it holds, not raised yet
        self.active: dict[str, dict[str, Any]] = {}  # key -> {condition fields, raised_at, last_sent}
        self.outages: dict[str, float] = {}  # uplink -> since when it delivered nothing (uplink_outages)
        if state:
            self.active = {k: dict(v) for k, v in state.get("active", {}).items()}
            outages = state.get("outages")
            if isinstance(outages, dict):
                self.outages = {str(k): float(v) for k, v in outages.items() if isinstance(v, int | float)}
        rule = self.rules.get(AlarmKind.UPLINK_NOT_DELIVERING)
        for entry in self.active.values():
            raised = entry.get("raised_at")
            if rule is not None and entry.get("kind") == rule.kind.value and isinstance(raised, int | float):
                # saved by a release that kept no outages: it had lasted for_s when it was raised
                self.outages.setdefault(str(entry.get("subject")), raised - rule.for_s)

    def state(self) -> dict[str, Any]:
        return {"active": self.active, "outages": self.outages}

    def evaluate(self, held: Iterable[Condition], now: float) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        current = {c.key: c for c in held}
        for key in list(self.pending):
            if key not in current:
                del self.pending[key]  # ended before its duration: never raised
        for key, cond in current.items():
            active = self.active.get(key)
            if active is not None:
                if now - active["last_sent"] >= self.config.repeat_s:
                    active["last_sent"] = now
                    events.append(
                        AlarmEvent(kind=EventKind.REPEATED, condition=cond, raised_at=active["raised_at"], at=now)
                    )
                active["detail"] = cond.detail
                continue
            since = self.pending.setdefault(key, now)
            for_s = 0.0 if cond.kind in _TIMED_IN_CONDITION else self.rules[cond.kind].for_s
            if now - since >= for_s:
                del self.pending[key]
                self.active[key] = {
                    "kind": cond.kind.value,
                    "subject": cond.subject,
                    "severity": cond.severity.value,
                    "detail": cond.detail,
                    "raised_at": now,
                    "last_sent": now,
                }
                events.append(AlarmEvent(kind=EventKind.RAISED, condition=cond, raised_at=now, at=now))
        for key in list(self.active):
            if key not in current:
                entry = self.active.pop(key)
                cond = Condition(
                    kind=AlarmKind(entry["kind"]),
                    subject=entry["subject"],
                    severity=Severity(entry["severity"]),
                    detail=entry["detail"],
                )
                events.append(AlarmEvent(kind=EventKind.CLEARED, condition=cond, raised_at=entry["raised_at"], at=now))
        return events

    def summary(self) -> list[dict[str, Any]]:
        """The active alarms, for the status document (and so `edgegw status`, the web UI and /metrics)."""
        return [dict(v, key=k) for k, v in sorted(self.active.items())]


@functools.cache
def catalog(language: Language) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((CATALOGS / f"{language.value}.json").read_text(encoding="utf-8"))
    return loaded


def alarm_id(gateway: str, cond: Condition) -> str:
    subject = _UNSAFE.sub("_", cond.subject)[:64]
    return f"{gateway}-{cond.kind.value}" + (f"-{subject}" if subject else "")


def _local(t: float) -> str:
    return datetime.fromtimestamp(t, TOKYO).strftime("%Y-%m-%d %H:%M:%S JST")


def render_mail(event: AlarmEvent, *, gateway: str, language: Language) -> tuple[str, str]:
    """(subject, text) of the mail for `event`, in `language`; times shown in Asia/Tokyo."""
    cat = catalog(language)
    cond = event.condition
    severity = cat[f"severity.{cond.severity.value}"]
    title = cat[f"title.{cond.kind.value}"].format(subject=cond.subject)
    fields = {
        "gateway": gateway,
        "title": title,
        "severity": severity,
        "detail": cond.detail,
        "raised_at": _local(event.raised_at),
        "cleared_at": _local(event.at),
        "alarm_id": alarm_id(gateway, cond),
    }
    kind = event.kind.value
    return cat[f"subject.{kind}"].format(**fields), cat[f"body.{kind}"].format(**fields)


def alarm_reading(event: AlarmEvent, *, gateway: str, device_entity_id: str) -> Reading:
    """The alarm as a Smart Data Models `Alert` on the alert lane: one entity per alarm, updated on clear."""
    cond = event.condition
    issued = datetime.fromtimestamp(event.raised_at, UTC)
    attrs = {
        "category": Attribute(value=ALERT_CATEGORY, type="Text"),
        "subCategory": Attribute(value=ALERT_SUB_CATEGORY, type="Text"),
        "severity": Attribute(value=_ALERT_SEVERITY[cond.severity], type="Text"),
        "alertSource": Attribute(value=device_entity_id, type="Relationship"),
        "dateIssued": Attribute(value=iso_utc(issued), type="DateTime"),
        "description": Attribute(value=_ngsi_text(cond.detail), type="Text"),
        "alarmKind": Attribute(value=cond.kind.value, type="Text"),
        "alarmState": Attribute(value="cleared" if event.kind is EventKind.CLEARED else "active", type="Text"),
    }
    if event.kind is EventKind.CLEARED:
        attrs["validTo"] = Attribute(value=iso_utc(datetime.fromtimestamp(event.at, UTC)), type="DateTime")
    return Reading(
        entity_id=f"urn:ngsi-ld:Alert:{alarm_id(gateway, cond)}-{int(event.raised_at)}",
        entity_type="Alert",
        attributes=attrs,
        observed_at=datetime.fromtimestamp(event.at, UTC),
        time_source=TimeSource.GATEWAY,
        source=Source(adapter="fleet"),
        lane=Lane.ALERT,
    )


_FORBIDDEN = re.compile(r"[<>\"'=;()]")  # Orion refuses these in values


def _ngsi_text(text: str) -> str:
    return _FORBIDDEN.sub(" ", text)[:256]

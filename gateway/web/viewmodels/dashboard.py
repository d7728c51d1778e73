"""The dashboard's rows from the control socket's `status` document: gateway, host, adapters, uplinks, buffer, alerts.

Every field is read defensively (`.get` with a default): the document comes from another process,
possibly of another version, and a missing field must show as "—", never as a 500. Texts that a
user reads in their language (states) are left as keys for the template (`state.<value>`); numbers
and times stay numbers, formatted by the template's filters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.fleet.alarms import catalog as alarm_catalog
from gateway.fleet.config import Language as AlarmLanguage
from gateway.fleet.config import Severity as AlarmSeverity
from gateway.web.viewmodels.formats import Translate, duration, number, percent_text, size
from gateway.web.viewmodels.latest import UNIT_SYMBOLS, value_text

__all__ = [
    "KNOWN_STATES",
    "LANES",
    "SEVERITIES",
    "AdapterRow",
    "AlertRow",
    "CapFill",
    "Dashboard",
    "DeviceRow",
    "HostRow",
    "UplinkRow",
    "alert_items",
    "cells",
    "dashboard",
    "percent",
    "problem_texts",
    "state_text",
]

LANES = ("alert", "normal", "bulk")
# states a technician should look at: shown with a warning style
_BAD_STATES = frozenset({"backing-off", "refused", "stopped", "offline", "failing"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRow:
    name: str
    state: str
    detail: str  # the bus or url it is on, and its last error if any

    @property
    def bad(self) -> bool:
        return self.state in _BAD_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterRow:
    name: str
    type: str
    state: str
    since: float | None
    emitted: int
    restarts: int
    errors: int  # malformed + invalid
    last_error: str
    summary: str
    devices: tuple[DeviceRow, ...] = ()

    @property
    def bad(self) -> bool:
        return self.state in _BAD_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkRow:
    name: str
    type: str
    state: str
    backlog: Mapping[str, int]  # lane -> rows still to deliver
    oldest_pending_age_s: float | None
    last_delivery: float | None
    last_error: str
    last_rejection: str
    delivered: int
    dead_letters: int

    @property
    def bad(self) -> bool:
        return self.state in _BAD_STATES

    @property
    def backlog_total(self) -> int:
        return sum(self.backlog.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class CapFill:
    name: str  # rows, bytes, age
    value: float | None
    cap: float | None  # None: no cap configured
    percent: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRow:
    entity_id: str
    name: str
    level: str
    since: float | str | None
    value: Any
    unit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmRow:
    """One of the gateway's own active alarms (gateway/fleet): what `edgegw status` and the alarm e-mails say."""

    kind: str
    subject: str
    severity: str
    detail: str
    raised_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRow:
    uptime_s: float | None
    clock_synced: bool | None
    cpu_percent: float | None
    load1: float | None
    mem_percent: float | None
    mem_total: int | None
    disk_percent: float | None  # used
    disk_free: int | None
    disk_total: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    gateway: str
    version: str
    started_at: float | None
    host: HostRow
    adapters: tuple[AdapterRow, ...]
    uplinks: tuple[UplinkRow, ...]
    caps: tuple[CapFill, ...]
    buffer_rows: int
    dropped: int
    alerts: tuple[AlertRow, ...]
    alarms: tuple[AlarmRow, ...] = ()
    safe_mode: str = ""  # why the gateway is in safe mode; empty when it is not
    problems: tuple[str, ...] = field(default=())  # short keys of what is wrong, for the page's headline
    offline_devices: int = 0  # devices offline under any adapter, running or not: the headline's count


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def percent(value: float | None, cap: float | None) -> float | None:
    if value is None or cap is None or cap <= 0:
        return None
    return min(100.0, 100.0 * value / cap)


def _devices(diagnostics: Mapping[str, Any]) -> tuple[DeviceRow, ...]:
    """Per-device state from a family's diagnostics: Modbus lists devices per bus; others have a `devices` map
    of name → `{"state": …, "last_error": …}`, or name → connected (a bool: the scanner's hot-plugged readers)."""
    rows: list[DeviceRow] = []
    for bus_name, bus in _map(diagnostics.get("buses")).items():
        bus = _map(bus)
        for name, dev in _map(bus.get("devices")).items():
            dev = _map(dev)
            detail = f"{bus_name} ({_str(bus.get('port'))})"
            if dev.get("last_error"):
                detail += f": {_str(dev.get('last_error'))}"
            rows.append(DeviceRow(name=str(name), state=_str(dev.get("state")) or "unknown", detail=detail))
    for name, dev in _map(diagnostics.get("devices")).items():
        if isinstance(dev, bool):
            rows.append(DeviceRow(name=str(name), state="online" if dev else "offline", detail=""))
            continue
        dev = _map(dev)
        rows.append(
            DeviceRow(name=str(name), state=_str(dev.get("state")) or "unknown", detail=_str(dev.get("last_error")))
        )
    return tuple(rows)


def _adapter(doc: Mapping[str, Any]) -> AdapterRow:
    diagnostics = _map(doc.get("diagnostics"))
    return AdapterRow(
        name=_str(doc.get("name")),
        type=_str(doc.get("type")),
        state=_str(doc.get("state")) or "unknown",
        since=_num(doc.get("since")),
        emitted=_int(doc.get("emitted")),
        restarts=_int(doc.get("restarts")),
        errors=_int(doc.get("malformed")) + _int(doc.get("invalid")),
        last_error=_str(doc.get("last_error")),
        summary=_str(diagnostics.get("summary")),
        devices=_devices(diagnostics),
    )


def _uplink(doc: Mapping[str, Any], buffer: Mapping[str, Any]) -> UplinkRow:
    name = _str(doc.get("name"))
    cursor = _map(_map(buffer.get("uplinks")).get(name))
    pending = _map(cursor.get("pending"))
    backlog = {lane: _int(pending.get(lane)) for lane in LANES}
    # the control socket may give the age per uplink; otherwise the buffer's oldest row is the bound while any is pending
    age = _num(cursor.get("oldest_pending_age_s"))
    if age is None and sum(backlog.values()) > 0:
        age = _num(buffer.get("oldest_observed_age_s"))
    last = _num(doc.get("last_delivery"))
    return UplinkRow(
        name=name,
        type=_str(doc.get("type")),
        state=_str(doc.get("state")) or "unknown",
        backlog=backlog,
        oldest_pending_age_s=age,
        last_delivery=last if last else None,
        last_error=_str(doc.get("last_error")),
        last_rejection=_str(doc.get("last_rejection")),
        delivered=_int(doc.get("delivered")),
        dead_letters=_int(cursor.get("dead_letters")) or _int(_map(buffer.get("dead_letters")).get(name)),
    )


def _host(doc: Mapping[str, Any]) -> HostRow:
    mem_total, mem_available = _num(doc.get("mem_total")), _num(doc.get("mem_available"))
    disk_total, disk_free = _num(doc.get("disk_total")), _num(doc.get("disk_free"))
    synced = doc.get("clock_synced")
    return HostRow(
        uptime_s=_num(doc.get("uptime_s")),
        clock_synced=synced if isinstance(synced, bool) else None,
        cpu_percent=_num(doc.get("cpu_percent")),
        load1=_num(doc.get("load1")),
        mem_percent=percent(mem_total - mem_available, mem_total) if mem_total and mem_available is not None else None,
        mem_total=int(mem_total) if mem_total else None,
        disk_percent=percent(disk_total - disk_free, disk_total) if disk_total and disk_free is not None else None,
        disk_free=int(disk_free) if disk_free is not None else None,
        disk_total=int(disk_total) if disk_total else None,
    )


def _caps(buffer: Mapping[str, Any], caps: Mapping[str, Any]) -> tuple[CapFill, ...]:
    rows, size, age = _num(buffer.get("rows")), _num(buffer.get("bytes")), _num(buffer.get("oldest_appended_age_s"))
    max_rows, max_bytes, max_age = _num(caps.get("max_rows")), _num(caps.get("max_bytes")), _num(caps.get("max_age_s"))
    return (
        CapFill(name="rows", value=rows, cap=max_rows, percent=percent(rows, max_rows)),
        CapFill(name="bytes", value=size, cap=max_bytes, percent=percent(size, max_bytes)),
        CapFill(name="age", value=age, cap=max_age, percent=percent(age, max_age)),
    )


def _alert(doc: Mapping[str, Any]) -> AlertRow:
    since = doc.get("since")
    return AlertRow(
        entity_id=_str(doc.get("entity_id")),
        name=_str(doc.get("name")),
        level=_str(doc.get("level")),
        since=since if isinstance(since, int | float | str) and not isinstance(since, bool) else None,
        value=doc.get("value"),
        unit=_str(doc.get("unit")),
    )


def _alarm(doc: Mapping[str, Any]) -> AlarmRow:
    return AlarmRow(
        kind=_str(doc.get("kind")),
        subject=_str(doc.get("subject")),
        severity=_str(doc.get("severity")),
        detail=_str(doc.get("detail")),
        raised_at=_num(doc.get("raised_at")),
    )


def dashboard(status: Mapping[str, Any]) -> Dashboard:
    buffer = _map(status.get("buffer"))
    fleet = _map(status.get("fleet"))  # present with a [fleet] section only
    alarms = tuple(_alarm(_map(a)) for a in _seq(fleet.get("alarms")))
    safe = _map(fleet.get("safe_mode"))
    safe_mode = (_str(safe.get("reason")) or "on") if safe.get("active") else ""
    adapters = tuple(_adapter(_map(a)) for a in _seq(status.get("adapters")))
    uplinks = tuple(_uplink(_map(u), buffer) for u in _seq(status.get("uplinks")))
    caps = _caps(buffer, _map(status.get("buffer_caps")))
    dropped = sum(_int(n) for reasons in _map(buffer.get("dropped")).values() for n in _map(reasons).values())
    host = _host(_map(status.get("host")))
    # a running adapter says nothing of its devices: a gauge silent for hours is seen only in its own row
    offline_devices = sum(1 for a in adapters for d in a.devices if d.state == "offline")
    problems: list[str] = []
    if any(a.bad for a in adapters):
        problems.append("adapters")
    if offline_devices:
        problems.append("devices")
    if any(u.bad for u in uplinks):
        problems.append("uplinks")
    if buffer.get("disk_full"):
        problems.append("disk_full")
    if host.clock_synced is False:
        problems.append("clock")
    if alarms:
        problems.append("alarms")
    if safe_mode:
        problems.append("safe_mode")
    return Dashboard(
        gateway=_str(status.get("gateway")),
        version=_str(status.get("version")),
        started_at=_num(status.get("started_at")),
        host=host,
        adapters=adapters,
        uplinks=uplinks,
        caps=caps,
        buffer_rows=_int(buffer.get("rows")),
        dropped=dropped,
        alerts=tuple(_alert(_map(a)) for a in _seq(status.get("alerts"))),
        alarms=alarms,
        safe_mode=safe_mode,
        problems=tuple(problems),
        offline_devices=offline_devices,
    )


# states with a message of their own (`state.<value>`); any other value is shown as the gateway said it
KNOWN_STATES = frozenset(
    {
        "starting",
        "running",
        "backing-off",
        "stopped",
        "idle",
        "sending",
        "waiting",
        "refused",
        "online",
        "offline",
        "unknown",
    }
)


def state_text(state: str, t: Translate) -> str:
    return t(f"state.{state}") if state in KNOWN_STATES else state


def cells(view: Dashboard, t: Translate, jst: Callable[[Any], str]) -> dict[str, str]:
    """Every live cell of the dashboard as display text, by its `data-live` key: the page renders them and
    /api/status sends them again, so the first paint and every refresh show the same texts."""
    host = view.host
    out: dict[str, str] = {
        "gateway": view.gateway,
        "version": view.version,
        "started": jst(view.started_at) if view.started_at else "—",
        "uptime": duration(host.uptime_s, t),
        "clock": t("dashboard.clock_synced")
        if host.clock_synced
        else t("dashboard.clock_not_synced")
        if host.clock_synced is False
        else t("dashboard.unknown"),
        "cpu": t("dashboard.cpu_load", percent=percent_text(host.cpu_percent), load=number(host.load1)),
        "memory": t("dashboard.used_of", percent=percent_text(host.mem_percent), total=size(host.mem_total)),
        "disk": t("dashboard.free_of", free=size(host.disk_free), total=size(host.disk_total)),
        "buffer_rows": number(view.buffer_rows),
        "dropped": number(view.dropped),
    }
    for a in view.adapters:
        key = f"adapter.{a.name}"
        out[f"{key}.state"] = state_text(a.state, t)
        out[f"{key}.since"] = jst(a.since) if a.since else "—"
        out[f"{key}.emitted"] = number(a.emitted)
        out[f"{key}.errors"] = number(a.errors)
        out[f"{key}.restarts"] = number(a.restarts)
        out[f"{key}.last_error"] = a.last_error
        out[f"{key}.summary"] = a.summary
        for d in a.devices:
            out[f"device.{a.name}.{d.name}.state"] = state_text(d.state, t)
            out[f"device.{a.name}.{d.name}.detail"] = d.detail
    for u in view.uplinks:
        key = f"uplink.{u.name}"
        out[f"{key}.state"] = state_text(u.state, t)
        for lane, rows in u.backlog.items():
            out[f"{key}.backlog.{lane}"] = number(rows)
        out[f"{key}.oldest"] = duration(u.oldest_pending_age_s, t) if u.oldest_pending_age_s is not None else "—"
        out[f"{key}.last_delivery"] = jst(u.last_delivery) if u.last_delivery else t("dashboard.never")
        out[f"{key}.last_error"] = u.last_error or u.last_rejection
        out[f"{key}.delivered"] = number(u.delivered)
        out[f"{key}.dead_letters"] = number(u.dead_letters)
    for c in view.caps:
        value = (
            size(c.value)
            if c.name == "bytes"
            else duration(c.value, t)
            if c.name == "age"
            else number(None if c.value is None else int(c.value))
        )
        cap = (
            size(c.cap)
            if c.name == "bytes"
            else duration(c.cap, t)
            if c.name == "age"
            else number(None if c.cap is None else int(c.cap))
        )
        out[f"cap.{c.name}"] = (
            t("dashboard.cap_fill", value=value, cap=cap, percent=percent_text(c.percent))
            if c.cap is not None
            else t("dashboard.cap_none", value=value)
        )
    return out


# the Smart Data Model Alert's severities (gateway.processing.river.Severity), each with a message
SEVERITIES = frozenset({"informational", "low", "medium", "high", "critical"})
_ALARM_SEVERITIES = frozenset(s.value for s in AlarmSeverity)


def alert_items(view: Dashboard, t: Translate, jst: Callable[[Any], str]) -> list[dict[str, str]]:
    """The active alerts as texts, for the page's list and its refresh; `severity` stays a CSS-safe word."""
    return [
        {
            "entity_id": a.entity_id,
            "name": a.name,
            "severity": a.level if a.level in SEVERITIES else "unknown",
            "level": t(f"alert.{a.level}") if a.level in SEVERITIES else a.level,
            "value": f"{value_text(a.value)} {UNIT_SYMBOLS.get(a.unit, a.unit)}".strip(),
            "since": jst(a.since) if a.since not in (None, "") else "",
        }
        for a in view.alerts
    ]


def alarm_items(view: Dashboard, lang: str, jst: Callable[[Any], str]) -> list[dict[str, str]]:
    """The gateway's active alarms worded by the alarm catalogs (gateway/fleet/catalogs): the same titles as
    the alarm e-mails, in the page's language; `severity` stays a CSS-safe word."""
    cat = alarm_catalog(AlarmLanguage.EN if lang == "en" else AlarmLanguage.JA)
    items = []
    for a in view.alarms:
        title = cat.get(f"title.{a.kind}")
        items.append(
            {
                "severity": a.severity if a.severity in _ALARM_SEVERITIES else "unknown",
                "level": cat.get(f"severity.{a.severity}", a.severity),
                "title": title.format(subject=a.subject) if title else f"{a.kind} {a.subject}".strip(),
                "detail": a.detail,
                "since": jst(a.raised_at) if a.raised_at is not None else "",
            }
        )
    return items


def problem_texts(view: Dashboard, t: Translate) -> list[str]:
    return [
        t("dashboard.problem.devices", count=number(view.offline_devices))
        if p == "devices"
        else t(f"dashboard.problem.{p}")
        for p in view.problems
    ]

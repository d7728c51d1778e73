"""The gateway as a Smart Data Models `Device` entity, built from the status document (pure, no I/O).

Standard attributes: deviceState, softwareVersion, dateLastValueReported, ipAddress,
controlledProperty (the model requires it), dateObserved. Extra attributes, documented in
gateway/fleet/README.md: cpuLoad, memoryUsed, diskFree (percent, unit P1), clockSynchronised,
lastBackup, adaptersUp, adaptersDown, uplinks (per uplink: state, backlog, oldest pending age),
safeMode, activeAlarms, availability (yesterday's figure), remoteConfig (the last remote-config step). Every Device reading goes on the alert
lane: a state change must overtake the bulk of readings, and one entity on one lane keeps its
updates in order (a periodic report never lands after a newer change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.records import Attribute, Lane, Reading, Source, TimeSource, iso_utc

__all__ = ["DEVICE_TYPE", "DeviceState", "device_entity_id", "device_reading", "device_state"]

DEVICE_TYPE = "Device"
PERCENT = "P1"  # UN/CEFACT percent
SECOND = "SEC"


class DeviceState:
    OK = "ok"  # everything runs and delivers
    DEGRADED = "degraded"  # an adapter down, an uplink failing, or an alarm active
    SAFE_MODE = "safeMode"  # a crash loop: failing adapters stopped, uplinks draining


def device_entity_id(gateway_id: str, configured: str | None) -> str:
    return configured or f"urn:ngsi-ld:Device:{gateway_id}"


def device_state(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(deviceState, reason): the one summary a platform's dashboard colours a box by."""
    fleet = doc.get("fleet") or {}
    safe = fleet.get("safe_mode") or {}
    if safe.get("active"):
        return DeviceState.SAFE_MODE, str(safe.get("reason", ""))
    down = [a["name"] for a in doc.get("adapters", ()) if a.get("state") != "running"]
    failing = [
        u["name"] for u in doc.get("uplinks", ()) if u.get("failing") or u.get("state") in ("backing-off", "refused")
    ]
    alarms = fleet.get("alarms") or []
    reasons = []
    if down:
        reasons.append("adapters down: " + ", ".join(down))
    if failing:
        reasons.append("uplinks failing: " + ", ".join(failing))
    if alarms:
        reasons.append(f"{len(alarms)} alarm(s) active")
    return (DeviceState.DEGRADED, "; ".join(reasons)) if reasons else (DeviceState.OK, "")


def _uplinks(doc: Mapping[str, Any]) -> dict[str, Any]:
    buffer = doc.get("buffer") or {}
    cursors = buffer.get("uplinks") or {}
    oldest = buffer.get("oldest_appended_age_s")
    out = {}
    for u in doc.get("uplinks", ()):
        backlog = int(sum((cursors.get(u["name"]) or {}).get("pending", {}).values()))
        # the buffer keeps a row until every uplink passed it, so its oldest row is the oldest pending
        # row of the uplink furthest behind: an upper bound for the others
        out[u["name"]] = {
            "state": u.get("state"),
            "backlog": backlog,
            "oldestPendingAge": round(oldest, 1) if backlog and oldest is not None else 0,
        }
    return out


def _text(value: str) -> str:
    # Orion refuses these characters in values (NGSI.md); a reason quotes names and errors
    return "".join(" " if c in "<>\"'=;()" else c for c in value)[:256]


def device_reading(
    doc: Mapping[str, Any],
    *,
    entity_id: str,
    now: datetime,
    ip_addresses: Sequence[str] = (),
    controlled_property: Sequence[str] = (),
    availability: Mapping[str, Any] | None = None,
) -> Reading:
    """The Device entity's reading for the status document `doc`."""
    fleet = doc.get("fleet") or {}
    system = fleet.get("system") or {}
    state, reason = device_state(doc)
    adapters = doc.get("adapters", ())
    attrs: dict[str, Attribute] = {
        "deviceState": Attribute(
            value=state, type="Text", metadata={"reason": {"type": "Text", "value": _text(reason)}}
        ),
        "softwareVersion": Attribute(value=str(doc.get("version", "")), type="Text"),
        "controlledProperty": Attribute(value=list(controlled_property), type="StructuredValue"),
        "dateObserved": Attribute(value=iso_utc(now), type="DateTime"),
        "adaptersUp": Attribute(value=sum(1 for a in adapters if a.get("state") == "running"), type="Number"),
        "adaptersDown": Attribute(
            value=[a["name"] for a in adapters if a.get("state") != "running"], type="StructuredValue"
        ),
        "uplinks": Attribute(value=_uplinks(doc), type="StructuredValue"),
        "safeMode": Attribute(value=bool((fleet.get("safe_mode") or {}).get("active")), type="Boolean"),
        "activeAlarms": Attribute(value=len(fleet.get("alarms") or []), type="Number"),
    }
    if ip_addresses:
        attrs["ipAddress"] = Attribute(value=list(ip_addresses), type="StructuredValue")
    delivered = [u.get("last_delivery") or 0 for u in doc.get("uplinks", ())]
    if any(delivered):
        attrs["dateLastValueReported"] = Attribute(
            value=iso_utc(datetime.fromtimestamp(max(delivered), UTC)), type="DateTime"
        )
    for name, key in (
        ("cpuLoad", "cpu_load_percent"),
        ("memoryUsed", "memory_used_percent"),
        ("diskFree", "disk_free_percent"),
    ):
        if system.get(key) is not None:
            attrs[name] = Attribute(value=round(float(system[key]), 1), type="Number", unit=PERCENT)
    if system.get("clock_synchronised") is not None:
        attrs["clockSynchronised"] = Attribute(value=bool(system["clock_synchronised"]), type="Boolean")
    backup = fleet.get("backup")
    if backup:
        attrs["lastBackup"] = Attribute(value=iso_utc(datetime.fromtimestamp(backup["at"], UTC)), type="DateTime")
    remote = (fleet.get("remote_config") or {}).get("events") or []
    if remote:  # the last step of the signed remote configuration, so the platform sees it happen
        last = remote[-1]
        attrs["remoteConfig"] = Attribute(
            value={
                "serial": last.get("serial"),
                "step": last.get("step"),
                "at": iso_utc(datetime.fromtimestamp(last.get("at", 0), UTC)),
                "detail": _text(str(last.get("detail", ""))),
            },
            type="StructuredValue",
        )
    if availability is not None:
        attrs["availability"] = Attribute(value=dict(availability), type="StructuredValue")
    return Reading(
        entity_id=entity_id,
        entity_type=DEVICE_TYPE,
        attributes=attrs,
        observed_at=now,
        time_source=TimeSource.GATEWAY,
        source=Source(adapter="fleet"),
        lane=Lane.ALERT,
    )

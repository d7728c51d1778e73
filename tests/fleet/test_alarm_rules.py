"""Each alarm rule against a status document, and the engine's raise-once / repeat / clear-once over time."""

from __future__ import annotations

from typing import Any

from gateway.fleet.alarms import AlarmEngine, EventKind, conditions
from gateway.fleet.config import AlarmsConfig


def doc(**fleet: Any) -> dict[str, Any]:
    return {
        "started_at": 0.0,
        "adapters": [
            {"name": "rs485", "state": "running", "diagnostics": {"offline": ["pump-2"]}},
            {"name": "scanner", "state": "backing-off", "last_error": "OSError: no device"},
        ],
        "uplinks": [{"name": "orion", "state": "idle", "last_delivery": 100.0}],
        "buffer": {"rows": 4500, "uplinks": {"orion": {"pending": {"normal": 0}}}},
        "fleet": {
            "buffer_cap": {"max_rows": 5000},
            "system": {"disk_free_percent": 7.5, "clock_synchronised": False},
            "safe_mode": {"active": True, "reason": "adapter(s) scanner restarted 5 times", "stopped_adapters": []},
            "backup": {"at": 0.0, "ok": True},
            "river_alerts": ["urn:ngsi-ld:WaterObserved:kuma-1"],
            **fleet,
        },
    }


def test_every_rule_reads_its_part_of_the_status() -> None:
    rules = AlarmsConfig().rules
    held = {c.key: c.detail for c in conditions(doc(), rules, 48 * 3600 + 1)}
    assert held == {
        "adapter_down:scanner": "adapter scanner: backing-off, last error: OSError: no device",
        "device_down:rs485/pump-2": "device pump-2 of rs485: offline",
        "buffer_full:": "buffer: 90.0 % of max_rows 5000 used",
        "disk_low:": "disk: 7.5 % free in the data directory",
        "crash_loop:": "safe mode: adapter(s) scanner restarted 5 times",
        "backup_failed:": "backup: the last one is 48 h old, over 48 h",
        "clock_unsynchronised:": "clock: the kernel reports the clock as not synchronised",
        "river_alert:urn:ngsi-ld:WaterObserved:kuma-1": "river alert raised for urn:ngsi-ld:WaterObserved:kuma-1",
    }
    # an adapter safe mode stopped is not "down" again, and an empty rule list watches nothing
    stopped = doc(safe_mode={"active": True, "reason": "r", "stopped_adapters": ["scanner"]})
    assert "adapter_down:scanner" not in {c.key for c in conditions(stopped, rules, 0)}
    assert conditions(doc(), (), 0) == []


def test_raised_once_after_its_duration_repeated_then_cleared_once_and_remembered_across_restarts() -> None:
    config = AlarmsConfig.model_validate(
        {"rules": [{"kind": "disk_low", "threshold": 10, "for_s": 600}], "repeat_s": 3600}
    )
    low = conditions(doc(), config.rules, 0)
    engine = AlarmEngine(config)
    assert engine.evaluate(low, 0) == []
    assert engine.evaluate([], 300) == []  # ended before its duration: never raised
    assert engine.evaluate(low, 400) == []
    assert [e.kind for e in engine.evaluate(low, 1000)] == [EventKind.RAISED]
    assert engine.evaluate(low, 1010) == []
    assert [e.kind for e in engine.evaluate(low, 4600)] == [EventKind.REPEATED]
    restarted = AlarmEngine(config, engine.state())  # the gateway restarted meanwhile
    assert restarted.evaluate(low, 4700) == []  # not raised again
    cleared = restarted.evaluate([], 4800)
    assert [(e.kind, e.raised_at, e.at) for e in cleared] == [(EventKind.CLEARED, 1000, 4800)]
    assert restarted.evaluate([], 4900) == []

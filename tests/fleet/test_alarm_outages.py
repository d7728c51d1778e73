"""The outage clock of uplink_not_delivering, as pure functions: what starts an outage, what alone ends it.

tests/fleet/test_alarm_across_generations.py runs the same over real reloads and restarts.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.fleet.alarms import AlarmEngine, EventKind, conditions, uplink_outages
from gateway.fleet.config import AlarmsConfig

KEY = "uplink_not_delivering:platform"


RULES = AlarmsConfig.model_validate({"rules": [{"kind": "uplink_not_delivering", "for_s": 300}]})


def generation(started_at: float, last_delivery: float, *, pending: int, state: str = "idle") -> dict[str, Any]:
    return {
        "started_at": started_at,
        "uplinks": [{"name": "platform", "state": state, "last_delivery": last_delivery}],
        "buffer": {"uplinks": {"platform": {"pending": {"normal": pending}}}},
    }


def tick(engine: AlarmEngine, doc: dict[str, Any], now: float) -> list[EventKind]:
    engine.outages = uplink_outages(doc, engine.outages, RULES.rules, now)
    return [e.kind for e in engine.evaluate(conditions(doc, RULES.rules, now, engine.outages), now)]


def test_nothing_but_a_delivery_after_the_outage_began_clears_it() -> None:
    engine = AlarmEngine(RULES)
    assert tick(engine, generation(1000, 900, pending=3, state="backing-off"), 1000) == []
    assert tick(engine, generation(1000, 900, pending=3, state="backing-off"), 1200) == [EventKind.RAISED]
    restarted = AlarmEngine(RULES, json.loads(json.dumps(engine.state())))
    # the next generation: nothing delivered yet, nothing waiting, not failing (yet): no evidence either way
    assert tick(restarted, generation(1300, 0, pending=0, state="starting"), 1300) == []
    assert tick(restarted, generation(1300, 0, pending=0), 1310) == []
    assert restarted.summary()[0]["raised_at"] == 1200
    assert tick(restarted, generation(1300, 1320, pending=0), 1330) == [EventKind.CLEARED]
    # an uplink removed from the config: its alarm has no subject any more
    again = AlarmEngine(RULES, {"active": engine.state()["active"], "outages": {"platform": 900}})
    gone = {"started_at": 1400, "uplinks": [], "buffer": {"uplinks": {}}}
    assert tick(again, gone, 1400) == [EventKind.CLEARED]


def test_a_healthy_busy_uplink_keeps_no_outage() -> None:
    engine = AlarmEngine(RULES)
    for t in range(1000, 1600, 10):  # rows always waiting, delivered every few seconds
        assert tick(engine, generation(900, t - 3, pending=40, state="sending"), t) == []
        assert engine.outages == {}


def test_an_alarm_saved_before_outages_were_kept_is_not_cleared_by_the_next_start() -> None:
    old = {
        "active": {
            KEY: {
                "kind": "uplink_not_delivering",
                "subject": "platform",
                "severity": "warning",
                "detail": "d",
                "raised_at": 1200.0,
                "last_sent": 1200.0,
            }
        }
    }
    engine = AlarmEngine(RULES, old)
    assert tick(engine, generation(1300, 0, pending=5, state="starting"), 1301) == []
    assert [a["key"] for a in engine.summary()] == [KEY]

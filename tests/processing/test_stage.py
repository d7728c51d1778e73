"""The stage: which entries a reading meets (match), in which order, the per-entity plan cache, added readings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ReadingError
from gateway.processing.api import ProcessorMatch
from gateway.processing.attributes import DropProcessor, RenameProcessor, UnitProcessor
from gateway.processing.stage import Entry, Stage
from gateway.records import Attribute, Lane, Reading, Source

T0 = datetime(2026, 7, 4, 0, 0, tzinfo=UTC)


def reading(
    entity_id: str = "urn:ngsi-ld:WaterObserved:g1",
    *,
    adapter: str = "portal",
    entity_type: str = "WaterObserved",
    **values: float,
) -> Reading:
    attrs = {k: Attribute(value=v, type="Number") for k, v in (values or {"level_cm": 150.0}).items()}
    return Reading(
        entity_id=entity_id, entity_type=entity_type, attributes=attrs, observed_at=T0, source=Source(adapter=adapter)
    )


class Recorder:
    """A processor that notes what it saw and passes it on, optionally adding an alert reading."""

    def __init__(self, log: list[str], name: str, *, add: bool = False, fail: bool = False) -> None:
        self.log, self.name, self.add, self.fail = log, name, add, fail

    def process(self, r: Reading, now: datetime) -> Sequence[Reading]:
        self.log.append(f"{self.name}:{r.entity_id}")
        if self.fail:
            raise ReadingError("recorder: cannot use it, got a test value")
        if self.add:
            return [
                r,
                Reading(
                    entity_id="urn:ngsi-ld:Alert:x",
                    entity_type="Alert",
                    attributes={"severity": Attribute(value="low", type="Text")},
                    observed_at=r.observed_at,
                    source=r.source,
                    lane=Lane.ALERT,
                ),
            ]
        return [r]

    def diagnostics(self) -> dict[str, int]:
        return {"seen": len(self.log)}


def entry(name: str, processor: object, **match: str) -> Entry:
    return Entry(name=name, match=ProcessorMatch(**match), processor=processor)  # type: ignore[arg-type]


def test_a_reading_nothing_matches_is_the_same_object_and_a_burst_the_same_sequence() -> None:
    log: list[str] = []
    stage = Stage([entry("a", Recorder(log, "a"), adapter="other")])
    r = reading()
    assert stage.process(r, T0)[0] is r
    burst = [reading(), reading("urn:ngsi-ld:WaterObserved:g2")]
    assert stage.process_many(burst, T0) is burst
    assert log == []


def test_entries_run_in_stage_order_and_see_earlier_changes() -> None:
    stage = Stage(
        [
            entry("rename", RenameProcessor(source="level_cm", target="waterLevel"), attribute="level_cm"),
            entry(
                "unit",
                UnitProcessor(attribute="waterLevel", factor=0.01, offset=0.0, to_unit="MTR", from_unit="CMT"),
                attribute="waterLevel",
            ),
        ]
    )
    [out] = stage.process(reading(level_cm=150.0, rssi=-97.0), T0)
    assert list(out.attributes) == ["waterLevel", "rssi"]
    assert out.attributes["waterLevel"] == Attribute(value=1.5, type="Number", unit="MTR")
    # the reverse order: the unit entry finds no waterLevel yet, so only the rename applies
    reverse = Stage(list(reversed(stage.entries)))
    [out] = reverse.process(reading(level_cm=150.0), T0)
    assert out.attributes["waterLevel"] == Attribute(value=150.0, type="Number")


def test_an_added_reading_meets_only_the_entries_after_the_one_that_made_it() -> None:
    log: list[str] = []
    stage = Stage(
        [
            entry("before", Recorder(log, "before")),
            entry("maker", Recorder(log, "maker", add=True), entity_type="WaterObserved"),
            entry("after", Recorder(log, "after")),
        ]
    )
    out = stage.process(reading(), T0)
    assert [r.entity_type for r in out] == ["WaterObserved", "Alert"]
    g = "urn:ngsi-ld:WaterObserved:g1"
    assert log == [f"before:{g}", f"maker:{g}", f"after:{g}", "after:urn:ngsi-ld:Alert:x"]


def test_a_dropped_reading_meets_no_later_entry_and_leaves_the_burst() -> None:
    log: list[str] = []
    stage = Stage(
        [entry("drop", DropProcessor(["level_cm"]), entity_id=".*g1"), entry("after", Recorder(log, "after"))]
    )
    g2 = reading("urn:ngsi-ld:WaterObserved:g2")
    assert stage.process_many([reading(), g2], T0) == [g2]
    assert log == ["after:urn:ngsi-ld:WaterObserved:g2"]
    assert stage.diagnostics()[0] == {"name": "drop", "counters": {"dropped": 1}}


def test_a_processor_error_leaves_the_reading_as_it_was_and_is_counted() -> None:
    stage = Stage([entry("bad", Recorder([], "bad", fail=True)), entry("next", Recorder([], "next"))])
    r = reading()
    assert stage.process(r, T0) == [r]
    assert stage.diagnostics() == [
        {"name": "bad", "counters": {"seen": 1, "errors": 1}},
        {"name": "next", "counters": {"seen": 1}},
    ]


def test_the_attribute_of_a_match_is_checked_per_reading() -> None:
    log: list[str] = []
    stage = Stage([entry("a", Recorder(log, "a"), attribute="rssi")])
    stage.process(reading(level_cm=1.0), T0)
    stage.process(reading(level_cm=1.0, rssi=-90.0), T0)
    assert log == ["a:urn:ngsi-ld:WaterObserved:g1"]


def test_the_plan_cache_is_bounded_and_forgets_the_oldest_first() -> None:
    stage = Stage([entry("a", Recorder([], "a"), entity_id="urn:x:[0-9]+")], cache_size=3)
    for n in range(5):
        stage.plan(("portal", "T", f"urn:x:{n}"))
    assert list(stage._plans) == [("portal", "T", "urn:x:2"), ("portal", "T", "urn:x:3"), ("portal", "T", "urn:x:4")]
    assert stage.plan(("portal", "T", "urn:x:0")) == ((0, stage.entries[0]),)  # recomputed, same answer


names = st.sampled_from(["portal", "lorawan", "cabinet"])
types = st.sampled_from(["WaterObserved", "Device", "Alert"])
ids = st.sampled_from(["urn:ngsi-ld:WaterObserved:g1", "urn:ngsi-ld:WaterObserved:g12", "urn:ngsi-ld:Device:g1"])
patterns = st.sampled_from(["urn:ngsi-ld:WaterObserved:g1", "urn:ngsi-ld:WaterObserved:g1.*", ".*g1", "g1", ".*"])


@given(
    adapter=st.none() | names,
    entity_type=st.none() | types,
    entity_id=st.none() | patterns,
    key=st.tuples(names, types, ids),
)
def test_a_match_holds_exactly_when_every_key_it_sets_holds(
    adapter: str | None, entity_type: str | None, entity_id: str | None, key: tuple[str, str, str]
) -> None:
    match = ProcessorMatch(adapter=adapter, entity_type=entity_type, entity_id=entity_id)
    expected = (
        (adapter is None or adapter == key[0])
        and (entity_type is None or entity_type == key[1])
        and (entity_id is None or re.fullmatch(entity_id, key[2]) is not None)
    )
    assert match.matches(key) is expected


@given(st.lists(st.tuples(names, types, ids), min_size=1, max_size=30), st.integers(min_value=1, max_value=4))
def test_a_cached_plan_is_the_plan_computed_afresh(keys: list[tuple[str, str, str]], cache_size: int) -> None:
    entries = [
        entry("a", Recorder([], "a"), adapter="portal"),
        entry("b", Recorder([], "b"), entity_id=".*g1"),
        entry("c", Recorder([], "c"), entity_type="Device"),
    ]
    cached, fresh = Stage(entries, cache_size=cache_size), Stage(entries, cache_size=cache_size)
    for key in keys:
        assert cached.plan(key) == tuple((i, e) for i, e in enumerate(entries) if e.match.matches(key))
        fresh._plans.clear()
        assert fresh.plan(key) == cached.plan(key)
        assert len(cached._plans) <= cache_size


def test_readings_keep_their_time_the_stage_passes_now_only() -> None:
    seen: list[datetime] = []

    class Clock:
        def process(self, r: Reading, now: datetime) -> Sequence[Reading]:
            seen.append(now)
            return [r]

        def diagnostics(self) -> dict[str, int]:
            return {}

    later = T0 + timedelta(minutes=5)
    [out] = Stage([entry("c", Clock())]).process(reading(), later)
    assert seen == [later] and out.observed_at == T0

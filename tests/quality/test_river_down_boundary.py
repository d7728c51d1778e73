"""A threshold is left strictly below threshold − hysteresis, as the docs say, whatever binary floating point
makes of the subtraction (6.20 − 0.02 is 6.180000000000001): the regression and its property, for the tracker
and for levels the river processor converts from centimetres and millimetres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.processing.river import Direction, RiverConfig, RiverLevelTracker, RiverProcessor
from gateway.records import Attribute, Reading, Source

T0 = datetime(2024, 7, 1, tzinfo=UTC)


def tracker_above(thresholds: list[float], hysteresis: float, k: int) -> RiverLevelTracker:
    """A tracker whose river has just reached threshold k (0-based) from below the first."""
    config = RiverConfig.model_validate(
        {"thresholds": [{"level": t, "name": f"t{i}"} for i, t in enumerate(thresholds)], "hysteresis_m": hysteresis}
    )
    tracker = RiverLevelTracker(config)
    tracker.update(thresholds[0] - 10.0, T0)
    tracker.update(thresholds[k], T0 + timedelta(minutes=1))
    assert tracker.state_index == k + 1
    return tracker


def test_a_level_at_exactly_threshold_minus_hysteresis_stays_6_20_and_0_02() -> None:
    tracker = tracker_above([2.5, 3.5, 4.3, 6.2], 0.02, 3)
    assert tracker.update(6.18, T0 + timedelta(minutes=2)).crossings == ()
    [down] = tracker.update(6.179, T0 + timedelta(minutes=3)).crossings
    assert (down.direction, down.threshold_level) == (Direction.DOWN, 6.2)


@st.composite
def ladders(draw: st.DrawFn) -> tuple[list[int], int, int]:
    """Thresholds and a hysteresis in millimetres (up to 3 decimals in metres), and the threshold left."""
    hysteresis = draw(st.integers(min_value=0, max_value=200))
    first = draw(st.integers(min_value=-3000, max_value=15000))
    gaps = draw(st.lists(st.integers(min_value=hysteresis + 1, max_value=3000), max_size=4))
    thresholds = [first]
    for gap in gaps:
        thresholds.append(thresholds[-1] + gap)
    return thresholds, hysteresis, draw(st.integers(min_value=0, max_value=len(thresholds) - 1))


def metres(mm: int) -> float:
    return float(Decimal(mm) / 1000)  # the level as a gauge publishes it: the decimal, in binary


@settings(max_examples=400)
@given(ladders())
def test_threshold_minus_hysteresis_never_crosses_down_and_a_millimetre_below_does(
    ladder: tuple[list[int], int, int],
) -> None:
    thresholds_mm, h_mm, k = ladder
    tracker = tracker_above([metres(t) for t in thresholds_mm], metres(h_mm), k)
    at_boundary = metres(thresholds_mm[k] - h_mm)
    assert tracker.update(at_boundary, T0 + timedelta(minutes=2)).crossings == ()
    crossings = tracker.update(metres(thresholds_mm[k] - h_mm - 1), T0 + timedelta(minutes=3)).crossings
    assert [(c.direction, c.threshold_index) for c in crossings][:1] == [(Direction.DOWN, k + 1)]


@settings(max_examples=200)
@given(ladders(), st.sampled_from(["MMT", "CMT"]))
def test_the_processor_s_converted_levels_follow_the_same_rule(ladder: tuple[list[int], int, int], unit: str) -> None:
    thresholds_mm, h_mm, k = ladder
    config = RiverConfig.model_validate(
        {
            "thresholds": [{"level": metres(t), "name": f"t{i}"} for i, t in enumerate(thresholds_mm)],
            "hysteresis_m": metres(h_mm),
        }
    )
    river = RiverProcessor(config, attribute="waterLevel")

    def sample(mm: int, minute: int) -> list[str]:
        value = mm if unit == "MMT" else float(Decimal(mm) / 10)
        reading = Reading(
            entity_id="urn:ngsi-ld:WaterObserved:g",
            entity_type="WaterObserved",
            attributes={"waterLevel": Attribute(value=value, type="Number", unit=unit)},
            observed_at=T0 + timedelta(minutes=minute),
            source=Source(adapter="portal"),
        )
        return [
            f"{a.attributes['direction'].value} {a.attributes['thresholdName'].value}"
            for a in river.process(reading, T0)[1:]
        ]

    sample(thresholds_mm[0] - 10_000, 0)
    assert sample(thresholds_mm[k], 1)[-1] == f"up t{k}"
    assert sample(thresholds_mm[k] - h_mm, 2) == []
    assert sample(thresholds_mm[k] - h_mm - 1, 3)[:1] == [f"down t{k}"]

"""Properties of the river tracker over random walks: no flapping, a state that matches the rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.processing.river import NORMAL, Direction, RiverConfig, RiverLevelTracker, alert_readings
from gateway.records import Source
from tests.support.orion_rules import validate_v2_update

T0 = datetime(2024, 7, 1, tzinfo=UTC)


@st.composite
def configs(draw: st.DrawFn) -> RiverConfig:
    hysteresis = draw(st.sampled_from([0.0, 0.01, 0.02, 0.05]))
    start = draw(st.floats(min_value=-3, max_value=3))
    gaps = draw(st.lists(st.floats(min_value=hysteresis + 0.01, max_value=1.5), min_size=0, max_size=5))
    levels = [start]
    for gap in gaps:
        levels.append(levels[-1] + gap)
    names = [f"level{i}" for i in range(len(levels))] if len(levels) > 4 else [None] * len(levels)
    thresholds = [{"level": lv, **({"name": n} if n else {})} for lv, n in zip(levels, names, strict=True)]
    return RiverConfig.model_validate({"thresholds": thresholds, "hysteresis_m": hysteresis})


walks = st.lists(
    st.one_of(st.floats(min_value=-0.06, max_value=0.06), st.floats(min_value=-3, max_value=3)), min_size=1, max_size=80
)


@settings(max_examples=150)
@given(configs(), st.floats(min_value=-5, max_value=8), walks)
def test_random_walks_never_flap_and_state_follows_the_rules(
    config: RiverConfig, start: float, steps: list[float]
) -> None:
    tracker = RiverLevelTracker(config)
    levels = [t.level for t in config.thresholds]
    names = [t.name for t in config.thresholds]
    h = config.hysteresis_m
    last: dict[int, Direction] = {}  # threshold index -> direction of its last crossing
    level = start
    initial = tracker.update(level, T0).state_index
    for i, step in enumerate(steps, start=1):
        level += step
        u = tracker.update(level, T0 + timedelta(minutes=i))
        s = u.state_index
        # the state is what the thresholds and the hysteresis say
        assert s == 0 or level >= levels[s - 1] - h
        assert s == len(levels) or level < levels[s]
        assert u.state == (names[s - 1] if s else NORMAL)
        for c in u.crossings:
            # a threshold is crossed alternately up and down, starting from the side the river was on
            previous = last.get(c.threshold_index, Direction.DOWN if c.threshold_index > initial else Direction.UP)
            assert c.direction is not previous
            last[c.threshold_index] = c.direction
            assert c.threshold_level == levels[c.threshold_index - 1]
        # crossings of one update go one way, through consecutive thresholds ending at the new state
        if u.crossings:
            directions = {c.direction for c in u.crossings}
            assert len(directions) == 1
            indexes = [c.threshold_index for c in u.crossings]
            step_ = 1 if Direction.UP in directions else -1
            assert indexes == list(range(indexes[0], indexes[0] + step_ * len(indexes), step_))
            assert (indexes[-1] if step_ == 1 else indexes[-1] - 1) == s


@settings(max_examples=100)
@given(
    st.floats(min_value=-5, max_value=5),
    st.floats(min_value=-2, max_value=2),
    st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=30),
)
def test_rate_of_rise_is_the_slope_of_a_linear_series(
    intercept: float, slope_m_per_h: float, gaps_s: list[int]
) -> None:
    tracker = RiverLevelTracker(RiverConfig(rate_window_s=3600 * 24))
    t = 0
    rate = tracker.update(intercept, T0).rate_of_rise_m_per_h
    assert rate is None
    for gap in gaps_s:
        t += gap
        rate = tracker.update(intercept + slope_m_per_h * t / 3600, T0 + timedelta(seconds=t)).rate_of_rise_m_per_h
        assert rate == pytest.approx(slope_m_per_h, abs=2e-6)


@settings(max_examples=60)
@given(
    configs(), st.floats(min_value=-5, max_value=8), walks, st.text(alphabet="abcxyz019-_.", min_size=1, max_size=30)
)
def test_every_alert_passes_check_reading_and_orion(
    config: RiverConfig, start: float, steps: list[float], local: str
) -> None:
    tracker = RiverLevelTracker(config)
    level = start
    station = f"urn:ngsi-ld:WaterObserved:{local}"
    tracker.update(level, T0)
    headers = {"Content-Type": "application/json", "Fiware-Service": "x", "Fiware-ServicePath": "/x"}
    for i, step in enumerate(steps, start=1):
        level += step
        update = tracker.update(level, T0 + timedelta(minutes=i))
        for alert in alert_readings(
            update, station_entity_id=station, station_entity_type="WaterObserved", source=Source(adapter="a")
        ):
            check_reading(alert, encoding=ValueEncoding.PERCENT)
            body = v2_update_body([orjson.dumps(to_v2_entity(alert, encoding=ValueEncoding.PERCENT))])
            assert validate_v2_update({**headers, "Content-Length": str(len(body))}, body) == (204, None)


@settings(max_examples=100)
@given(configs(), st.data())
def test_noise_smaller_than_the_hysteresis_never_crosses_back(config: RiverConfig, data: st.DataObject) -> None:
    levels = [t.level for t in config.thresholds]
    if not levels:
        return
    k = data.draw(st.integers(min_value=0, max_value=len(levels) - 1))
    h = config.hysteresis_m
    top = levels[k + 1] if k + 1 < len(levels) else levels[k] + 1.0
    tracker = RiverLevelTracker(config)
    tracker.update(levels[k] - 10.0, T0)
    assert [c.threshold_index for c in tracker.update(levels[k], T0 + timedelta(minutes=1)).crossings][-1] == k + 1
    # anything from threshold − hysteresis up to (not reaching) the next threshold keeps the state
    noise = data.draw(st.lists(st.floats(min_value=levels[k] - h, max_value=top, exclude_max=True), max_size=40))
    for i, level in enumerate(noise, start=2):
        update = tracker.update(level, T0 + timedelta(minutes=i))
        assert (update.crossings, update.state_index) == ((), k + 1)

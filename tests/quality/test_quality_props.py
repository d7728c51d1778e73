"""Properties of the quality checks over arbitrary sample sequences and configurations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.processing.quality import OnFail, PointQuality, QualityConfig, QualityFlag

T0 = datetime(2024, 7, 1, tzinfo=UTC)
ORDER = {flag: i for i, flag in enumerate(QualityFlag)}

values = st.one_of(st.none(), st.floats(), st.integers(min_value=-(2**31), max_value=2**32))
steps = st.floats(min_value=-5, max_value=3600, allow_nan=False)  # time may repeat or go back a little
positive = st.floats(min_value=1e-6, max_value=1e6)


@st.composite
def configs(draw: st.DrawFn) -> QualityConfig:
    doc: dict[str, Any] = {"on_fail": draw(st.sampled_from(["flag", "drop"]))}
    low = draw(st.none() | st.floats(min_value=-1e6, max_value=1e6))
    if low is not None:
        doc["valid_min"] = low
        if draw(st.booleans()):
            doc["valid_max"] = low + draw(st.floats(min_value=0, max_value=1e6))
    doc["sentinels"] = draw(st.lists(st.sampled_from([-9999, 9999, 0x7FFF, 0xFFFF, 0]), max_size=3))
    if draw(st.booleans()):
        doc["loop_check"] = "namur-ne43"
    for key in ("spike_max_delta", "spike_max_rate_per_s", "stuck_window_s"):
        if draw(st.booleans()):
            doc[key] = draw(positive)
    if draw(st.booleans()):
        doc["stuck_samples"] = draw(st.integers(min_value=2, max_value=10))
    if ("stuck_samples" in doc or "stuck_window_s" in doc) and draw(st.booleans()):
        doc["stuck_tolerance"] = draw(st.floats(min_value=0, max_value=10))
    return QualityConfig(**doc)


@settings(max_examples=200)
@given(configs(), st.lists(st.tuples(values, steps, st.none() | st.floats()), max_size=40))
def test_results_only_from_the_enum_and_drop_only_when_configured(
    config: QualityConfig, samples: list[tuple[Any, float, float | None]]
) -> None:
    q = PointQuality(config)
    now = T0
    for value, step, loop_ma in samples:
        now += timedelta(seconds=step)
        result = q.check(value, now, loop_ma=loop_ma)
        assert all(isinstance(f, QualityFlag) for f in result.flags)
        # in enum order, no repeats
        assert [ORDER[f] for f in result.flags] == sorted({ORDER[f] for f in result.flags})
        assert result.keep is (not result.flags or config.on_fail is OnFail.FLAG)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            assert result.flags == (QualityFlag.NO_DATA,)
        # an unusable value carries exactly one flag: later checks do not see it
        unusable = {QualityFlag.NO_DATA, QualityFlag.SENTINEL, QualityFlag.LOOP_FAULT, QualityFlag.OUT_OF_RANGE}
        if unusable & set(result.flags):
            assert len(result.flags) == 1


@settings(max_examples=100)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=40))
def test_no_configured_check_never_flags_a_finite_value(series: list[float]) -> None:
    q = PointQuality(QualityConfig())
    assert all(q.check(v, T0 + timedelta(seconds=i)).flags == () for i, v in enumerate(series))


@settings(max_examples=100)
@given(st.floats(min_value=-1e6, max_value=1e6), st.integers(min_value=2, max_value=12), st.integers(0, 30))
def test_a_flat_series_is_stuck_from_the_nth_sample_on(value: float, n: int, length: int) -> None:
    q = PointQuality(QualityConfig(stuck_samples=n))
    flags = [q.check(value, T0 + timedelta(seconds=i)).flags for i in range(length)]
    assert flags == [()] * min(length, n - 1) + [(QualityFlag.STUCK,)] * max(0, length - n + 1)

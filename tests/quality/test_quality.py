"""Per-point data quality checks: each check, its boundaries, precedence and configuration errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from gateway.configbase import Section, format_validation_error
from gateway.errors import ReadingError
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.identifiers import check_metadata_name
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.processing.quality import (
    QUALITY_METADATA,
    PointQuality,
    QualityConfig,
    QualityFlag,
    QualityResult,
    quality_metadata,
)
from gateway.records import Attribute, Reading, Source
from tests.support.orion_rules import validate_v2_update

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
SPIKE, STUCK = QualityFlag.SPIKE, QualityFlag.STUCK


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def point(**config: Any) -> PointQuality:
    return PointQuality(QualityConfig(**config), name="level")


def flags_of(q: PointQuality, values: list[Any], step_s: float = 60.0) -> list[tuple[QualityFlag, ...]]:
    return [q.check(v, at(i * step_s)).flags for i, v in enumerate(values)]


class Wrapper(Section):
    quality: QualityConfig


def config_errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Wrapper.model_validate({"quality": doc})
    return format_validation_error(info.value, Wrapper)


# ------------------------------------------------------------------------------------ no data, range


def test_without_checks_every_finite_value_is_good() -> None:
    q = point()
    assert [q.check(v, at(i)) for i, v in enumerate([0, -1e300, 1e300, 7])] == [QualityResult(keep=True, flags=())] * 4


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), float("-inf")])
def test_missing_or_non_finite_value_is_no_data(value: float | None) -> None:
    result = point(valid_min=0, valid_max=10).check(value, T0)
    assert result == QualityResult(keep=True, flags=(QualityFlag.NO_DATA,))
    assert not result.ok


@pytest.mark.parametrize(
    ("value", "flags"),
    [(-0.5, ()), (-0.5000001, (QualityFlag.OUT_OF_RANGE,)), (12.0, ()), (12.0000001, (QualityFlag.OUT_OF_RANGE,))],
)
def test_range_bounds_are_valid_values(value: float, flags: tuple[QualityFlag, ...]) -> None:
    assert point(valid_min=-0.5, valid_max=12.0).check(value, T0).flags == flags


def test_range_with_one_bound_only() -> None:
    assert point(valid_min=0).check(1e9, T0).flags == ()
    assert point(valid_min=0).check(-0.01, T0).flags == (QualityFlag.OUT_OF_RANGE,)
    assert point(valid_max=5).check(-1e9, T0).flags == ()
    assert point(valid_max=5).check(5.01, T0).flags == (QualityFlag.OUT_OF_RANGE,)


# ------------------------------------------------------------------------------------ sentinels


def test_sentinel_wins_over_range() -> None:
    q = point(valid_min=-1, valid_max=10, sentinels=[-9999, 9999])
    assert q.check(9999, T0).flags == (QualityFlag.SENTINEL,)
    assert q.check(-9999.0, T0).flags == (QualityFlag.SENTINEL,)
    assert q.check(9998, T0).flags == (QualityFlag.OUT_OF_RANGE,)


def test_sentinels_compare_the_raw_value_when_given() -> None:
    q = point(sentinels=[0x7FFF, 0xFFFF])
    # 0x7FFF × 0.01 = 327.67: the scaled value is not a sentinel, the register is
    assert q.check(327.67, T0, raw=0x7FFF).flags == (QualityFlag.SENTINEL,)
    assert q.check(655.35, T0, raw=65535).flags == (QualityFlag.SENTINEL,)
    # a register that is not a sentinel is fine even if the scaled value equals one
    assert q.check(32767, T0, raw=3276700).flags == ()
    # without a raw value (HTTP, no scaling) the value itself is compared
    assert q.check(32767, T0).flags == (QualityFlag.SENTINEL,)


# ------------------------------------------------------------------------------------ loop current


@pytest.mark.parametrize(
    ("current", "flags"),
    [(3.6, ()), (3.5999, (QualityFlag.LOOP_FAULT,)), (21.0, ()), (21.0001, (QualityFlag.LOOP_FAULT,)), (12.0, ())],
)
def test_namur_ne43_band_on_the_value(current: float, flags: tuple[QualityFlag, ...]) -> None:
    assert point(loop_check="namur-ne43").check(current, T0).flags == flags


def test_loop_current_given_apart_from_the_engineering_value() -> None:
    q = point(loop_check="namur-ne43", valid_min=0, valid_max=5)
    assert q.check(2.5, T0, loop_ma=12.0).flags == ()
    # a fault makes the value meaningless, so it is not range-checked as well
    assert q.check(-0.6, T0, loop_ma=2.0).flags == (QualityFlag.LOOP_FAULT,)
    assert q.check(2.5, T0, loop_ma=float("nan")).flags == (QualityFlag.LOOP_FAULT,)


def test_loop_limits_are_configurable_and_off_by_default() -> None:
    assert point().check(2.0, T0).flags == ()
    q = point(loop_check="namur-ne43", loop_low_ma=3.8, loop_high_ma=20.5)
    assert q.check(3.7, T0).flags == (QualityFlag.LOOP_FAULT,)
    assert q.check(20.6, T0).flags == (QualityFlag.LOOP_FAULT,)
    assert q.check(20.5, T0).flags == ()


# ------------------------------------------------------------------------------------ spikes


def test_spike_delta_boundary_and_lone_outlier() -> None:
    q = point(spike_max_delta=0.5)
    # 0.5 is allowed; the outlier is flagged alone, the return to normal is compared with 1.5
    assert flags_of(q, [1.0, 1.5, 3.0, 1.6, 1.7]) == [(), (), (SPIKE,), (), ()]


def test_spike_step_confirmed_by_the_next_sample_is_accepted() -> None:
    q = point(spike_max_delta=0.5)
    assert flags_of(q, [1.0, 5.0, 5.1, 5.2, 1.0]) == [(), (SPIKE,), (), (), (SPIKE,)]


def test_spike_not_confirmed_keeps_flagging() -> None:
    q = point(spike_max_delta=0.5)
    assert flags_of(q, [1.0, 5.0, 9.0, 1.2]) == [(), (SPIKE,), (SPIKE,), ()]


def test_spike_rate_per_second() -> None:
    q = point(spike_max_rate_per_s=0.01)
    assert q.check(1.0, at(0)).flags == ()
    assert q.check(1.5, at(50)).flags == ()  # exactly 0.01 m/s
    assert q.check(2.5, at(60)).flags == (SPIKE,)  # 1.0 m in 10 s
    # repeated and backwards timestamps carry no rate
    q2 = point(spike_max_rate_per_s=0.01)
    assert [q2.check(v, at(t)).flags for v, t in [(1.0, 100), (9.0, 100), (1.0, 50)]] == [(), (), ()]


def test_spike_delta_and_rate_together() -> None:
    q = point(spike_max_delta=2.0, spike_max_rate_per_s=0.001)
    assert q.check(1.0, at(0)).flags == ()
    assert q.check(1.5, at(10)).flags == (SPIKE,)  # small step, too fast
    assert q.check(1.01, at(3600)).flags == ()
    assert q.check(4.0, at(7200)).flags == (SPIKE,)  # slow enough, too big


def test_unusable_samples_leave_no_history() -> None:
    q = point(spike_max_delta=1.0, sentinels=[-9999], valid_max=100)
    assert flags_of(q, [1.0, None, -9999, 500, 1.5]) == [
        (),
        (QualityFlag.NO_DATA,),
        (QualityFlag.SENTINEL,),
        (QualityFlag.OUT_OF_RANGE,),
        (),
    ]


# ------------------------------------------------------------------------------------ stuck values


def test_stuck_after_n_identical_samples() -> None:
    q = point(stuck_samples=3)
    assert flags_of(q, [2.0, 2.0, 2.0, 2.0, 2.1, 2.1]) == [(), (), (STUCK,), (STUCK,), (), ()]


def test_stuck_tolerance_is_a_band() -> None:
    q = point(stuck_samples=3, stuck_tolerance=0.05)
    # spread 0.04 stays in the band; 2.06 widens it to 0.07 and starts a new run
    assert flags_of(q, [2.0, 2.03, 1.99, 2.06, 2.06, 2.06]) == [(), (), (STUCK,), (), (), (STUCK,)]


def test_stuck_window_boundary() -> None:
    q = point(stuck_window_s=600)
    assert [q.check(2.0, at(t)).flags for t in (0, 300, 599.999, 600)] == [(), (), (), (STUCK,)]


def test_stuck_samples_and_window_must_both_hold() -> None:
    q = point(stuck_samples=3, stuck_window_s=600)
    assert [q.check(2.0, at(t)).flags for t in (0, 10, 20, 600)] == [(), (), (), (STUCK,)]
    q = point(stuck_samples=3, stuck_window_s=600)
    assert [q.check(2.0, at(t)).flags for t in (0, 700)] == [(), ()]


def test_spike_and_stuck_in_one_result_keep_enum_order() -> None:
    # a tolerance wider than the spike delta lets both fire on one sample
    q = point(spike_max_delta=0.1, stuck_samples=2, stuck_tolerance=0.5)
    assert flags_of(q, [1.0, 1.3]) == [(), (SPIKE, STUCK)]


def test_reset_forgets_history() -> None:
    q = point(stuck_samples=2, spike_max_delta=0.5)
    assert q.check(1.0, at(0)).flags == ()
    q.reset()
    assert q.check(1.0, at(1)).flags == ()  # not stuck: the run restarted
    q.reset()
    assert q.check(9.0, at(2)).flags == ()  # not a spike: no reference any more


# ------------------------------------------------------------------------------------ on_fail, time


def test_drop_only_failing_samples() -> None:
    q = point(valid_max=10, on_fail="drop")
    assert q.check(5, T0) == QualityResult(keep=True, flags=())
    assert q.check(11, T0) == QualityResult(keep=False, flags=(QualityFlag.OUT_OF_RANGE,))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ReadingError) as info:
        point().check(1.0, datetime(2024, 7, 1, 9, 0))
    assert str(info.value) == "quality level: now must carry a time zone, got naive 2024-07-01T09:00:00"
    with pytest.raises(ReadingError) as info:
        PointQuality(QualityConfig()).check(1.0, datetime(2024, 7, 1, 9, 0))
    assert str(info.value) == "quality: now must carry a time zone, got naive 2024-07-01T09:00:00"


# ------------------------------------------------------------------------------------ metadata


def test_quality_metadata_shape() -> None:
    assert check_metadata_name(QUALITY_METADATA) == "quality"
    assert quality_metadata(QualityResult(keep=True, flags=())) == {"quality": {"type": "StructuredValue", "value": []}}
    both = QualityResult(keep=True, flags=(SPIKE, STUCK))
    assert quality_metadata(both) == {"quality": {"type": "StructuredValue", "value": ["spike", "stuck"]}}


@pytest.mark.parametrize("flags", [(), tuple(QualityFlag)])
def test_quality_metadata_passes_check_reading_and_orion(flags: tuple[QualityFlag, ...]) -> None:
    metadata = quality_metadata(QualityResult(keep=True, flags=flags))
    reading = Reading(
        entity_id="urn:ngsi-ld:WaterObserved:kuma01",
        entity_type="WaterObserved",
        attributes={
            "waterLevel": Attribute(value=None if flags else 1.23, type="Number", unit="MTR", metadata=metadata)
        },
        observed_at=T0,
        source=Source(adapter="modbus1"),
    )
    check_reading(reading, encoding=ValueEncoding.PERCENT)
    entity = to_v2_entity(reading, encoding=ValueEncoding.PERCENT)
    assert entity["waterLevel"]["metadata"]["quality"] == {"type": "StructuredValue", "value": [f.value for f in flags]}
    body = v2_update_body([orjson.dumps(entity)])
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Fiware-Service": "x",
        "Fiware-ServicePath": "/x",
    }
    assert validate_v2_update(headers, body) == (204, None)


# ------------------------------------------------------------------------------------ configuration


def test_config_defaults() -> None:
    c = QualityConfig()
    assert (c.loop_low_ma, c.loop_high_ma, c.stuck_tolerance, c.on_fail.value, c.loop_check.value) == (
        3.6,
        21.0,
        0.0,
        "flag",
        "off",
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"valid_min": 10, "valid_max": 5}, ["quality.valid_max: must not be below valid_min (10), got 5"]),
        ({"loop_low_ma": 4, "loop_high_ma": 4}, ["quality.loop_high_ma: must be above loop_low_ma (4), got 4"]),
        (
            {"stuck_tolerance": 0.1},
            [
                "quality.stuck_tolerance: has no effect without stuck_samples or stuck_window_s;"
                " set one of them or remove it, got 0.1"
            ],
        ),
        ({"stuck_samples": 1}, ["quality.stuck_samples: input should be greater than or equal to 2, got 1"]),
        ({"spike_max_delta": -0.1}, ["quality.spike_max_delta: input should be greater than 0, got -0.1"]),
        ({"valid_min": float("inf")}, ["quality.valid_min: input should be a finite number, got Infinity"]),
        ({"on_fail": "ignore"}, ["quality.on_fail: input should be 'flag' or 'drop', got \"ignore\""]),
        (
            {"spike_delta": 1},
            [
                "quality.spike_delta: unknown key; valid keys here: loop_check, loop_high_ma, loop_low_ma, on_fail,"
                " sentinels, spike_max_delta, spike_max_rate_per_s, stuck_samples, stuck_tolerance, stuck_window_s,"
                " valid_max, valid_min"
            ],
        ),
    ],
)
def test_config_errors_name_the_key(doc: dict[str, Any], expected: list[str]) -> None:
    assert config_errors(doc) == expected


def test_config_is_frozen() -> None:
    c = QualityConfig(valid_min=0)
    with pytest.raises(ValidationError):
        c.valid_min = 1

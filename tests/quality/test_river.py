"""River-gauge thresholds, crossings with hysteresis, rate of rise, stage, and configuration errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.configbase import Section, format_validation_error
from gateway.errors import ReadingError
from gateway.processing.river import (
    DEFAULT_THRESHOLD_NAMES,
    Crossing,
    Direction,
    RiverConfig,
    RiverLevelTracker,
    Severity,
    StageConfig,
    stage_from_distance,
)

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
LEVELS = [{"level": 1.0}, {"level": 2.0}, {"level": 3.0}, {"level": 4.0}]
N1, N2, N3, N4 = DEFAULT_THRESHOLD_NAMES


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def tracker(**config: Any) -> RiverLevelTracker:
    return RiverLevelTracker(RiverConfig.model_validate({"thresholds": LEVELS, **config}))


def summary(t: RiverLevelTracker, levels: list[float]) -> list[tuple[str, int, list[tuple[str, int]]]]:
    out = []
    for i, level in enumerate(levels):
        u = t.update(level, at(i))
        out.append((u.state, u.state_index, [(c.direction.value, c.threshold_index) for c in u.crossings]))
    return out


class Wrapper(Section):
    river: RiverConfig


def config_errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Wrapper.model_validate({"river": doc})
    return format_validation_error(info.value, Wrapper)


# ------------------------------------------------------------------------------------ crossings


def test_up_through_each_level_then_down() -> None:
    t = tracker()
    h = 0.02
    levels = [0.5, 1.0, 1.99, 2.0, 3.0, 4.0, 4.0 - h, 3.97, 2.5, 2.0 - h, 1.97, 0.97, -0.3]
    assert summary(t, levels) == [
        ("normal", 0, []),
        (N1, 1, [("up", 1)]),  # exactly at the threshold counts as reached
        (N1, 1, []),
        (N2, 2, [("up", 2)]),
        (N3, 3, [("up", 3)]),
        (N4, 4, [("up", 4)]),
        (N4, 4, []),  # exactly threshold − hysteresis is not below it
        (N3, 3, [("down", 4)]),
        (N2, 2, [("down", 3)]),
        (N2, 2, []),
        (N1, 1, [("down", 2)]),
        ("normal", 0, [("down", 1)]),
        ("normal", 0, []),
    ]


def test_crossing_fields() -> None:
    t = tracker()
    t.update(0.0, at(0))
    up = t.update(2.345, at(10))
    assert up.crossings == (
        Crossing(
            direction=Direction.UP,
            threshold_index=1,
            threshold_name=N1,
            threshold_level=1.0,
            level_m=2.345,
            at=at(10),
            severity=Severity.LOW,
        ),
        Crossing(
            direction=Direction.UP,
            threshold_index=2,
            threshold_name=N2,
            threshold_level=2.0,
            level_m=2.345,
            at=at(10),
            severity=Severity.MEDIUM,
        ),
    )
    down = t.update(0.5, at(20))
    assert [(c.direction, c.threshold_index, c.severity) for c in down.crossings] == [
        (Direction.DOWN, 2, Severity.LOW),
        (Direction.DOWN, 1, Severity.INFORMATIONAL),
    ]
    assert (down.state, down.state_index, down.level_m, down.at) == ("normal", 0, 0.5, at(20))


def test_a_jump_crosses_every_level_in_order() -> None:
    t = tracker()
    assert summary(t, [0.0, 9.0, -1.0]) == [
        ("normal", 0, []),
        (N4, 4, [("up", 1), ("up", 2), ("up", 3), ("up", 4)]),
        ("normal", 0, [("down", 4), ("down", 3), ("down", 2), ("down", 1)]),
    ]


def test_first_sample_sets_the_state_without_crossings() -> None:
    t = tracker()
    assert t.state_index is None
    u = t.update(3.2, at(0))
    assert (u.state, u.state_index, u.crossings) == (N3, 3, ())
    assert t.state_index == 3


def test_noise_within_hysteresis_does_not_flap() -> None:
    t = tracker(hysteresis_m=0.05)
    noise = [2.0, 1.99, 2.02, 1.96, 2.04, 1.951, 2.0, 1.97]
    results = summary(t, [1.5, *noise])
    assert [r[2] for r in results] == [[], [("up", 2)]] + [[]] * (len(noise) - 1)
    assert results[-1][:2] == (N2, 2)


def test_without_thresholds_the_state_stays_normal() -> None:
    t = RiverLevelTracker(RiverConfig())
    assert summary(t, [0.0, 50.0, -50.0]) == [("normal", 0, [])] * 3


def test_custom_names_and_severities() -> None:
    config = RiverConfig.model_validate(
        {"thresholds": [{"name": "注意", "level": -0.5}, {"name": "危険", "level": 0.25, "severity": "critical"}]}
    )
    assert [t.name for t in config.thresholds] == ["注意", "危険"]
    t = RiverLevelTracker(config)
    t.update(-1.0, at(0))
    u = t.update(0.3, at(1))
    assert [(c.threshold_name, c.threshold_level, c.severity) for c in u.crossings] == [
        ("注意", -0.5, Severity.LOW),
        ("危険", 0.25, Severity.CRITICAL),
    ]
    assert [config.severity_of(i) for i in range(3)] == [Severity.INFORMATIONAL, Severity.LOW, Severity.CRITICAL]


def test_severity_of_states_beyond_four() -> None:
    config = RiverConfig.model_validate({"thresholds": [*LEVELS, {"name": "計画高水位", "level": 5.0}]})
    assert [config.severity_of(i).value for i in range(6)] == [
        "informational",
        "low",
        "medium",
        "high",
        "critical",
        "critical",
    ]


@pytest.mark.parametrize(
    ("level", "now", "message"),
    [
        (float("nan"), T0, "river level: must be a finite number, got nan; check its quality first"),
        (float("inf"), T0, "river level: must be a finite number, got inf; check its quality first"),
        (1.0, datetime(2024, 7, 1), "river level: now must carry a time zone, got naive 2024-07-01T00:00:00"),
    ],
)
def test_bad_input_is_refused(level: float, now: datetime, message: str) -> None:
    with pytest.raises(ReadingError) as info:
        tracker().update(level, now)
    assert str(info.value) == message


# ------------------------------------------------------------------------------------ rate of rise


def test_rate_of_rise_exact_on_a_linear_series() -> None:
    t = tracker(rate_window_s=600)
    rates = [t.update(0.10 + 0.005 * i, at(i)).rate_of_rise_m_per_h for i in range(15)]
    assert rates[0] is None
    assert rates[1:] == [0.3] * 14  # 5 mm per minute


def test_rate_of_rise_negative_levels_and_falling() -> None:
    t = tracker()
    rates = [t.update(-0.5 - 0.01 * i, at(2 * i)).rate_of_rise_m_per_h for i in range(5)]
    assert rates == [None, -0.3, -0.3, -0.3, -0.3]


def test_rate_window_forgets_old_samples() -> None:
    t = tracker(rate_window_s=600)
    for i in range(11):  # rising 1 cm/min for ten minutes
        t.update(1.0 + 0.01 * i, at(i))
    flat = [t.update(1.1, at(10 + i)).rate_of_rise_m_per_h for i in range(1, 11)]
    assert flat[-2] is not None and flat[-2] > 0  # at 19 min the 9 min sample (1.09) is still in the window
    assert flat[-1] == 0.0  # at 20 min only samples of 1.1 remain
    assert str(flat[-1]) == "0.0"  # never -0.0


def test_rate_window_is_inclusive_and_a_lone_sample_has_no_rate() -> None:
    t = tracker(rate_window_s=600)
    t.update(1.0, at(0))
    assert t.update(2.0, at(10)).rate_of_rise_m_per_h == 6.0  # the sample 600 s old still counts
    assert t.update(2.0, at(30)).rate_of_rise_m_per_h is None  # both older ones left the window


def test_repeated_or_older_timestamps_do_not_enter_the_rate() -> None:
    t = tracker()
    t.update(1.0, at(0))
    assert t.update(1.1, at(1)).rate_of_rise_m_per_h == 6.0
    u = t.update(5.0, at(1))  # same time: the state follows, the rate does not
    assert (u.state_index, u.rate_of_rise_m_per_h) == (4, 6.0)
    assert t.update(1.5, at(0.5)).rate_of_rise_m_per_h == 6.0


def test_rate_uses_least_squares_not_end_to_end() -> None:
    t = tracker()
    levels = [1.0, 1.3, 1.0, 1.0]  # one outlier in the middle
    rates = [t.update(v, at(i)).rate_of_rise_m_per_h for i, v in enumerate(levels)]
    # end-to-end would give 0.0; the least-squares slope of (0,1)(1,1.3)(2,1)(3,1) is -0.03 m/min
    assert rates[-1] == -1.8


# ------------------------------------------------------------------------------------ stage


@pytest.mark.parametrize(
    ("mounting", "distance", "offset", "stage"),
    [(5.0, 3.21, 0.0, 1.79), (5.0, 3.21, -0.05, 1.74), (5.0, 5.42, 0.0, -0.42), (12.5, 0.0, 0.1, 12.6)],
)
def test_stage_from_distance(mounting: float, distance: float, offset: float, stage: float) -> None:
    assert stage_from_distance(distance, StageConfig(mounting_height_m=mounting, offset_m=offset)) == stage


def test_stage_refuses_a_non_finite_distance() -> None:
    with pytest.raises(ReadingError) as info:
        stage_from_distance(float("nan"), StageConfig(mounting_height_m=5))
    assert str(info.value) == "river stage: distance must be a finite number, got nan"


# ------------------------------------------------------------------------------------ configuration


def test_config_defaults_and_sub_tables() -> None:
    c = RiverConfig.model_validate(
        {"thresholds": LEVELS, "datum": {"name": "T.P.", "elevation_m": 101.25}, "stage": {"mounting_height_m": 6.0}}
    )
    assert (c.hysteresis_m, c.rate_window_s, c.alert_category.value, c.alert_sub_category) == (
        0.02,
        600.0,
        "naturalDisaster",
        "flood",
    )
    assert [(t.name, t.level) for t in c.thresholds] == list(
        zip(DEFAULT_THRESHOLD_NAMES, [1.0, 2.0, 3.0, 4.0], strict=True)
    )
    assert (c.datum and c.datum.name, c.datum and c.datum.elevation_m) == ("T.P.", 101.25)
    assert c.stage == StageConfig(mounting_height_m=6.0, offset_m=0.0)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"thresholds": [{"level": 2.0}, {"level": 1.5}, {"level": 3.0}]},
            ["river.thresholds[1].level: must be above thresholds[0].level (2): levels ascend, got 1.5"],
        ),
        (
            {"thresholds": [{"level": 1.0}, {"level": 1.0}]},
            ["river.thresholds[1].level: must be above thresholds[0].level (1): levels ascend, got 1.0"],
        ),
        (
            {"thresholds": [{"level": 1.0, "name": "A"}, {"level": 2.0, "name": "A"}]},
            ['river.thresholds[1].name: must be unique, thresholds[0] has the same name, got "A"'],
        ),
        (
            {"thresholds": [{"level": 1.0}, {"level": 2.0, "name": N1}]},
            [f'river.thresholds[1].name: must be unique, thresholds[0] has the same name, got "{N1}"'],
        ),
        (
            {"thresholds": [*LEVELS, {"level": 5.0}]},
            ["river.thresholds[4].name: required beyond the 4 standard levels, got null"],
        ),
        ({"hysteresis_m": -0.01}, ["river.hysteresis_m: input should be greater than or equal to 0, got -0.01"]),
        (
            {"thresholds": [{"level": 1.0}, {"level": 1.1}, {"level": 1.15}], "hysteresis_m": 0.05},
            [
                "river.hysteresis_m: must be smaller than the smallest gap between thresholds"
                " (0.05 m between thresholds[1] and thresholds[2]), got 0.05"
            ],
        ),
        (
            {"thresholds": [{"level": 1.0, "name": "人吉(水の手橋)"}]},
            [
                "river.thresholds[0].name: must not contain '(' (Orion refuses < > \" ' = ; ( ) in values);"
                ' use full-width （） instead, got "人吉(水の手橋)"'
            ],
        ),
        (
            {"thresholds": [{"level": 1.0, "name": "normal"}]},
            [
                "river.thresholds[0].name: must not be 'normal', the name of the state below every threshold,"
                ' got "normal"'
            ],
        ),
        ({"datum": {"name": " "}}, ['river.datum.name: must be 1-64 printable characters, got " "']),
        (
            {"datum": {"name": "T.P.", "height": 1}},
            ["river.datum.height: unknown key; valid keys here: elevation_m, name"],
        ),
        ({"rate_window_s": 0}, ["river.rate_window_s: input should be greater than 0, got 0"]),
        (
            {"thresholds": [{"level": "high"}]},
            [
                "river.thresholds[0].level: input should be a valid number,"
                ' unable to parse string as a number, got "high"'
            ],
        ),
        (
            {"thresholds": [{"level": 1.0, "severity": "severe"}]},
            [
                "river.thresholds[0].severity: input should be 'informational', 'low', 'medium', 'high' or 'critical',"
                ' got "severe"'
            ],
        ),
        (
            {"alert_category": "flood"},
            [
                "river.alert_category: input should be 'traffic', 'naturalDisaster', 'weather',"
                " 'environment', 'health', 'security' or 'agriculture', got \"flood\""
            ],
        ),
        ({"stage": {}}, ["river.stage.mounting_height_m: required key is missing"]),
    ],
)
def test_config_errors_name_the_key(doc: dict[str, Any], expected: list[str]) -> None:
    assert config_errors(doc) == expected


def test_hysteresis_zero_and_sub_category_pattern() -> None:
    assert RiverConfig.model_validate({"thresholds": LEVELS, "hysteresis_m": 0}).hysteresis_m == 0
    assert RiverConfig(alert_sub_category="floodRisk").alert_sub_category == "floodRisk"
    assert config_errors({"alert_sub_category": "flood risk"}) == [
        "river.alert_sub_category: string should match pattern '^[A-Za-z][A-Za-z/]{0,63}$', got \"flood risk\""
    ]

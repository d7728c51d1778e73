"""The two attributes the gateway adds for the Smart Data Models: dateObserved and a fixed location."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.date_observed import date_observed, has_date_observed
from gateway.location import Location
from gateway.ngsi import geojson
from gateway.records import Attribute

JST = timezone(timedelta(hours=9))


@pytest.mark.parametrize(
    ("entity_type", "dated"),
    [
        ("WaterObserved", True),
        ("WeatherObserved", True),
        ("IndoorEnvironmentObserved", True),
        ("AirQualityObserved", True),
        ("DeviceMeasurement", True),
        ("ACMeasurement", True),
        ("Device", False),
        ("Alert", False),
        ("SimulatedEvent", False),
        ("ObservedThing", False),
        ("Measurements", False),
    ],
)
def test_observation_types_are_the_ones_named_so(entity_type: str, dated: bool) -> None:
    assert has_date_observed(entity_type) is dated


def test_date_observed_is_the_observation_time_in_utc_with_milliseconds() -> None:
    at = datetime(2026, 7, 1, 9, 10, 30, 123456, tzinfo=JST)
    assert date_observed(at) == Attribute(value="2026-07-01T00:10:30.123Z", type="DateTime")
    assert date_observed(at) is date_observed(at)  # a burst shares its instant: one attribute for all of it


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_date_observed_reads_back_as_the_same_millisecond(at: datetime) -> None:
    text = date_observed(at).value
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == at.replace(microsecond=at.microsecond // 1000 * 1000)


@given(lat=st.floats(-90, 90), lon=st.floats(-180, 180))
def test_any_valid_place_is_a_point_orion_indexes(lat: float, lon: float) -> None:
    attribute = Location(lat=lat, lon=lon).attribute()
    assert attribute == Attribute(value={"type": "Point", "coordinates": [lon, lat]}, type="geo:json")
    assert geojson.problem(attribute.value) is None

"""Alert readings per crossing and the gauge's own level attributes, checked against Orion's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.identifiers import check_entity_id
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.processing.quality import QualityFlag, QualityResult, quality_metadata
from gateway.processing.river import (
    DEFAULT_THRESHOLD_NAMES,
    RiverConfig,
    RiverLevelTracker,
    RiverUpdate,
    alert_readings,
    level_attributes,
)
from gateway.records import Attribute, Lane, Reading, Source, TimeSource
from tests.support.orion_rules import validate_v2_update

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)  # epoch 1719792000
STATION = "urn:ngsi-ld:WaterObserved:kuma-hitoyoshi"
SOURCE = Source(adapter="river-modbus", device="gauge1")
CONFIG = RiverConfig.model_validate(
    {
        "thresholds": [{"level": 1.0}, {"level": 2.0}, {"level": 3.0}, {"level": 4.0}],
        "datum": {"name": "T.P.", "elevation_m": 101.25},
    }
)


def orion_status(reading: Reading) -> tuple[int, object]:
    check_reading(reading, encoding=ValueEncoding.PERCENT)
    body = v2_update_body([orjson.dumps(to_v2_entity(reading, encoding=ValueEncoding.PERCENT))])
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Fiware-Service": "x",
        "Fiware-ServicePath": "/x",
    }
    return validate_v2_update(headers, body)


def crossing_updates(config: RiverConfig = CONFIG) -> tuple[RiverUpdate, RiverUpdate]:
    t = RiverLevelTracker(config)
    t.update(0.4, T0)
    up = t.update(2.37, T0 + timedelta(minutes=10, seconds=30.9))
    down = t.update(0.95, T0 + timedelta(hours=3))
    return up, down


def test_one_alert_per_crossing_on_the_alert_lane() -> None:
    up, down = crossing_updates()
    alerts = alert_readings(up, station_entity_id=STATION, station_entity_type="WaterObserved", source=SOURCE)
    assert [a.entity_id for a in alerts] == [
        "urn:ngsi-ld:Alert:kuma-hitoyoshi-1-up-1719792630",
        "urn:ngsi-ld:Alert:kuma-hitoyoshi-2-up-1719792630",
    ]
    first = alerts[0]
    assert (first.entity_type, first.lane, first.source, first.observed_at, first.time_source) == (
        "Alert",
        Lane.ALERT,
        SOURCE,
        T0 + timedelta(minutes=10, seconds=30.9),
        TimeSource.GATEWAY,
    )
    assert {name: (a.value, a.type, a.unit) for name, a in first.attributes.items()} == {
        "category": ("naturalDisaster", "Text", None),
        "subCategory": ("flood", "Text", None),
        "severity": ("low", "Text", None),
        "alertSource": (STATION, "Relationship", None),
        "description": ("水防団待機水位 1.00 m に達しました（水位 2.37 m）", "Text", None),
        "dateIssued": ("2024-07-01T00:10:30.900Z", "DateTime", None),
        "thresholdName": ("水防団待機水位", "Text", None),
        "thresholdLevel": (1.0, "Number", "MTR"),
        "waterLevel": (2.37, "Number", "MTR"),
        "direction": ("up", "Text", None),
    }
    assert alerts[1].attributes["severity"].value == "medium"

    downs = alert_readings(down, station_entity_id=STATION, station_entity_type="WaterObserved", source=SOURCE)
    assert [a.entity_id for a in downs] == [
        "urn:ngsi-ld:Alert:kuma-hitoyoshi-2-down-1719802800",
        "urn:ngsi-ld:Alert:kuma-hitoyoshi-1-down-1719802800",
    ]
    assert [(a.attributes["severity"].value, a.attributes["description"].value) for a in downs] == [
        ("low", "氾濫注意水位 2.00 m を下回りました（水位 0.95 m）"),
        ("informational", "水防団待機水位 1.00 m を下回りました（水位 0.95 m）"),
    ]
    for reading in alerts + downs:
        assert check_entity_id(reading.entity_id) == reading.entity_id
        assert orion_status(reading) == (204, None)


def test_replaying_an_update_gives_the_same_ids() -> None:
    first = [
        a.entity_id
        for a in alert_readings(
            crossing_updates()[0], station_entity_id=STATION, station_entity_type="WaterObserved", source=SOURCE
        )
    ]
    again = [
        a.entity_id
        for a in alert_readings(
            crossing_updates()[0], station_entity_id=STATION, station_entity_type="WaterObserved", source=SOURCE
        )
    ]
    assert first == again


@pytest.mark.parametrize(
    ("station", "station_type", "alert"),
    [
        ("kuma01", "WaterObserved", "urn:ngsi-ld:Alert:kuma01-1-up-1719792630"),
        (
            "urn:ngsi-ld:FloodMonitoring:kuma01",
            "WaterObserved",
            "urn:ngsi-ld:Alert:urn:ngsi-ld:FloodMonitoring:kuma01-1-up-1719792630",
        ),
        ("urn:ngsi-ld:WaterObserved:", "WaterObserved", "urn:ngsi-ld:Alert:urn:ngsi-ld:WaterObserved:-1-up-1719792630"),
    ],
)
def test_station_local_id(station: str, station_type: str, alert: str) -> None:
    alerts = alert_readings(
        crossing_updates()[0], station_entity_id=station, station_entity_type=station_type, source=SOURCE
    )
    assert alerts[0].entity_id == alert
    assert check_entity_id(alert) == alert


def test_category_from_config_and_device_time() -> None:
    config = RiverConfig.model_validate(
        {
            "thresholds": [{"level": 1.0, "name": "はん濫注意水位（人吉）"}],
            "alert_category": "weather",
            "alert_sub_category": "floodRisk",
        }
    )
    up = crossing_updates(config)[0]
    [alert] = alert_readings(
        up,
        station_entity_id=STATION,
        station_entity_type="WaterObserved",
        source=SOURCE,
        config=config,
        time_source=TimeSource.DEVICE,
    )
    assert (alert.attributes["category"].value, alert.attributes["subCategory"].value, alert.time_source) == (
        "weather",
        "floodRisk",
        TimeSource.DEVICE,
    )
    assert alert.attributes["thresholdName"].value == "はん濫注意水位（人吉）"
    assert orion_status(alert) == (204, None)


def test_no_crossing_no_alert() -> None:
    t = RiverLevelTracker(CONFIG)
    update = t.update(1.5, T0)
    assert alert_readings(update, station_entity_id=STATION, station_entity_type="WaterObserved", source=SOURCE) == []


def test_level_attributes_in_order() -> None:
    up = crossing_updates()[0]
    attrs = level_attributes(up)
    assert list(attrs) == ["levelState", "levelStateIndex", "rateOfRise", "levelDatum", "levelDatumElevation"]
    assert {name: (a.value, a.type, a.unit) for name, a in attrs.items()} == {
        "levelState": (DEFAULT_THRESHOLD_NAMES[1], "Text", None),
        "levelStateIndex": (2, "Number", None),
        "rateOfRise": (up.rate_of_rise_m_per_h, "Number", "M60"),
        "levelDatum": ("T.P.", "Text", None),
        "levelDatumElevation": (101.25, "Number", "MTR"),
    }


def test_level_attributes_with_the_level_and_its_quality() -> None:
    t = RiverLevelTracker(RiverConfig.model_validate({"datum": {"name": "Y.P."}}))
    update = t.update(-0.42, T0)
    metadata = quality_metadata(QualityResult(keep=True, flags=(QualityFlag.STUCK,)))
    attrs = level_attributes(update, level_name="waterLevel", level_metadata=metadata)
    assert list(attrs) == ["waterLevel", "levelState", "levelStateIndex", "rateOfRise", "levelDatum"]
    assert attrs["waterLevel"] == Attribute(value=-0.42, type="Number", unit="MTR", metadata=metadata)
    assert attrs["rateOfRise"].value is None  # one sample: no rate yet, sent as null
    reading = Reading(entity_id=STATION, entity_type="WaterObserved", attributes=attrs, observed_at=T0, source=SOURCE)
    assert orion_status(reading) == (204, None)
    entity = to_v2_entity(reading, encoding=ValueEncoding.PERCENT)
    assert entity["waterLevel"]["value"] == -0.42
    assert entity["rateOfRise"]["value"] is None
    assert entity["rateOfRise"]["metadata"]["unitCode"] == {"type": "Text", "value": "M60"}


def test_level_attributes_without_datum() -> None:
    update = RiverLevelTracker(RiverConfig()).update(0.0, T0)
    assert list(level_attributes(update, level_name="height")) == [
        "height",
        "levelState",
        "levelStateIndex",
        "rateOfRise",
    ]
    assert level_attributes(update, level_name="height")["height"].metadata == {}

"""What the platform receives validates against the FIWARE Smart Data Models' JSON schemas, offline.

The entities the gateway ships producers for — the simulator's (WaterObserved, WeatherObserved,
its own SimulatedEvent), every shipped Modbus profile's and the Modbus Device entities, the river
`Alert`s, and the `http_poll` / `mqtt` sample mappings — are checked, converted to NGSI v2 and
written to the Orion double exactly as the orion uplink writes them (`tests/support/entity_state`),
and the state Orion then holds is validated in its key-values form (`?options=keyValues`), the
form the schemas describe. The state, not each reading: what describes a device (its location,
controlledProperty) is sent once at start and kept by Orion, as a platform would see it.

The schemas are the vendored copies in `<repo>/../shared/vendor/smart-data-models/` (licence and
provenance in that directory's README; `$EDGEGW_VENDOR_DIR` overrides `<repo>/../shared/vendor`);
they are never copied into this repository nor downloaded here. Their `$ref`s to
`common-schema.json` resolve to the vendored file through a `referencing` registry. The schemas
also `$ref` definitions in files that are *not* vendored; those resolve to a permissive schema, so
**what they define is not checked**:

- `dataModel.Weather/weather-schema.json#/definitions/Weather-Commons` (temperature,
  relativeHumidity 0..1, windSpeed, … of WeatherObserved) and `#/definitions/WeatherAlertCategories`
  (the other half of Alert's subCategory choice);
- `dataModel.Device/device-schema.json#/definitions/Device-Commons` (the enum of
  `controlledProperty` values; the property itself is still required by Device's own schema);
- `dataModel.Alert/alert-schema.json#/definitions/Common-Alert` (the enums of `category`,
  `severity`; the required `alertSource`, `category`, `dateIssued` are still checked);
- `dataModel.Environment/Environment-schema.json#/definitions/TimeSeriesAggregation`.

Entity types without a vendored model (IndoorEnvironmentObserved, AirQualityObserved, ACMeasurement
and the gateway's own SimulatedEvent) are checked against the part every model shares
(GSMA-Commons and Location-Commons of `common-schema.json`), and observation types among them for
the `dateObserved` and `location` every `*Observed` model requires.

One deliberate deviation is allowed, and only this one: `WaterObserved.waterLevel` may be
negative. The schema says `minimum: 0`, but Japanese river levels are measured from the gauge's
datum (零点高), and a river below it reads negative (docs/quality-and-river.md).
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

from adapters.http_poll.config import HttpPollConfig
from adapters.http_poll.mapping import Mapper as HttpMapper
from adapters.mqtt.config import MqttAdapterConfig
from adapters.mqtt.mapping import Mapper as MqttMapper
from adapters.simulated.adapter import SimulatedAdapter
from adapters.simulated.config import SimulatedConfig
from gateway.adapter_api import AdapterContext
from gateway.processing.river import RiverConfig, RiverLevelTracker, alert_readings
from gateway.profiles import find_profiles, load_profile
from gateway.records import Reading, Source, TimeSource
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, running, until
from tests.adapters.modbus.test_shipped_profiles import KNOWN
from tests.support.entity_state import all_stored, append, key_values
from tests.support.orion_double import OrionDouble

VENDOR_ENV = "EDGEGW_VENDOR_DIR"
REPO = Path(__file__).resolve().parents[2]
COMMON = "https://smart-data-models.github.io/data-models/common-schema.json"
MODELS = ("WaterObserved", "WeatherObserved", "Device", "DeviceMeasurement", "Alert")
# files the vendored schemas $ref but that are not vendored: each resolves to permissive definitions
NOT_VENDORED = {
    "https://smart-data-models.github.io/dataModel.Weather/weather-schema.json": (
        "Weather-Commons",
        "WeatherAlertCategories",
    ),
    "https://smart-data-models.github.io/dataModel.Device/device-schema.json": ("Device-Commons",),
    "https://smart-data-models.github.io/dataModel.Alert/alert-schema.json": ("Common-Alert",),
    "https://smart-data-models.github.io/dataModel.Environment/Environment-schema.json": ("TimeSeriesAggregation",),
}
# entity types the gateway sends without a vendored model: the common part only (see the docstring)
WITHOUT_MODEL = {"IndoorEnvironmentObserved", "AirQualityObserved", "ACMeasurement", "SimulatedEvent"}
# (entity type, property, JSON Schema keyword) the gateway departs from on purpose
DEVIATIONS = {("WaterObserved", "waterLevel", "minimum")}  # levels below the gauge datum are negative
NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
HITOYOSHI = {"lat": 32.2103, "lon": 130.7633}

# RFC 3339 date-time, the JSON Schema "date-time" format: the models' dateObserved, dateIssued, ...
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the format keyword applies to strings only; "type" judges the rest
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))  # a ValueError for 2026-02-30 and the like
    return True


def vendor_models() -> Path:
    """The vendored schemas' directory; the test fails, saying where it looked, when they are absent."""
    override = os.environ.get(VENDOR_ENV)
    base = Path(override) if override else REPO.parent / "shared" / "vendor"
    models = base / "smart-data-models"
    if not (models / "common-schema.json").is_file():
        how = f"${VENDOR_ENV}" if override else f"<repo>/../shared/vendor (set ${VENDOR_ENV} to move it)"
        pytest.fail(
            f"Smart Data Models schemas not found: looked for {models / 'common-schema.json'}, from {how}; "
            "they are vendored next to the checkout (../shared/vendor/smart-data-models)",
            pytrace=False,
        )
    return models


class Schemas:
    """One validator per vendored model, and one for the part every model shares."""

    def __init__(self, models: Path) -> None:
        common = json.loads((models / "common-schema.json").read_text(encoding="utf-8"))

        def retrieve(uri: str) -> Resource[Any]:
            if uri == COMMON:
                return Resource.from_contents(common, default_specification=DRAFT202012)
            if uri in NOT_VENDORED:
                return Resource.from_contents(
                    {"definitions": {name: {} for name in NOT_VENDORED[uri]}}, default_specification=DRAFT202012
                )
            raise NoSuchResource(uri)  # a $ref nobody expected: fail rather than pass unchecked

        registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
        self.validators = {
            name: Draft202012Validator(
                json.loads((models / name / "schema.json").read_text(encoding="utf-8")),
                registry=registry,
                format_checker=FORMATS,
            )
            for name in MODELS
        }
        shared = {
            "allOf": [
                {"$ref": f"{COMMON}#/definitions/GSMA-Commons"},
                {"$ref": f"{COMMON}#/definitions/Location-Commons"},
            ]
        }
        self.common = Draft202012Validator(shared, registry=registry, format_checker=FORMATS)

    def errors(self, entity: dict[str, Any]) -> list[ValidationError]:
        kind = entity["type"]
        validator = self.validators.get(kind)
        if validator is None:
            assert kind in WITHOUT_MODEL, f"{kind}: no vendored schema and not listed in WITHOUT_MODEL"
            validator = self.common
        errors = sorted(validator.iter_errors(entity), key=lambda e: list(e.absolute_path))
        if kind in WITHOUT_MODEL and kind.endswith("Observed"):
            errors += [
                ValidationError(f"{key!r} is a required property", validator="required")
                for key in ("dateObserved", "location")
                if key not in entity
            ]
        return errors

    def problems(self, entity: dict[str, Any]) -> list[str]:
        """`<id>.<path>: <what>` for every error but the documented deviations."""
        out = []
        for e in self.errors(entity):
            prop = str(e.absolute_path[0]) if e.absolute_path else ""
            if (entity["type"], prop, e.validator) in DEVIATIONS:
                continue
            where = ".".join(str(p) for p in e.absolute_path)
            out.append(f"{entity['id']}{'.' + where if where else ''}: {e.message}")
        return out


@functools.cache
def _loaded(models: Path) -> Schemas:
    return Schemas(models)


def load_schemas() -> Schemas:
    """The validators; called inside each test, so missing schemas fail the test (not error its setup)."""
    return _loaded(vendor_models())


async def held(orion: OrionDouble, readings: list[Reading]) -> dict[str, dict[str, Any]]:
    """The key-values entities Orion holds after these readings, by id."""
    await append(orion, readings)
    return {e["id"]: key_values(e) for e in all_stored(orion)}


def assert_valid(schemas: Schemas, entities: dict[str, dict[str, Any]]) -> None:
    problems = [p for entity in entities.values() for p in schemas.problems(entity)]
    assert problems == []


# ------------------------------------------------------------------------------------------- the checker


def test_the_schemas_are_found_or_the_test_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VENDOR_ENV, str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as info:
        vendor_models()
    assert str(info.value) == (
        f"Smart Data Models schemas not found: looked for {tmp_path}/smart-data-models/common-schema.json, from "
        f"${VENDOR_ENV}; they are vendored next to the checkout (../shared/vendor/smart-data-models)"
    )


def test_the_checker_catches_what_the_models_require() -> None:
    schemas = load_schemas()
    """Without this, a checker that accepts everything would pass every test below."""
    water = {
        "id": "urn:ngsi-ld:WaterObserved:x",
        "type": "WaterObserved",
        "waterLevel": 1.2,
        "dateObserved": "2026-07-01T03:00:00.000Z",
        "location": {"type": "Point", "coordinates": [130.7, 32.2]},
    }
    assert schemas.problems(water) == []
    assert schemas.problems({k: v for k, v in water.items() if k != "location"}) == [
        "urn:ngsi-ld:WaterObserved:x: 'location' is a required property"
    ]
    assert schemas.problems(water | {"dateObserved": "2026/07/01 12:00"}) == [
        "urn:ngsi-ld:WaterObserved:x.dateObserved: '2026/07/01 12:00' is not a 'date-time'"
    ]
    assert schemas.problems(water | {"height": -1.0}) == [
        "urn:ngsi-ld:WaterObserved:x.height: -1.0 is less than the minimum of 0"
    ]
    device = {"id": "urn:ngsi-ld:Device:x", "type": "Device", "deviceState": "online"}
    assert schemas.problems(device) == ["urn:ngsi-ld:Device:x: 'controlledProperty' is a required property"]
    assert schemas.problems({"id": "urn:ngsi-ld:Alert:x", "type": "Alert", "category": "naturalDisaster"}) == [
        "urn:ngsi-ld:Alert:x: 'alertSource' is a required property",
        "urn:ngsi-ld:Alert:x: 'dateIssued' is a required property",
    ]
    indoor = {
        "id": "urn:ngsi-ld:IndoorEnvironmentObserved:x",
        "type": "IndoorEnvironmentObserved",
        "location": [130.7, 32.2],
    }
    assert schemas.problems(indoor) == [
        "urn:ngsi-ld:IndoorEnvironmentObserved:x.location: [130.7, 32.2] is not valid under any of the given schemas",
        "urn:ngsi-ld:IndoorEnvironmentObserved:x: 'dateObserved' is a required property",
    ]


def test_the_one_deviation_is_a_negative_water_level_and_nothing_else() -> None:
    schemas = load_schemas()
    below_datum = {
        "id": "urn:ngsi-ld:WaterObserved:x",
        "type": "WaterObserved",
        "waterLevel": -0.42,
        "dateObserved": "2026-07-01T03:00:00.000Z",
        "location": {"type": "Point", "coordinates": [130.7, 32.2]},
    }
    assert [(e.validator, list(e.absolute_path)) for e in schemas.errors(below_datum)] == [("minimum", ["waterLevel"])]
    assert schemas.problems(below_datum) == []
    assert schemas.problems(below_datum | {"waterLevel": "-0.42"}) == [
        "urn:ngsi-ld:WaterObserved:x.waterLevel: '-0.42' is not of type 'number'"
    ]


# ------------------------------------------------------------------------------------------ the producers


async def simulated(kind: str, **config: Any) -> list[Reading]:
    cfg = SimulatedConfig.model_validate(
        {
            "name": kind,
            "type": "simulated",
            "kind": kind,
            "entities": 3,
            "rate": 10_000,
            "limit": 30,
            "seed": 7,
            "location": HITOYOSHI,
            **config,
        }
    )
    readings: list[Reading] = []

    async def emit(r: Reading) -> None:
        readings.append(r)

    await SimulatedAdapter(cfg, AdapterContext(gateway_id="gw1", data_dir="/nonexistent")).run(emit)
    return readings


@pytest.mark.parametrize(
    ("kind", "entity_type"),
    [("river-level", "WaterObserved"), ("weather", "WeatherObserved"), ("events", "SimulatedEvent")],
)
async def test_the_simulators_entities(orion_double: OrionDouble, kind: str, entity_type: str) -> None:
    schemas = load_schemas()
    entities = await held(orion_double, await simulated(kind))
    assert {e["type"] for e in entities.values()} == {entity_type}
    assert len(entities) == (30 if kind == "events" else 3)
    assert_valid(schemas, entities)


def _modbus_devices() -> list[dict[str, Any]]:
    devices = []
    for unit, ref in enumerate(sorted(find_profiles(), key=lambda r: r.name), start=1):
        device: dict[str, Any] = {
            "name": f"d{unit}",
            "bus": "gw",
            "profile": ref.name,
            "unit_id": unit,
            "poll_interval": 5,
            "timeout": 0.5,
            "location": HITOYOSHI,
        }
        if ref.name == "waveshare/modbus-rtu-relay-d":
            device["controlled_property"] = ["waterFlow"]  # what its relays switch: the wiring decides
        devices.append(device)
    return devices


async def test_every_shipped_profiles_entities_and_device_entities(tmp_path: Path, orion_double: OrionDouble) -> None:
    schemas = load_schemas()
    devices = _modbus_devices()
    images = [image_from_values(d["unit_id"], load_profile(d["profile"]), KNOWN[d["profile"]]) for d in devices]
    peer, port = await start_tcp_peer(images)
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            await until(
                lambda: (
                    {r.source.device for r in readings if "deviceState" in r.attributes} == {d["name"] for d in devices}
                    and all(
                        any(r.entity_id == device.entity_id and "location" not in r.attributes for r in readings)
                        for device in adapter.devices.values()
                    )
                )
            )
    finally:
        await peer.stop()
    entities = await held(orion_double, readings)
    types = {e["type"] for e in entities.values()}
    assert types == {load_profile(d["profile"]).entity_type for d in devices} | {"Device"}
    assert len([e for e in entities.values() if e["type"] == "Device"]) == len(devices)
    assert_valid(schemas, entities)


async def test_river_alerts(orion_double: OrionDouble) -> None:
    schemas = load_schemas()
    config = RiverConfig.model_validate(
        {"thresholds": [{"level": 1.0}, {"level": 2.0}, {"level": 3.0}, {"level": 4.0}], "datum": {"name": "T.P."}}
    )
    tracker = RiverLevelTracker(config)
    alerts = []
    for minutes, level in enumerate([0.5, 2.4, 4.2, 3.5, -0.1]):
        update = tracker.update(level, NOW + timedelta(minutes=10 * minutes))
        alerts += alert_readings(
            update,
            station_entity_id="urn:ngsi-ld:WaterObserved:kuma-hitoyoshi",
            station_entity_type="WaterObserved",
            source=Source(adapter="river"),
            config=config,
            time_source=TimeSource.DEVICE,
        )
    entities = await held(orion_double, alerts)
    assert len(entities) == 8 and {e["type"] for e in entities.values()} == {"Alert"}
    assert_valid(schemas, entities)


def _sample(family: str) -> dict[str, Any]:
    doc = tomllib.loads((REPO / "adapters" / family / "sample.toml").read_text(encoding="utf-8"))
    section: dict[str, Any] = doc["adapters"][0]
    return section


def _http_items() -> Iterator[dict[str, Any]]:
    """Items shaped as the sample's comment shows: the portal quotes its numbers; one level below the datum."""
    for code, name, level, lat, lon in (
        ("0431", "人吉", "2.35", "32.2103", "130.7633"),
        ("0432", "渡", "-0.35", "32.1986", "130.6869"),
    ):
        yield {
            "観測所番号": code,
            "観測所名": name,
            "水位": level,
            "観測時刻": "2026/07/01 09:10",
            "水位状況": "氾濫注意水位超過",
            "緯度": lat,
            "経度": lon,
        }


async def test_the_http_poll_sample_mapping(orion_double: OrionDouble) -> None:
    schemas = load_schemas()
    config = HttpPollConfig.model_validate(_sample("http_poll"))
    document = json.dumps({"更新時刻": "2026/07/01 09:12", "観測所": list(_http_items())}, ensure_ascii=False)
    result = HttpMapper(config.mappings, adapter=config.name).map(document.encode(), NOW)
    assert result.errors == []
    entities = await held(orion_double, result.readings)
    assert sorted(entities) == ["urn:ngsi-ld:WaterObserved:kumamoto-0431", "urn:ngsi-ld:WaterObserved:kumamoto-0432"]
    assert entities["urn:ngsi-ld:WaterObserved:kumamoto-0432"]["waterLevel"] == -0.35  # the deviation, exercised
    assert_valid(schemas, entities)


MQTT_MESSAGES = [
    (
        "application/8d2b7c1e-0000-4000-8000-000000000001/device/0004a30b001c0530/event/up",
        {
            "time": "2026-07-01T02:59:30.123456Z",
            "deviceInfo": {"devEui": "0004a30b001c0530", "deviceName": "kawabe-th-01"},
            "object": {"temperature": 21.5, "humidity": 63, "batteryMv": 3012},
            "rxInfo": [{"rssi": -97}],
        },
    ),
    ("zigbee2mqtt/th-2f", {"temperature": 23.41, "humidity": 56.12, "battery": 97, "linkquality": 120}),
    ("tele/library-roof/SENSOR", {"Time": "2026-07-01T11:55:00", "AM2301": {"Temperature": 24.3, "Humidity": 48.2}}),
]


async def test_the_mqtt_sample_mappings(orion_double: OrionDouble) -> None:
    schemas = load_schemas()
    config = MqttAdapterConfig.model_validate(_sample("mqtt"))
    mapper = MqttMapper(config.subscriptions, adapter=config.name)
    readings = [r for topic, payload in MQTT_MESSAGES for r in mapper.map(topic, json.dumps(payload).encode(), NOW)]
    entities = await held(orion_double, readings)
    assert sorted(e["type"] for e in entities.values()) == ["Device", "WeatherObserved", "WeatherObserved"]
    assert_valid(schemas, entities)

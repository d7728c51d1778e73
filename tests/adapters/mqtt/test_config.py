"""Configuration errors name the key path and the fix, checked without any network."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters.mqtt.config import MqttAdapterConfig, MqttProtocol
from gateway.config import parse_config
from gateway.errors import ConfigError

SAMPLE = Path(__file__).parents[3] / "adapters" / "mqtt" / "sample.toml"
ID_RULE = "1-256 printable ASCII characters without blanks or any of < > \" ' = ; ( ) & ? / # { } | \\ ^ `"


def sub(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "topic": "zigbee2mqtt/+",
        "entity_id": "urn:ngsi-ld:Device:{topic[1]}",
        "entity_type": "Device",
        "attributes": [{"path": "temperature", "name": "temperature"}],
    }
    item.update(overrides)
    return item


def adapter_errors(**section: Any) -> list[str]:
    doc = {"gateway": {"id": "gw1"}, "adapters": [{"name": "zigbee", "type": "mqtt", **section}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    # the uplinks are not this test's business
    return [line for line in info.value.errors if line.startswith("adapters")]


def test_sample_section_is_valid_and_defaults_are_safe() -> None:
    section = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))["adapters"][0]
    cfg = MqttAdapterConfig.model_validate(section)
    assert (cfg.host, cfg.port, cfg.protocol) == ("127.0.0.1", 1883, MqttProtocol.V5)
    assert cfg.password == "secret:lorawan-broker"
    assert cfg.effective_client_id("kumagawa-01") == "edgegw-kumagawa-01-lorawan"
    assert [s.topic for s in cfg.subscriptions] == ["application/+/device/+/event/up", "zigbee2mqtt/+", "tele/+/SENSOR"]


def test_every_problem_is_reported_with_its_key_path() -> None:
    errors = adapter_errors(
        port=0,
        tls={"key_file": "/etc/edgegw/client.key"},
        subscriptions=[
            sub(topic="zigbee2mqtt/#/x"),
            sub(entity_id="urn:ngsi-ld:Device:{topic[2]}"),
            sub(entity_id="urn:ngsi-ld:Device:{device}"),
            sub(entity_id="urn:ngsi-ld:Device(x):{topic[1]}"),
            sub(entity_type="Weather Observed"),
            sub(
                attributes=[
                    {"path": "t", "name": "type"},
                    {"path": "t", "name": "temp(c)", "unit": "cel"},
                    {"path": "t", "name": "state", "type": "Text", "scale": 0.1},
                ]
            ),
            sub(attributes=[{"path": "t", "name": "a"}, {"path": "u", "name": "a"}]),
            sub(timestamp={"path": "time", "zone": "Tokyo"}, qos=1),
            sub(attributes=[{"path": "rxInfo[x].rssi", "name": "rssi"}]),
            sub(attributes=[]),
        ],
    )
    assert errors == [
        "adapters[0].port: input should be greater than or equal to 1, got 0",
        "adapters[0].tls: key_file needs cert_file for mutual TLS, got only key_file; set cert_file to the client "
        "certificate",
        "adapters[0].subscriptions[0].topic: may use '#' only as the whole last level (sensors/#), got \"zigbee2mqtt/#/x\"",
        "adapters[0].subscriptions[1].entity_id: refers to {topic[2]} but the topic filter 'zigbee2mqtt/+' has 2 "
        'levels (topic[0]..topic[1]), got "urn:ngsi-ld:Device:{topic[2]}"',
        "adapters[0].subscriptions[2].entity_id: has an unknown placeholder {device}; placeholders are {topic[N]} or "
        '{payload.<field>[.<field>|[i]]...}, got "urn:ngsi-ld:Device:{device}"',
        f"adapters[0].subscriptions[3].entity_id: must be {ID_RULE} outside the {{name}} placeholders (found '('), "
        'got "urn:ngsi-ld:Device(x):{topic[1]}"',
        f"adapters[0].subscriptions[4].entity_type: entity type must be {ID_RULE} (found ' '), got \"Weather Observed\"",
        "adapters[0].subscriptions[5].attributes[0].name: attribute name must not be one Orion reserves (*, "
        'alterationType, dateCreated, dateExpires, dateModified, geo:distance, id, servicePath, type), got "type"',
        f"adapters[0].subscriptions[5].attributes[1].name: attribute name must be {ID_RULE} (found '('), "
        'got "temp(c)"',
        "adapters[0].subscriptions[5].attributes[1].unit: must be a UN/CEFACT common code of 2-3 capitals/digits "
        '(CEL, MTR, P1, KWH), got "cel"',
        "adapters[0].subscriptions[5].attributes[2].scale: applies to Number attributes only, got type 'Text'",
        "adapters[0].subscriptions[6].attributes: must name each attribute once, got 'a' twice",
        'adapters[0].subscriptions[7].timestamp.zone: must be an IANA time zone name like Asia/Tokyo or UTC, got "Tokyo"',
        "adapters[0].subscriptions[7].qos: unknown key; valid keys here: attributes, controlled_property, "
        "entity_id, entity_type, lane, location, null_values, retained, timestamp, topic",
        "adapters[0].subscriptions[8].attributes[0].path: must be a JSON path like data.stations or 観測値[0].水位 "
        "(keys separated by '.', list items as [i]), got \"rxInfo[x].rssi\"",
        "adapters[0].subscriptions[9].attributes: must map at least one attribute "
        "([[adapters.subscriptions.attributes]]), got none",
    ]


def test_secrets_are_references_and_need_a_username() -> None:
    assert adapter_errors(subscriptions=[sub()], password="env:MQTT_PASSWORD") == [
        "adapters[0]: password needs a username; set username too"
    ]
    errors = adapter_errors(subscriptions=[sub()], username="edgegw", password="hunter2")
    assert errors[0].startswith('adapters[0].password: must reference a secret as "secret:<name>"')


def test_max_message_bytes_is_1_mib_by_default_and_within_mqtt_s_range() -> None:
    section = {"name": "zigbee", "type": "mqtt", "subscriptions": [sub()]}
    assert MqttAdapterConfig.model_validate(section).max_message_bytes == 1_048_576
    assert adapter_errors(subscriptions=[sub()], max_message_bytes=1000) == [
        "adapters[0].max_message_bytes: input should be greater than or equal to 4096, got 1000"
    ]
    assert adapter_errors(subscriptions=[sub()], max_message_bytes=300_000_000) == [
        "adapters[0].max_message_bytes: input should be less than or equal to 268435460, got 300000000"
    ]


def test_at_least_one_subscription() -> None:
    assert adapter_errors(subscriptions=[]) == [
        "adapters[0].subscriptions: must list at least one [[adapters.subscriptions]] entry, got none"
    ]
    assert adapter_errors() == ["adapters[0].subscriptions: required key is missing"]


def test_placeholders_into_payload_and_wildcards_are_accepted() -> None:
    cfg = MqttAdapterConfig.model_validate(
        {
            "name": "any",
            "type": "mqtt",
            "subscriptions": [
                sub(
                    topic="site/#",
                    entity_id="urn:ngsi-ld:Thing:{topic[7]}-{payload.meta.ids[0]}",
                    entity_type="{topic[-1]}",
                )
            ],
        }
    )
    assert cfg.subscriptions[0].entity_type == "{topic[-1]}"


def test_timestamp_formats_and_null_values_are_those_of_every_json_adapter() -> None:
    cfg = MqttAdapterConfig.model_validate(
        {
            "name": "gauges",
            "type": "mqtt",
            "subscriptions": [
                sub(timestamp={"path": "観測時刻", "format": "local"}, null_values=["欠測"]),
                sub(timestamp={"path": "t", "format": "strptime", "pattern": "%Y%m%d%H%M", "zone": "UTC"}),
            ],
        }
    )
    assert [s.timestamp and s.timestamp.format.value for s in cfg.subscriptions] == ["local", "strptime"]
    assert cfg.subscriptions[0].null_values == ("欠測",)
    assert adapter_errors(subscriptions=[sub(timestamp={"path": "t", "format": "strptime"})]) == [
        'adapters[0].subscriptions[0].timestamp.pattern: is needed with format = "strptime", got none; e.g. '
        'pattern = "%Y%m%d%H%M"'
    ]

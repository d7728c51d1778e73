"""MqttUplinkConfig: defaults, and key-path errors a technician can act on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.adapter_api import AdapterContext
from gateway.config import parse_config
from gateway.configbase import format_validation_error
from gateway.errors import ConfigError
from gateway.registry import UPLINK_GROUP, load
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.uplinks.mqtt.config import MqttFormat, MqttProtocol, TopicStyle

BASE: dict[str, Any] = {"name": "pref-mqtt", "type": "mqtt", "host": "broker.example.jp", "apikey": "K3Y"}


def errors(**changes: Any) -> list[str]:
    conf = {**BASE, **changes}
    conf = {k: v for k, v in conf.items() if v is not None}
    with pytest.raises(ValidationError) as exc:
        MqttUplinkConfig.model_validate(conf)
    return format_validation_error(exc.value, MqttUplinkConfig, "uplinks[1]")


def test_defaults_and_derived_names(context: AdapterContext) -> None:
    cfg = MqttUplinkConfig.model_validate(BASE)
    assert (cfg.protocol, cfg.format, cfg.topic_style) == (MqttProtocol.V5, MqttFormat.IOTA_JSON, TopicStyle.PLAIN)
    up = MqttUplink(cfg, context)
    assert (up.client_id, up.status_topic, up.port) == (
        "edgegw-gw-kumamoto-01-pref-mqtt",
        "edgegw/gw-kumamoto-01/pref-mqtt/status",
        1883,
    )
    assert MqttUplink(MqttUplinkConfig.model_validate({**BASE, "tls": {}}), context).port == 8883


def test_registered_as_the_mqtt_uplink_type() -> None:
    assert load(UPLINK_GROUP, "mqtt") is MqttUplink


def test_apikey_required_for_iota_formats_only() -> None:
    assert errors(apikey=None) == [
        "uplinks[1].apikey: required when format is iota-json (the IoT Agent service's API key), got null"
    ]
    assert MqttUplinkConfig.model_validate({**BASE, "apikey": None, "format": "ngsi-v2"}).apikey is None
    assert errors(apikey="a/b") == [
        "uplinks[1].apikey: must be one MQTT topic level (not empty, no '/', '+', '#'), got \"a/b\""
    ]


def test_password_only_by_reference() -> None:
    assert errors(username="gw", password="hunter2") == [
        'uplinks[1].password: must reference a secret as "secret:<name>" (stored with `edgegw secret set <name>`) '
        'or "env:<VARIABLE>", never the secret in clear, got a value that is not shown here'
    ]
    assert errors(password="secret:mqtt") == [
        'uplinks[1].password: needs a username (MQTT sends no password without one), got "secret:mqtt"'
    ]


def test_templates_and_topics_are_checked() -> None:
    assert errors(device_id="{entity}-{device}") == [
        "uplinks[1].device_id: unknown placeholder {entity}; valid: {entity_id}, {entity_type}, {device}, {adapter}, "
        'got "{entity}-{device}"'
    ]
    assert errors(topic="edgegw/+/x") == [
        'uplinks[1].topic: must be a non-empty MQTT topic without the wildcards + and #, got "edgegw/+/x"'
    ]
    assert errors(status_topic="site/{entity_type}/status") == [
        "uplinks[1].status_topic: unknown placeholder {entity_type}; valid: {gateway_id}, {uplink}, "
        'got "site/{entity_type}/status"'
    ]


def test_choices_tls_pairs_and_unknown_keys() -> None:
    assert errors(protocol="3") == ["uplinks[1].protocol: input should be '5' or '3.1.1', got \"3\""]
    assert errors(format="json") == [
        "uplinks[1].format: input should be 'iota-json', 'iota-ul' or 'ngsi-v2', got \"json\""
    ]
    assert errors(tls={"key_file": "/etc/edgegw/client.key"}) == [
        "uplinks[1].tls: key_file needs cert_file for mutual TLS, got only key_file; set cert_file to the client "
        "certificate"
    ]
    lines = errors(qos=2)
    assert lines[0].startswith(
        "uplinks[1].qos: unknown key; valid keys here: ack_timeout_s, agent_attribute_bytes, "
        "agent_entity_bytes, apikey, apikeys, batch_linger_ms, batch_max_rows,"
    )


def test_apikey_rules_are_checked() -> None:
    assert errors(apikeys=[{"apikey": "A"}]) == [
        "uplinks[1].apikeys[0]: needs entity_type or entity_id_pattern (or both), got neither; without them use the "
        "uplink's apikey"
    ]
    assert errors(apikeys=[{"apikey": "A/B", "entity_type": "Device"}]) == [
        "uplinks[1].apikeys[0].apikey: must be one MQTT topic level (not empty, no '/', '+', '#'), got \"A/B\""
    ]
    assert errors(apikeys=[{"apikey": "A", "entity_id_pattern": "urn:(x"}]) == [
        "uplinks[1].apikeys[0].entity_id_pattern: must be a regular expression, missing ), unterminated subpattern "
        'at position 4, got "urn:(x"'
    ]
    # with rules, the plain apikey is only the fallback and may be left out
    cfg = MqttUplinkConfig.model_validate({**BASE, "apikey": None, "apikeys": [{"apikey": "A", "entity_type": "D"}]})
    assert cfg.apikey is None
    assert errors(format="ngsi-v2", apikey=None, apikeys=[{"apikey": "A", "entity_type": "D"}]) == [
        "uplinks[1].apikeys: must be empty with format ngsi-v2 (API keys are for the IoT Agent formats), got a list"
    ]


def test_sequence_attribute_and_confirm_are_checked() -> None:
    assert errors(sequence_attribute="edgegw seq") == [
        "uplinks[1].sequence_attribute: attribute name must be 1-256 printable ASCII characters without blanks or any "
        "of < > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got \"edgegw seq\""
    ]
    assert errors(sequence_attribute="TimeInstant") == [
        "uplinks[1].sequence_attribute: must be a measure name the IoT Agents pass on (not TimeInstant, id or type, "
        "no '@'), got \"TimeInstant\""
    ]
    assert errors(format="ngsi-v2", apikey=None, confirm={"url": "http://orion:1026"}) == [
        "uplinks[1]: confirm needs format iota-json or iota-ul (it reads what an IoT Agent wrote to Orion), got "
        "ngsi-v2; drop [uplinks.confirm]"
    ]
    assert errors(confirm={"url": "http://orion:1026", "entity_id": "{entity}"}) == [
        "uplinks[1].confirm.entity_id: unknown placeholder {entity}; valid: {entity_id}, {entity_type}, {device}, "
        '{adapter}, {device_id}, got "{entity}"'
    ]
    assert errors(confirm={"url": "http://orion:1026", "service": "City"}) == [
        "uplinks[1].confirm.service: must be 1-50 characters of a-z 0-9 _ (lower case; Orion's Fiware-Service), "
        'got "City"'
    ]
    # confirmation reads the sequence measure: asking for it turns the measure on, named edgegwSeq
    plain = MqttUplinkConfig.model_validate(BASE)
    confirmed = MqttUplinkConfig.model_validate({**BASE, "confirm": {"url": "http://orion:1026"}})
    named = MqttUplinkConfig.model_validate({**BASE, "sequence_attribute": "seq", "confirm": {"url": "http://o:1"}})
    assert (plain.sequence_measure, confirmed.sequence_measure, named.sequence_measure) == (None, "edgegwSeq", "seq")


def test_two_mqtt_uplinks_on_one_broker_must_not_share_the_status_topic() -> None:
    def doc(*uplinks: dict[str, Any]) -> dict[str, Any]:
        return {
            "gateway": {"id": "gw1"},
            "uplinks": [{"type": "mqtt", "host": "broker", "apikey": "K", **u} for u in uplinks],
        }

    # the default topic names the uplink: two uplinks on one broker, as config/demo.toml has, are fine
    parse_config(doc({"name": "iot-agent"}, {"name": "platform", "format": "ngsi-v2", "apikey": None}))
    # another broker, another retained topic space
    parse_config(
        doc(
            {"name": "a", "status_topic": "site/{gateway_id}"},
            {"name": "b", "status_topic": "site/{gateway_id}", "host": "other"},
        )
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(
            doc(
                {"name": "a", "status_topic": "site/{gateway_id}"},
                {"name": "b", "status_topic": "site/gw1", "host": "BROKER", "port": 1883},
            )
        )
    assert exc.value.errors == [
        "uplinks[1].status_topic: must differ from uplinks[0].status_topic on the same broker (one's last will would "
        "overwrite the other's online), got 'site/gw1' for both; put {uplink} in the template"
    ]

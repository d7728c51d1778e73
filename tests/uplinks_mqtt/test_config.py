"""MqttUplinkConfig: defaults, and key-path errors a technician can act on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.adapter_api import AdapterContext
from gateway.configbase import format_validation_error
from gateway.registry import UPLINK_GROUP, load
from gateway.uplinks.mqtt import MqttFormat, MqttProtocol, MqttUplink, MqttUplinkConfig, TopicStyle

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
    assert (up.client_id, up.status_topic, up.port) == ("edgegw-gw-kumamoto-01-pref-mqtt", "edgegw/gw-kumamoto-01/status", 1883)
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
        "uplinks[1].password: needs a username (MQTT sends no password without one), got \"secret:mqtt\""
    ]


def test_templates_and_topics_are_checked() -> None:
    assert errors(device_id="{entity}-{device}") == [
        "uplinks[1].device_id: unknown placeholder {entity}; valid: {entity_id}, {entity_type}, {device}, {adapter}, "
        "got \"{entity}-{device}\""
    ]
    assert errors(topic="edgegw/+/x") == [
        "uplinks[1].topic: must be a non-empty MQTT topic without the wildcards + and #, got \"edgegw/+/x\""
    ]
    assert errors(status_topic="site/{entity_type}/status") == [
        "uplinks[1].status_topic: unknown placeholder {entity_type}; valid: {gateway_id}, got \"site/{entity_type}/status\""
    ]


def test_choices_tls_pairs_and_unknown_keys() -> None:
    assert errors(protocol="3") == ["uplinks[1].protocol: input should be '5' or '3.1.1', got \"3\""]
    assert errors(format="json") == [
        "uplinks[1].format: input should be 'iota-json', 'iota-ul' or 'ngsi-v2', got \"json\""
    ]
    assert errors(tls={"cert_file": "/etc/edgegw/client.pem"}) == [
        "uplinks[1].tls: cert_file and key_file go together (mTLS needs both), got only one of them"
    ]
    lines = errors(qos=2)
    assert lines[0].startswith("uplinks[1].qos: unknown key; valid keys here: ack_timeout_s, apikey, batch_linger_ms, batch_max_rows,")

"""The southbound adapter's `host` is checked as the uplink's is: a host name or IP address alone, never
shown in the error (it might hold a password), IPv6 in brackets given back bare."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.mqtt.config import MqttAdapterConfig
from gateway.config import parse_config
from gateway.errors import ConfigError

SUBSCRIPTIONS = [
    {
        "topic": "test/+",
        "entity_id": "urn:ngsi-ld:Thing:{topic[1]}",
        "entity_type": "Thing",
        "attributes": [{"path": "n", "name": "n"}],
    }
]


def section(host: str) -> dict[str, Any]:
    return {"name": "sensors", "type": "mqtt", "host": host, "subscriptions": SUBSCRIPTIONS}


def test_credentials_a_scheme_and_a_port_in_host_are_refused_without_showing_them() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            {
                "gateway": {"id": "gw1"},
                "adapters": [section("mqtt://sensors:Hunter22@broker.lan:1883")],
                "uplinks": [{"name": "u", "type": "mqtt", "host": "broker.lan", "apikey": "K"}],
            }
        )
    assert exc.value.errors == [
        "adapters[0].host: must be a host name or IP address alone, found a URL scheme, credentials and a port in "
        "it, got a value that is not shown here; write the host name or IP address alone (mqtt.example.jp, "
        "192.0.2.10, 2001:db8::1); the port goes in the port key; the user name goes in username and the password "
        'in the secret store (password = "secret:<name>")'
    ]
    assert "Hunter22" not in str(exc.value)


def test_an_ipv6_address_in_brackets_is_given_back_bare() -> None:
    assert MqttAdapterConfig.model_validate(section("[fd00::10]")).host == "fd00::10"
    assert MqttAdapterConfig.model_validate(section("broker.lan")).host == "broker.lan"

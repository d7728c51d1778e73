"""Two connections to one broker must not share a client id: `edgegw check-config` refuses it.

The review's finding: two uplinks with one client_id, or an uplink "a" with commands on next to an uplink
named "a-cmd" (its listener connects as "<client id>-cmd"), passed the check; on the broker each
connection then took the other's session over (59 reconnects each in 6 s, a fifth of the readings
retried). The same held between a southbound `mqtt` adapter and an uplink, or two adapters: the check
saw only uplinks.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.mqtt.adapter import MqttAdapter
from adapters.mqtt.config import MqttAdapterConfig
from gateway.adapter_api import AdapterContext
from gateway.config import parse_config
from gateway.configbase import BrokerClient
from gateway.errors import ConfigError
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.uplinks.mqtt.commands import MqttCommandListener

SUBSCRIPTION = {
    "topic": "t/+",
    "entity_type": "Device",
    "entity_id": "{topic[1]}",
    "attributes": [{"path": "v", "name": "v"}],
}


def doc(*uplinks: dict[str, Any], adapters: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw1"},
        "adapters": [{"type": "mqtt", "host": "broker", "subscriptions": [SUBSCRIPTION], **a} for a in adapters],
        "uplinks": [{"type": "mqtt", "host": "broker", "apikey": "K", **u} for u in uplinks],
    }


def refusals(*uplinks: dict[str, Any], adapters: tuple[dict[str, Any], ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc(*uplinks, adapters=adapters))
    return exc.value.errors


def test_two_uplinks_with_one_client_id_on_one_broker_are_refused() -> None:
    assert refusals(
        {"name": "a", "client_id": "edgegw-box"},
        {"name": "b", "client_id": "edgegw-box", "host": "BROKER", "port": 1883},  # the same broker, spelt otherwise
    ) == [
        "uplinks[1].client_id: must differ from the client id of every other connection to broker broker:1883, got "
        '"edgegw-box" for uplinks[0] ("a") and for uplinks[1] ("b"); the broker keeps one connection per client '
        "id, so each would take the other's session over; set client_id on one of them"
    ]
    # a default id is an id too
    assert refusals({"name": "a"}, {"name": "b", "client_id": "edgegw-gw1-a"})[0].startswith(
        "uplinks[1].client_id: must differ from the client id of every other connection to broker broker:1883, "
        'got "edgegw-gw1-a" for uplinks[0] ("a") and for uplinks[1] ("b");'
    )
    # another port is another broker
    parse_config(doc({"name": "a", "client_id": "edgegw-box"}, {"name": "b", "client_id": "edgegw-box", "port": 1884}))


def test_a_command_listeners_client_id_counts() -> None:
    assert refusals({"name": "a", "commands": "on"}, {"name": "a-cmd"}) == [
        "uplinks[1].client_id: must differ from the client id of every other connection to broker broker:1883, got "
        '"edgegw-gw1-a-cmd" for the command listener of uplinks[0] ("a") and for uplinks[1] ("a-cmd"); the broker '
        "keeps one connection per client id, so each would take the other's session over; set client_id on one "
        "of them"
    ]
    assert refusals({"name": "x", "client_id": "box-cmd"}, {"name": "y", "client_id": "box", "commands": "on"}) == [
        "uplinks[1].client_id: must differ from the client id of every other connection to broker broker:1883, got "
        '"box-cmd" for uplinks[0] ("x") and for the command listener of uplinks[1] ("y"); the broker keeps one '
        "connection per client id, so each would take the other's session over; set client_id on one of them"
    ]
    # without commands there is no listener, and no "-cmd" connection
    parse_config(doc({"name": "a"}, {"name": "a-cmd"}))


def test_a_southbound_adapter_and_an_uplink_on_one_broker_do_not_share_a_client_id() -> None:
    # an adapter and an uplink both named "site" on one mosquitto: both default to edgegw-gw1-site
    assert refusals({"name": "site"}, adapters=({"name": "site-in", "client_id": "edgegw-gw1-site"},)) == [
        "uplinks[0].client_id: must differ from the client id of every other connection to broker broker:1883, got "
        '"edgegw-gw1-site" for adapters[0] ("site-in") and for uplinks[0] ("site"); the broker keeps one '
        "connection per client id, so each would take the other's session over; set client_id on one of them"
    ]
    # two adapters
    assert refusals(
        {"name": "up"},
        adapters=({"name": "a", "client_id": "box"}, {"name": "b", "client_id": "box", "host": "Broker"}),
    ) == [
        "adapters[1].client_id: must differ from the client id of every other connection to broker broker:1883, got "
        '"box" for adapters[0] ("a") and for adapters[1] ("b"); the broker keeps one connection per client id, so '
        "each would take the other's session over; set client_id on one of them"
    ]
    # an uplink's command listener against an adapter
    assert refusals({"name": "up", "commands": "on"}, adapters=({"name": "a", "client_id": "edgegw-gw1-up-cmd"},))[
        0
    ].endswith(
        'got "edgegw-gw1-up-cmd" for adapters[0] ("a") and for the command listener of uplinks[0] ("up"); '
        "the broker keeps one connection per client id, so each would take the other's session over; set "
        "client_id on one of them"
    )
    # another broker, or another id, is fine
    parse_config(doc({"name": "site"}, adapters=({"name": "a", "client_id": "edgegw-gw1-site", "port": 1884},)))
    parse_config(doc({"name": "site"}, adapters=({"name": "site-in"},)))


def test_the_ids_checked_are_the_ids_connected_with() -> None:
    context = AdapterContext(gateway_id="gw1", data_dir="/nonexistent")
    config = MqttUplinkConfig.model_validate(
        {"name": "a", "type": "mqtt", "host": "broker", "apikey": "K", "commands": "on"}
    )
    listener = MqttCommandListener(config, context, dispatch=None, entity_of=lambda d: d)  # type: ignore[arg-type]
    assert config.broker_clients("gw1") == (
        BrokerClient(("broker", 1883), MqttUplink(config, context).client_id),
        BrokerClient(("broker", 1883), listener.client_id, "the command listener of "),
    )
    adapter_config = MqttAdapterConfig.model_validate(
        {"name": "in", "type": "mqtt", "host": "Broker", "port": 1884, "subscriptions": [SUBSCRIPTION]}
    )
    adapter = MqttAdapter(adapter_config, context)
    assert adapter_config.broker_clients("gw1") == (BrokerClient(("broker", 1884), adapter.client_id),)

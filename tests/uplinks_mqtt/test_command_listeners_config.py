"""Two `mqtt` uplinks listening for the same commands on one broker would each run every command: refused offline.

Measured before the check (review of 2026-12): two uplinks with apikey K3Y and commands on, one command
on /K3Y/<device>/cmd → the relay written twice, two answers on cmdexe; check-config said OK.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError


def doc(*uplinks: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw1"},
        "uplinks": [{"type": "mqtt", "host": "broker", "apikey": "K3Y", "commands": "on", **u} for u in uplinks],
    }


def errors(*uplinks: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc(*uplinks))
    return exc.value.errors


def test_two_uplinks_taking_one_apikeys_commands_on_one_broker_are_refused_naming_both() -> None:
    assert errors({"name": "water"}, {"name": "devices", "host": "BROKER", "port": 1883}) == [
        'uplinks[1].commands: must be "off" while uplinks[0] ("water") takes the commands of apikey "K3Y" on the '
        "same broker broker:1883 (both would subscribe to /K3Y/+/cmd and run every command twice: a locker would "
        'open twice), got "on"; set commands = "off" on one of them, or give them different apikeys'
    ]


def test_overlap_through_an_apikey_rule_and_across_formats() -> None:
    # the agents publish commands without the protocol prefix, so a UL and a JSON listener share /K3Y/+/cmd
    assert errors(
        {"name": "json", "apikey": "OTHER"},
        {
            "name": "ul",
            "format": "iota-ul",
            "topic_style": "protocol",
            "apikeys": [{"apikey": "OTHER", "entity_type": "Device"}],
        },
        {"name": "third", "apikey": "THIRD"},
    ) == [
        'uplinks[1].commands: must be "off" while uplinks[0] ("json") takes the commands of apikey "OTHER" on the '
        "same broker broker:1883 (both would subscribe to /OTHER/+/cmd and run every command twice: a locker would "
        'open twice), got "on"; set commands = "off" on one of them, or give them different apikeys'
    ]


@pytest.mark.parametrize(
    "second",
    [
        {"name": "b", "commands": "off"},  # only one listens: the documented way to share an apikey
        {"name": "b", "apikey": "OTHER"},
        {"name": "b", "host": "other-broker"},
        {"name": "b", "port": 8883},
    ],
)
def test_uplinks_whose_command_topics_do_not_overlap_are_fine(second: dict[str, Any]) -> None:
    parse_config(doc({"name": "a"}, second))

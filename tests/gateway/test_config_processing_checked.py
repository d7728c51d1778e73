"""An adapter config's optional `check_with_processing` hook: parse_config asks it once the `[[processing]]`
entries are parsed, on every path a config is checked by, and lists its errors with every other one."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from gateway.control.ops_config import parse_text
from gateway.errors import ConfigError

CARDS = (
    'adapters[0].card_numbers: "stage" needs a [[processing]] pseudonymize entry for adapter "desk1" covering '
    'patronCard (LibraryLoan), got none; add one with match = { adapter = "desk1" }, attributes = ["patronCard"] '
    'and kinds = { patronCard = "card" }, or use card_numbers = "token"'
)
DESK = {"name": "desk1", "type": "scanner", "card_numbers": "stage", "stations": [{"id": "s1", "purpose": "lending"}]}
ORION = {"name": "o", "type": "orion", "url": "http://127.0.0.1:1026"}


def errors_of(**doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": {"id": "gw1"}, "adapters": [DESK], "uplinks": [ORION], **doc})
    return info.value.errors


def test_the_hook_errors_are_listed_with_every_other_one() -> None:
    assert errors_of(uplinks=[{**ORION, "url": "orion:1026"}]) == [
        'uplinks[0].url: must be an http(s) URL, got "orion:1026"',
        CARDS,
    ]


def test_the_hook_is_not_asked_while_a_processing_entry_is_invalid() -> None:
    # the invalid entry may be the very one the adapter needs: "got none" would send the technician astray
    entry = {"type": "pseudonymize", "attributes": ["patronCard"], "digest_bytes": 4}
    assert errors_of(processing=[entry]) == [
        "processing[0].digest_bytes: input should be greater than or equal to 8, got 4"
    ]
    assert errors_of(processing=[]) == [CARDS]


def test_the_control_socket_and_fleet_bundles_check_it_too() -> None:
    # the control socket's config.check and config.apply (the web config page) and remote bundles use parse_text
    text = """
[gateway]
id = "gw1"

[[adapters]]
name = "desk1"
type = "scanner"
card_numbers = "stage"
stations = [{ id = "s1", purpose = "lending" }]

[[uplinks]]
name = "o"
type = "orion"
url = "http://127.0.0.1:1026"
"""
    with pytest.raises(ConfigError) as info:
        parse_text(text, "remote")
    assert info.value.errors == [CARDS]
    covered = '[[processing]]\ntype = "pseudonymize"\nattributes = ["patronCard"]\nkinds = { patronCard = "card" }\n'
    assert parse_text(text + covered, "remote").processing[0].type == "pseudonymize"

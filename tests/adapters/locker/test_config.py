"""The locker section's validation: every problem at once, with its key path and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters.locker.config import LockerConfig, PatronAddress, serial_url
from gateway.config import parse_config
from gateway.configbase import format_validation_error
from gateway.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[3] / "adapters" / "locker" / "sample.toml"


def problems(data: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    try:
        LockerConfig.model_validate(data)
    except ValidationError as exc:
        return format_validation_error(exc, LockerConfig)
    return []


def section(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "lockers",
        "type": "locker",
        "buses": [{"name": "rs485", "port": "/dev/ttyUSB0"}],
        "boards": [{"name": "a", "bus": "rs485", "model": "cu16", "address": 0, "compartments": {"A-01": 1}}],
    }
    data.update(extra)
    return data


def test_a_valid_section() -> None:
    assert problems(section()) == []
    assert serial_url("tcp://10.0.0.5:4001") == "socket://10.0.0.5:4001"
    assert serial_url("/dev/ttyUSB0") == "/dev/ttyUSB0"


def test_layout_problems_all_at_once() -> None:
    boards = [
        {"name": "a", "bus": "rs485", "model": "cu16", "address": 15, "compartments": {"A-01": 17, "A-02": 17}},
        {"name": "a", "bus": "nowhere", "model": "xor24", "address": 1, "compartments": {"A-01": 1}},
    ]
    got = problems(section(boards=boards))
    assert got == [
        "boards[0].address: must be 0..14 for a cu16, got 15",
        "boards[0].compartments.A-01: lock must be 1..16 on a cu16, got 17",
        "boards[0].compartments.A-02: lock must be 1..16 on a cu16, got 17",
        'boards[0].compartments.A-02: lock 17 is compartment "A-01" already, got 17',
        'boards[1].name: must be unique, got "a"',
        'boards[1].bus: no such bus, got "nowhere"; buses: rs485',
        'boards[1].compartments.A-01: label is used on board a already, got "A-01"',
    ]


def test_protocol_families_do_not_share_a_bus() -> None:
    boards = [
        {"name": "a", "bus": "rs485", "model": "cu16", "address": 0, "compartments": {"A-01": 1}},
        {"name": "b", "bus": "rs485", "model": "xor12", "address": 1, "compartments": {"B-01": 1}},
    ]
    assert problems(section(boards=boards)) == [
        "boards[1].model: board a on bus rs485 speaks another protocol, got xor12; put Kerong and XOR boards on "
        "separate buses",
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"port": "COM3"}, "buses[0].port: must be a serial device path (/dev/ttyUSB0) or tcp://HOST:PORT"),
        ({"baud": 300}, "buses[0].baud: input should be greater than or equal to 1200, got 300"),
    ],
)
def test_bus_keys(extra: dict[str, Any], expected: str) -> None:
    got = problems(section(buses=[{"name": "rs485", "port": "/dev/ttyUSB0", **extra}]))
    assert len(got) == 1 and got[0].startswith(expected), got


def test_labels_and_entity_ids() -> None:
    got = problems(
        section(boards=[{"name": "a", "bus": "rs485", "model": "cu16", "address": 0, "compartments": {"A 01": 1}}])
    )
    assert got == [
        "boards[0].compartments.A 01: must be 1..32 of A-Z a-z 0-9 _ - starting with a letter or digit (e.g. A-03), "
        'got "A 01"'
    ]
    got = problems(section(entity_id="urn:ngsi-ld:LockerCompartment:{gateway}"))
    assert (
        'entity_id: must contain {label} and only {gateway} {adapter}, got "urn:ngsi-ld:LockerCompartment:{gateway}"'
        in got
    )
    assert problems(section(pickup={"timezone": "Mars/Olympus"}))[0].startswith(
        "pickup.timezone: must be an IANA time zone such as Asia/Tokyo"
    )


def test_the_patron_is_a_token_unless_the_config_says_clear() -> None:
    assert LockerConfig.model_validate(section()).pickup.patron is PatronAddress.TOKEN
    assert LockerConfig.model_validate(section(pickup={"patron": "clear"})).pickup.patron is PatronAddress.CLEAR
    sample = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    assert LockerConfig.model_validate(sample["adapters"][0]).pickup.patron is PatronAddress.TOKEN
    # the sample no longer needs a [[processing]] entry for the address
    assert "processing" not in sample


@pytest.mark.parametrize(("value", "got"), [("hashed", '"hashed"'), ("omit", '"omit"'), ("", '""'), (True, "true")])
def test_a_bad_patron_value_is_refused_naming_the_allowed_ones(value: object, got: str) -> None:
    expected = f"pickup.patron: input should be 'token' or 'clear', got {got}"
    assert problems(section(pickup={"patron": value})) == [expected]
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": {"id": "gw1"}, "adapters": [section(pickup={"patron": value})]})
    assert f"adapters[0].{expected}" in info.value.errors  # what the gateway's start and `edgegw check-config` say

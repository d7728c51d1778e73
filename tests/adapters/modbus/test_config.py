"""The modbus section is checked without a device: profiles found, buses agree, ids unique, templates valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from adapters.modbus.config import ModbusConfig, parse_port
from gateway.configbase import format_validation_error
from gateway.profiles.schema import Transport


def _errors(buses: list[dict[str, Any]], devices: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as info:
        ModbusConfig.model_validate({"name": "m", "type": "modbus", "buses": buses, "devices": devices})
    return format_validation_error(info.value, ModbusConfig)


def test_devices_with_disagreeing_serial_settings_need_the_bus_to_say() -> None:
    lines = _errors(
        [{"name": "rs485", "port": "/dev/ttyUSB0"}],
        [
            {"name": "th", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1},
            {"name": "ws", "bus": "rs485", "profile": "renke/rs-ws-n01-8", "unit_id": 2},
        ],
    )
    assert lines == [
        "buses[0].baud: the devices' profiles disagree (th: 9600, ws: 4800); set baud for "
        "the bus and configure every device on it to match"
    ]


def test_unknown_profile_same_unit_and_unknown_bus_are_all_reported() -> None:
    lines = _errors(
        [{"name": "rs485", "port": "rtu:///dev/ttyUSB0", "baud": 9600}],
        [
            {"name": "a", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1},
            {"name": "b", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1},
            {"name": "c", "bus": "rs232", "profile": "acme/none", "unit_id": 3},
        ],
    )
    # one line each, with its own key path (issue 9)
    assert len(lines) == 3
    assert (
        lines[0]
        == "devices[1].unit_id: a has the same unit id on bus rs485, got 1; every device on one bus needs its own"
    )
    assert lines[1] == 'devices[2].bus: no such bus, got "rs232"; buses: rs485'
    assert lines[2].startswith('devices[2].profile: no such profile, got "acme/none"; searched ')


def test_each_problem_of_a_broken_profile_file_is_its_own_line(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[3] / "firmware_profiles" / "generic" / "xy-md02.toml"
    (tmp_path / "acme").mkdir()
    broken = tmp_path / "acme" / "broken.toml"
    broken.write_text(
        shipped.read_text(encoding="utf-8")
        .replace("baud = 9600", "baud = 9601")
        .replace('data_type = "int16"', 'data_type = "int17"', 1),
        encoding="utf-8",
    )
    with pytest.raises(pydantic.ValidationError) as info:
        ModbusConfig.model_validate(
            {
                "name": "m",
                "type": "modbus",
                "profiles_dir": [str(tmp_path)],
                "buses": [{"name": "b", "port": "tcp://10.0.0.5"}],
                "devices": [{"name": "a", "bus": "b", "profile": "acme/broken", "unit_id": 1}],
            }
        )
    assert format_validation_error(info.value, ModbusConfig, "adapters[2]") == [
        f"adapters[2].devices[0].profile: {broken}: interface.baud: must be one of 1200, 2400, 4800, 9600, 14400, "
        "19200, 38400, 57600, 115200, 128000, 230400, 256000, got 9601",
        f"adapters[2].devices[0].profile: {broken}: points[0].data_type: input should be 'bool', 'int16', 'uint16', "
        "'int32', 'uint32', 'float32', 'float64', 'string' or 'bitfield', got \"int17\"",
    ]


def test_templates_name_only_known_placeholders() -> None:
    lines = _errors(
        [{"name": "b", "port": "tcp://10.0.0.5"}],
        [{"name": "a", "bus": "b", "profile": "generic/xy-md02", "unit_id": 1, "entity_id": "urn:ngsi-ld:X:{station}"}],
    )
    assert lines == [
        "devices[0].entity_id: has an unknown placeholder {station}; use {gateway}, {adapter}, {bus}, "
        '{device}, {unit_id}, {entity_type}, got "urn:ngsi-ld:X:{station}"'
    ]


def test_river_point_must_be_a_length() -> None:
    lines = _errors(
        [{"name": "b", "port": "tcp://10.0.0.5"}],
        [
            {
                "name": "a",
                "bus": "b",
                "profile": "generic/xy-md02",
                "unit_id": 1,
                "river": {"point": "temperature", "thresholds": [{"level": 1.0}]},
            }
        ],
    )
    assert lines == [
        "devices[0].river.point: must be in metres, centimetres or millimetres (MTR, CMT, "
        'MMT), got unit CEL for "temperature"'
    ]


@pytest.mark.parametrize(
    ("text", "transport", "where"),
    [
        ("tcp://10.0.0.5", Transport.TCP, ("10.0.0.5", 502, "")),
        ("rtu-over-tcp://gw.local:4001", Transport.RTU_OVER_TCP, ("gw.local", 4001, "")),
        ("/dev/ttyUSB0", Transport.RTU, ("", 0, "/dev/ttyUSB0")),
        ("rtu:///dev/serial/by-id/usb-FTDI-if00", Transport.RTU, ("", 0, "/dev/serial/by-id/usb-FTDI-if00")),
        ("rtu://socket://127.0.0.1:7000", Transport.RTU, ("", 0, "socket://127.0.0.1:7000")),
    ],
)
def test_port_forms(text: str, transport: Transport, where: tuple[str, int, str]) -> None:
    a = parse_port(text)
    assert (a.transport, (a.host, a.port, a.path)) == (transport, where)


def test_a_profile_is_read_once_however_often_it_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.profiles.loader import load_profile

    reads: list[str] = []

    def counting(name: str, search_path: Any) -> Any:
        reads.append(name)
        return load_profile(name, search_path)

    monkeypatch.setattr("adapters.modbus.config.load_profile", counting)  # counts, and loads for real
    cfg = ModbusConfig.model_validate(
        {
            "name": "cabinet",
            "type": "modbus",
            "buses": [{"name": "gw", "port": "/dev/ttyUSB0"}],
            "devices": [{"name": f"th{u}", "bus": "gw", "profile": "generic/xy-md02", "unit_id": u} for u in (1, 2)]
            + [{"name": "relay", "bus": "gw", "profile": "waveshare/modbus-rtu-relay-d", "unit_id": 3}],
        }
    )
    for _ in range(3):
        assert [cfg.profile_of(d).model for d in cfg.devices] == ["XY-MD02", "XY-MD02", "Modbus RTU Relay (D)"]
        cfg.serial_settings(cfg.buses[0])
    assert reads == ["generic/xy-md02", "waveshare/modbus-rtu-relay-d"]

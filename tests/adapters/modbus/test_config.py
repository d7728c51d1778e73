"""The modbus section is checked without a device: profiles found, buses agree, ids unique, templates valid."""

from __future__ import annotations

import pydantic
import pytest

from gateway.configbase import format_validation_error
from adapters.modbus.config import ModbusConfig, parse_port
from gateway.profiles.schema import Transport


def _errors(buses: list[dict], devices: list[dict]) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as info:
        ModbusConfig.model_validate({"name": "m", "type": "modbus", "buses": buses, "devices": devices})
    return format_validation_error(info.value, ModbusConfig)


def test_devices_with_disagreeing_serial_settings_need_the_bus_to_say():
    lines = _errors([{"name": "rs485", "port": "/dev/ttyUSB0"}],
                    [{"name": "th", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1},
                     {"name": "ws", "bus": "rs485", "profile": "renke/rs-ws-n01-8", "unit_id": 2}])
    assert lines == ["(top level): buses[0].baud: the devices' profiles disagree (th: 9600, ws: 4800); set baud for "
                     "the bus and configure every device on it to match"]


def test_unknown_profile_same_unit_and_unknown_bus_are_all_reported():
    lines = _errors([{"name": "rs485", "port": "rtu:///dev/ttyUSB0", "baud": 9600}],
                    [{"name": "a", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1},
                     {"name": "b", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1},
                     {"name": "c", "bus": "rs232", "profile": "acme/none", "unit_id": 3}])
    assert len(lines) == 1
    text = lines[0]
    assert "devices[1].unit_id: a has the same unit id on bus rs485, got 1; every device on one bus needs its own" in text
    assert "devices[2].bus: no such bus, got \"rs232\"; buses: rs485" in text
    assert "devices[2].profile: no such profile, got \"acme/none\"; searched " in text


def test_templates_name_only_known_placeholders():
    lines = _errors([{"name": "b", "port": "tcp://10.0.0.5"}],
                    [{"name": "a", "bus": "b", "profile": "generic/xy-md02", "unit_id": 1,
                      "entity_id": "urn:ngsi-ld:X:{station}"}])
    assert lines == ["devices[0].entity_id: has an unknown placeholder {station}; use {gateway}, {adapter}, {bus}, "
                     "{device}, {unit_id}, {entity_type}, got \"urn:ngsi-ld:X:{station}\""]


def test_river_point_must_be_a_length():
    lines = _errors([{"name": "b", "port": "tcp://10.0.0.5"}],
                    [{"name": "a", "bus": "b", "profile": "generic/xy-md02", "unit_id": 1,
                      "river": {"point": "temperature", "thresholds": [{"level": 1.0}]}}])
    assert lines == ["(top level): devices[0].river.point: must be in metres, centimetres or millimetres (MTR, CMT, "
                     "MMT), got unit CEL for \"temperature\""]


@pytest.mark.parametrize(("text", "transport", "where"), [
    ("tcp://10.0.0.5", Transport.TCP, ("10.0.0.5", 502, "")),
    ("rtu-over-tcp://gw.local:4001", Transport.RTU_OVER_TCP, ("gw.local", 4001, "")),
    ("/dev/ttyUSB0", Transport.RTU, ("", 0, "/dev/ttyUSB0")),
    ("rtu:///dev/serial/by-id/usb-FTDI-if00", Transport.RTU, ("", 0, "/dev/serial/by-id/usb-FTDI-if00")),
    ("rtu://socket://127.0.0.1:7000", Transport.RTU, ("", 0, "socket://127.0.0.1:7000")),
])
def test_port_forms(text, transport, where):
    a = parse_port(text)
    assert (a.transport, (a.host, a.port, a.path)) == (transport, where)

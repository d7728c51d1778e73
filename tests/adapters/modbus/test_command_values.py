"""Command values from the platform: any text or number is either written within range or refused at once, by name.

Regression: a 9-character command value ("1e999999") used to be turned into a million-digit int on
the event loop (26-43 s with every bus, uplink and web request frozen), then failed with an
OverflowError instead of a refusal.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.numbers import number_text
from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.codec import CommandRejected, WriteRequest, decode_registers, encode_command
from gateway.profiles import load_profile
from gateway.profiles.schema import Command as CommandSpec
from gateway.profiles.schema import DataType
from gateway.records import Command
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, until

XY = load_profile("generic/xy-md02")
TEMP = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"


def _spec(**kw: object) -> CommandSpec:
    return CommandSpec.model_validate({"name": "c", "function_code": 6, "address": 0, **kw})


SPECS = [
    _spec(data_type="int16", range=[-100, 100]),
    _spec(data_type="uint16"),
    _spec(data_type="uint16", values=[0x7C06, 0x7C07]),
    _spec(function_code=16, data_type="int32", range=[-70000, 70000]),
    _spec(function_code=16, data_type="uint32"),
    _spec(function_code=16, data_type="float32"),
    _spec(function_code=16, data_type="float32", range=[-0.5, 1e6]),
    _spec(function_code=16, data_type="float64"),
    _spec(function_code=16, data_type="float64", values=[0.1, 2.5]),
    _spec(function_code=5, data_type="bool"),
    _spec(function_code=15, data_type="bool", count=3),
    _spec(function_code=16, data_type="string", count=2),
]

# text the platform may send: numbers of every size and exponent, and anything else
_number_text = st.builds(
    lambda sign, mantissa, exponent: f"{sign}{mantissa}e{exponent}",
    st.sampled_from(["", "-", "+"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: str(abs(d))),
    st.integers(min_value=-(10**7), max_value=10**7),
)
_values = st.one_of(
    st.text(max_size=80),
    _number_text,
    st.sampled_from(["1e999999", "-1e999999", "1e-999999", "9" * 64, "NaN", "-Infinity", "sNaN", "0x10", "１５"]),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.builds(lambda m, e: m * 10**e, st.integers(-9, 9), st.integers(0, 6000)),  # ints past str()'s 4300 digits
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.booleans(), max_size=4),
)


def _allowed(spec: CommandSpec, number: float) -> bool:
    if spec.values is not None and number not in spec.values:
        return False
    return spec.range is None or spec.range[0] <= number <= spec.range[1]


@settings(max_examples=600, deadline=None)
@given(spec=st.sampled_from(SPECS), value=_values)
def test_any_value_is_written_within_range_or_refused_by_name_quickly(spec: CommandSpec, value: object) -> None:
    started = time.monotonic()
    try:
        write = encode_command(spec, value)
    except CommandRejected as exc:
        text = str(exc)
        assert text.startswith("command c: ")
        assert len(text) < 400  # the value is quoted, never in full
        assert "got " in text
    else:
        assert isinstance(write, WriteRequest)
        if spec.data_type not in (DataType.BOOL, DataType.STRING):
            written = decode_registers(write.registers, spec.data_type, spec.byte_order)
            assert isinstance(written, (int, float)) and math.isfinite(written)
            if spec.data_type is DataType.FLOAT32:  # float32 rounds; the check was on the value as sent
                assert spec.range is None or spec.range[0] - 1e-3 <= written <= spec.range[1] * (1 + 1e-6)
            else:
                assert _allowed(spec, written)
    assert time.monotonic() - started < 0.5  # the bug took 26 s


INT16 = _spec(data_type="int16", range=[-100, 100])
REFUSALS = [
    (INT16, "1e999999", "command c: value outside -100..100, got '1e999999'"),
    (INT16, "-1e999999", "command c: value outside -100..100, got '-1e999999'"),
    (INT16, "1e-999999", "command c: needs a whole number, got '1e-999999'; allowed: -100..100"),
    (INT16, "warm", "command c: needs a number, got 'warm'; allowed: -100..100"),
    (INT16, "NaN", "command c: needs a number, got 'NaN'; allowed: -100..100"),
    (INT16, "9" * 200, "command c: needs a number, got '9999999999999999...9999999999999999'; allowed: -100..100"),
    (INT16, 1.5, "command c: needs a whole number, got 1.5; allowed: -100..100"),
    (INT16, None, "command c: needs a number, got None; allowed: -100..100"),
    (
        _spec(data_type="uint16"),
        -(10**5000),
        "command c: uint16 holds integers 0..65535, got a negative integer of 5001 digits",
    ),
    (
        _spec(function_code=16, data_type="float64"),
        math.inf,
        "command c: needs a finite number, got inf; allowed: -1.79769e+308..1.79769e+308",
    ),
    (
        _spec(function_code=16, data_type="float32"),
        math.nan,
        "command c: needs a finite number, got nan; allowed: -3.40282e+38..3.40282e+38",
    ),
    (
        _spec(function_code=16, data_type="float32"),
        "1e39",
        "command c: float32 holds -3.40282e+38..3.40282e+38, got '1e39'",
    ),
    (
        _spec(data_type="uint16", values=[0x7C06, 0x7C07]),
        "1e999999",
        "command c: value not allowed, got '1e999999'; allowed: 31750, 31751",
    ),
    (
        _spec(function_code=5, data_type="bool"),
        "x" * 500,
        "command c: needs true or false, got 'xxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxx'",
    ),
]


@pytest.mark.parametrize(("spec", "value", "message"), REFUSALS, ids=[m[11:50] for _, _, m in REFUSALS])
def test_a_bad_value_is_refused_at_once_naming_it_and_what_is_allowed(
    spec: CommandSpec, value: object, message: str
) -> None:
    started = time.monotonic()
    with pytest.raises(CommandRejected) as refused:
        encode_command(spec, value)
    assert str(refused.value) == message
    assert time.monotonic() - started < 0.5


def test_a_number_as_text_is_the_number_it_spells() -> None:
    assert encode_command(INT16, " -12 ").registers == (65536 - 12,)
    assert encode_command(INT16, "1.5e1").registers == (15,)
    # a value set matches text as the number it spells (0.1 is the float 0.1, not the decimal 0.1)
    assert encode_command(_spec(function_code=16, data_type="float64", values=[0.1, 2.5]), "0.1").registers == (
        0x3FB9,
        0x9999,
        0x9999,
        0x999A,
    )


def _writable(value: object) -> bool:
    """Oracle for set_temperature_correction (int16, -100..100): the whole numbers in range, as numbers or text."""
    if isinstance(value, str):
        number = number_text(value)
        return number is not None and number == number.to_integral_value() and -100 <= number <= 100
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return -100 <= value <= 100 and value == int(value)


@functools.cache
def _idle_adapter() -> ModbusAdapter:
    # not running: a value that passes the checks reaches the closed bus, which says so
    devices = [{"name": "th1", "bus": "gw", "profile": "generic/xy-md02", "unit_id": 1}]
    return make_adapter(modbus_config([{"name": "gw", "port": "tcp://127.0.0.1:9"}], devices), "/nonexistent")


@settings(max_examples=300, deadline=None)
@given(value=_values)
def test_handle_writes_or_refuses_any_value_by_name_and_never_raises(value: object) -> None:
    command = Command(command_id="c", entity_id=TEMP, name="set_temperature_correction", value=value)
    started = time.monotonic()
    result = asyncio.run(_idle_adapter().handle(command))
    assert time.monotonic() - started < 1.0  # the event loop's own start included; the bug took 26 s
    assert not result.ok
    prefix = "th1: command set_temperature_correction: "
    if _writable(value):
        assert result.info == prefix + "modbus tcp://127.0.0.1:9: not open, got no link yet"
    else:
        assert result.info.startswith(prefix)
        assert "-100..100" in result.info and "got " in result.info and len(result.info) < 400


async def test_a_huge_exponent_is_refused_at_once_and_the_bus_keeps_polling(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer(
        [image_from_values(1, XY, {"temperature": 20.0, "relative_humidity": 0.5, "temperature_correction": 0.0})]
    )
    devices = [
        {"name": "th1", "bus": "gw", "profile": "generic/xy-md02", "unit_id": 1, "poll_interval": 0.1, "timeout": 0.2}
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            await until(lambda: len(of(readings, TEMP)) >= 1)
            for text in ("1e999999", "-1e999999"):
                started = time.monotonic()
                result = await adapter.handle(
                    Command(command_id="big", entity_id=TEMP, name="set_temperature_correction", value=text)
                )
                assert time.monotonic() - started < 0.5
                assert not result.ok
                assert result.info == f"th1: command set_temperature_correction: value outside -100..100, got '{text}'"
            n = len(of(readings, TEMP))
            await until(lambda: len(of(readings, TEMP)) >= n + 2, timeout=2)
        assert await peer.read(1, 3, 0x0103, 1) == [0]  # nothing was written
    finally:
        await peer.stop()

"""Each shipped profile decodes a register image built from known engineering values.

The images are what a real unit would hold; where the vendor's document prints register words,
they are asserted too, so a wrong type, order or scale in a profile fails here. The same images
can be served by pymodbus test servers for the transport's integration tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from adapters.modbus import rtu
from adapters.modbus.codec import (
    PointValue,
    QualityCode,
    ReadRequest,
    Value,
    decode_reads,
    encode_command,
    encode_point,
    image_slice,
    plan_reads,
)
from gateway.profiles import Profile, load_profile
from gateway.profiles.loader import SHIPPED_DIR

Image = dict[int, dict[int, int]]  # function code → address → register word (or 0/1 for bits)


def build_image(profile: Profile, values: Mapping[str, Value]) -> Image:
    image: Image = {}
    raw_decimals = dict(values)
    for name, value in values.items():
        p = profile.point(name)
        decimals = raw_decimals.get(p.decimals_from) if p.decimals_from else None
        words = encode_point(p, value, decimals=int(decimals) if decimals is not None else None)  # type: ignore[arg-type]
        table = image.setdefault(p.function_code, {})
        for k, w in enumerate(words):
            # bitfield points share their register: each contributes its own bits
            share = table.get(p.address + k, 0) if p.data_type.value == "bitfield" else 0
            table[p.address + k] = int(w) | share
    return image


def read_all(profile: Profile, image: Image) -> dict[str, PointValue]:
    i = profile.interface
    plan = plan_reads(
        profile.points, max_registers=i.max_registers_per_read, max_bits=i.max_bits_per_read, max_gap=i.max_gap
    )
    results: list[tuple[ReadRequest, Sequence[int] | Sequence[bool]]] = []
    for request in plan:
        # through real RTU frames, as the transport will do it
        req = rtu.Request(
            unit_id=i.unit_id, function_code=request.function_code, address=request.address, count=request.count
        )
        window = image_slice(image.get(request.function_code, {}), request)
        if request.function_code in (1, 2):
            frame = rtu.encode_response(req, bits=tuple(bool(b) for b in window))
            results.append((request, rtu.decode_response(req, frame).bits))
        else:
            frame = rtu.encode_response(req, registers=tuple(int(w) for w in window))
            results.append((request, rtu.decode_response(req, frame).registers))
    return decode_reads(profile.points, results)


def check(profile: Profile, values: Mapping[str, Value], rel: float = 1e-6) -> dict[str, PointValue]:
    got = read_all(profile, build_image(profile, values))
    assert set(got) == {p.name for p in profile.points}
    for name, want in values.items():
        if isinstance(want, float):
            assert got[name].value == pytest.approx(want, rel=rel), name
        else:
            assert got[name].value == want, name
    return got


KNOWN: dict[str, dict[str, Value]] = {
    "eastron/sdm120": {
        "voltage": 230.1,
        "current": 4.35,
        "active_power": 985.5,
        "apparent_power": 1001.0,
        "reactive_power": -176.2,
        "power_factor": 0.984,
        "frequency": 50.02,
        "import_active_energy": 12345.6,
        "export_active_energy": 0.4,
        "total_active_energy": 12346.0,
    },
    "eastron/sdm630": {
        "voltage_l1": 229.8,
        "voltage_l2": 231.0,
        "voltage_l3": 230.4,
        "current_l1": 10.5,
        "current_l2": 0.0,
        "current_l3": 3.25,
        "active_power_l1": 2400.0,
        "active_power_l2": 0.0,
        "active_power_l3": 740.5,
        "total_active_power": 3140.5,
        "frequency": 59.98,
        "import_active_energy": 80123.5,
        "export_active_energy": 12.0,
        "total_active_energy": 80135.5,
    },
    "generic/xy-md02": {"temperature": -20.5, "relative_humidity": 0.546, "temperature_correction": -1.5},
    "renke/rs-ws-n01-8": {"relative_humidity": 0.655, "temperature": 23.4, "device_address": 1},
    "generic/pressure-level-transmitter": {
        "unit_code": 7,
        "decimals": 2,
        "level": 3.27,
        "range_zero": 0.0,
        "range_full": 10.0,
    },
    "dfrobot/sen0676": {"air_gap": 2.345, "level": 1.655, "mounting_height": 4.0, "range": 10},
    "xunchip/xm9505": {"rainfall_total": 53.6, "model_code": 9505, "device_address": 1},
    "waveshare/analog-input-8ch": {
        **{f"current_{c}": 4.0 + c for c in range(1, 9)},
        **{f"mode_{c}": 3 for c in range(1, 9)},
    },
    "waveshare/modbus-rtu-relay-d": {
        **{f"relay_{c}": c % 2 == 1 for c in range(1, 9)},
        **{f"input_{c}": c > 4 for c in range(1, 9)},
    },
    "senseair/s8": {
        "meter_status": {
            "fatal_error": False,
            "offset_regulation_error": False,
            "algorithm_error": False,
            "output_error": False,
            "self_diagnostics_error": False,
            "out_of_range": True,
            "memory_error": False,
        },
        "alarm_output": True,
        "pwm_full_output": False,
        "co2": 904,
        "firmware_version": 0x0203,
        "sensor_id": 12345678,
    },
}


def test_every_shipped_profile_has_a_known_image() -> None:
    assert sorted(KNOWN) == sorted(f"{p.parent.name}/{p.stem}" for p in SHIPPED_DIR.glob("*/*.toml"))


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_profile_decodes_its_image(name: str) -> None:
    profile = load_profile(name, (SHIPPED_DIR,))
    values = KNOWN[name]
    assert set(values) == {p.name for p in profile.points}, "give every point a known value"
    got = check(profile, values)
    assert all(v.quality is QualityCode.GOOD for v in got.values()), got


def test_eastron_floats_are_big_endian_words() -> None:
    profile = load_profile("eastron/sdm120", (SHIPPED_DIR,))
    image = build_image(profile, {"voltage": 230.0})
    assert (image[4][0], image[4][1]) == (0x4366, 0x0000)


def test_xy_md02_matches_the_manuals_words() -> None:
    profile = load_profile("generic/xy-md02", (SHIPPED_DIR,))
    image = build_image(profile, {"temperature": -20.5, "relative_humidity": 0.546})
    assert image[4] == {1: 0xFF33, 2: 0x0222}  # the manual's examples: 0xFF33 = -20.5 °C, 0x0222 = 54.6 %
    assert check(profile, {"temperature": 30.5})["temperature"].raw == 0x0131


def test_pressure_transmitter_level_follows_the_decimals_register() -> None:
    profile = load_profile("generic/pressure-level-transmitter", (SHIPPED_DIR,))
    image = {3: {2: 7, 3: 3, 4: 1234, 5: 0, 6: 5000}}
    got = read_all(profile, image)
    assert (got["level"].value, got["range_full"].value) == (1.234, 5.0)
    image[3][3] = 1
    assert read_all(profile, image)["level"].value == 123.4
    image[3][4] = 32767
    assert read_all(profile, image)["level"].quality is QualityCode.NO_DATA


def test_radar_echo_loss_and_s8_status_bits() -> None:
    radar = load_profile("dfrobot/sen0676", (SHIPPED_DIR,))
    got = read_all(radar, {3: {1: 0, 3: 0, 5: 400}})
    assert got["air_gap"] == PointValue(
        name="air_gap", raw=0, value=None, quality=QualityCode.NO_DATA, detail="sentinel 0"
    )
    s8 = load_profile("senseair/s8", (SHIPPED_DIR,))
    got = read_all(s8, {4: {0: 0x0001, 2: 0x0003, 3: 0x0388}})
    assert got["meter_status"].value["fatal_error"] is True  # type: ignore[index]
    assert (got["alarm_output"].value, got["pwm_full_output"].value, got["co2"].value) == (True, True, 904)


def test_analog_module_flags_a_broken_loop() -> None:
    profile = load_profile("waveshare/analog-input-8ch", (SHIPPED_DIR,))
    got = read_all(profile, {4: {0: 12000, 1: 0, 2: 21500}})
    assert got["current_1"].value == 12.0 and got["current_1"].quality is QualityCode.GOOD
    assert (got["current_2"].value, got["current_2"].quality) == (0.0, QualityCode.OUT_OF_RANGE)
    assert got["current_3"].detail == "outside 3.6..21"


def test_shipped_commands_encode_to_the_documented_frames() -> None:
    relay = load_profile("waveshare/modbus-rtu-relay-d", (SHIPPED_DIR,))
    write = encode_command(relay.command("relay_1"), True)
    frame = rtu.encode_request(
        rtu.Request(unit_id=1, function_code=write.function_code, address=write.address, value=int(write.bits[0]))
    )
    assert frame[:6].hex(" ") == "01 05 00 00 ff 00"
    all_off = encode_command(relay.command("all_relays"), False)
    assert (all_off.function_code, all_off.address, all_off.bits) == (5, 0x00FF, (False,))
    s8 = load_profile("senseair/s8", (SHIPPED_DIR,))
    assert encode_command(s8.command("calibrate"), 0x7C06).registers == (0x7C06,)

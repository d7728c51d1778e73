"""The adapter over Modbus TCP: a slow unit, a server restart, commands verified on the datastore, every shipped profile."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from adapters.modbus.bus import DeviceState
from adapters.modbus.codec import decode_point, encode_point
from gateway.date_observed import has_date_observed
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.profiles import find_profiles, load_profile
from gateway.profiles.schema import DataType, Point, Profile
from gateway.records import Command, Reading
from tests.adapters.modbus.peers import UnitImage, image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, states, until

XY = load_profile("generic/xy-md02")
RELAY = load_profile("waveshare/modbus-rtu-relay-d")


def _xy(unit: int, t: float) -> UnitImage:
    return image_from_values(unit, XY, {"temperature": t, "relative_humidity": 0.5, "temperature_correction": 0.0})


async def test_slow_unit_times_out_while_the_others_keep_their_poll_rate(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer([_xy(1, 20.0), _xy(2, 21.0), _xy(3, 22.0)])
    peer.slow[2] = 0.3  # answers after 0.3 s; its timeout is 0.05 s
    devices = [
        {
            "name": f"th{u}",
            "bus": "gw",
            "profile": "generic/xy-md02",
            "unit_id": u,
            "poll_interval": 0.1,
            "timeout": 0.05,
            "retries": 0,
        }
        for u in (1, 2, 3)
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            await until(lambda: states(readings, "urn:ngsi-ld:Device:gw1-th2") == ["offline"])
            start = time.monotonic()
            n1 = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"))
            n3 = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th3"))
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - start
            got1 = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1")) - n1
            got3 = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th3")) - n3
    finally:
        await peer.stop()
    expected = elapsed / 0.1
    assert got1 >= expected - 2 and got3 >= expected - 2  # the slow unit costs them no polls
    slow = adapter.buses["gw"].devices[1]
    assert slow.state is DeviceState.OFFLINE and slow.counters.timeouts >= 2
    assert of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2") == []
    values = {r.attributes["temperature"].value for r in readings if "temperature" in r.attributes}
    assert values == {20.0, 22.0}  # no late answer of unit 2 passed for another unit's


async def test_server_restart_marks_devices_offline_and_back_online(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer([_xy(1, 20.0)])
    devices = [
        {"name": "th1", "bus": "gw", "profile": "generic/xy-md02", "unit_id": 1, "poll_interval": 0.1, "timeout": 0.1}
    ]
    config = modbus_config(
        [{"name": "gw", "port": f"tcp://127.0.0.1:{port}", "reopen_max": 0.3, "connect_timeout": 0.5}], devices
    )
    adapter = make_adapter(config, tmp_path)
    async with running(adapter) as readings:
        await until(lambda: states(readings, "urn:ngsi-ld:Device:gw1-th1") == ["online"])
        await peer.stop()
        await until(lambda: states(readings, "urn:ngsi-ld:Device:gw1-th1") == ["online", "offline"])
        peer, _ = await start_tcp_peer([_xy(1, 20.5)], port=port)
        try:
            await until(
                lambda: states(readings, "urn:ngsi-ld:Device:gw1-th1") == ["online", "offline", "online"], timeout=8
            )
            await until(
                lambda: any(
                    r.attributes.get("temperature") is not None and r.attributes["temperature"].value == 20.5
                    for r in readings
                )
            )
        finally:
            await peer.stop()
    assert adapter.buses["gw"].reopens >= 1


async def test_commands_are_written_checked_and_reported(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer(
        [
            image_from_values(
                4, RELAY, {f"relay_{i}": False for i in range(1, 9)} | {f"input_{i}": False for i in range(1, 9)}
            ),
            _xy(5, 20.0),
        ]
    )
    devices = [
        {
            "name": "relays",
            "bus": "gw",
            "profile": "waveshare/modbus-rtu-relay-d",
            "unit_id": 4,
            "poll_interval": 0.2,
            "timeout": 0.2,
        },
        {"name": "th", "bus": "gw", "profile": "generic/xy-md02", "unit_id": 5, "poll_interval": 0.2, "timeout": 0.2},
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    relay_id = "urn:ngsi-ld:Device:gw1-relays"
    try:
        async with running(adapter) as readings:
            await until(lambda: len(of(readings, relay_id)) >= 2)
            ok = await adapter.handle(Command(command_id="c1", entity_id=relay_id, name="relay_3", value=True))
            assert ok.ok and ok.info == "relays: command relay_3 written (modbus unit 4 FC05 @2 x1)"
            assert await peer.read(4, 1, 0, 4) == [False, False, True, False]
            # a poll follows the write, so the platform sees the new state at once
            await until(
                lambda: any(
                    r.attributes.get("relay3") is not None and r.attributes["relay3"].value is True
                    for r in of(readings, relay_id)
                )
            )
            on = await adapter.handle(Command(command_id="c2", entity_id=relay_id, name="relay_1", value="off"))
            assert on.ok
            temp = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th"
            set_ok = await adapter.handle(
                Command(command_id="c3", entity_id=temp, name="set_temperature_correction", value=-15)
            )
            assert set_ok.ok and await peer.read(5, 3, 0x0103, 1) == [65536 - 15]
            # UltraLight carries values as text: a number written as text is that number
            as_text = await adapter.handle(
                Command(command_id="c3t", entity_id=temp, name="set_temperature_correction", value=" -12 ")
            )
            assert as_text.ok and await peer.read(5, 3, 0x0103, 1) == [65536 - 12]
            not_a_number = await adapter.handle(
                Command(command_id="c3n", entity_id=temp, name="set_temperature_correction", value="warm")
            )
            assert not not_a_number.ok and await peer.read(5, 3, 0x0103, 1) == [65536 - 12]
            await adapter.handle(
                Command(command_id="c3r", entity_id=temp, name="set_temperature_correction", value=-15)
            )
            rejected = await adapter.handle(
                Command(command_id="c4", entity_id=temp, name="set_temperature_correction", value=150)
            )
            assert not rejected.ok
            assert rejected.info == "th: command set_temperature_correction: value outside -100..100, got 150"
            assert await peer.read(5, 3, 0x0103, 1) == [65536 - 15]
            unknown = await adapter.handle(Command(command_id="c5", entity_id=temp, name="reboot"))
            assert unknown.info == (
                'command reboot: generic/xy-md02 has no such command, got "reboot"; commands: '
                "set_temperature_correction, set_humidity_correction"
            )
            nobody = await adapter.handle(Command(command_id="c6", entity_id="urn:x", name="relay_1", value=True))
            assert nobody.info == 'command relay_1: no Modbus device has entity id "urn:x"'
            peer.muted.add(4)
            lost = await adapter.handle(Command(command_id="c7", entity_id=relay_id, name="relay_2", value=True))
            assert not lost.ok and lost.info.startswith("relays: command relay_2: modbus unit 4 FC05 @1 x1 on tcp://")
            assert lost.info.endswith(
                ": no answer, got nothing within 0.2 s; check the unit id, and that the device "
                "behind a gateway is powered and wired"
            )
    finally:
        await peer.stop()


# --- every shipped profile against a simulated device ----------------------------------------------------------


def _decimals_points(profile: Profile) -> set[str]:
    return {p.decimals_from for p in profile.points if p.decimals_from}


def _engineering(profile: Profile, p: Point) -> object:
    if p.name in _decimals_points(profile):
        return 2
    if p.data_type is DataType.BOOL:
        return True
    if p.data_type is DataType.BITFIELD:
        return True if p.bit is not None else {name: i == 0 for i, name in enumerate(p.bits or {})}
    if p.data_type is DataType.STRING:
        return "AB"
    lo, hi = p.valid_range or (0.0, 100.0)
    return lo + (hi - lo) * 0.37


def _expected(profile: Profile, p: Point, values: dict[str, object]) -> object:
    decimals = values[p.decimals_from] if p.decimals_from else None
    data = encode_point(p, values[p.name], decimals=decimals)  # type: ignore[arg-type]
    return decode_point(p, data, decimals=decimals).value  # type: ignore[arg-type]


SHIPPED = sorted(ref.name for ref in find_profiles())


def _measured(r: Reading) -> bool:
    """A reading of what a device measured: not its state, not the description sent at start."""
    return "deviceState" not in r.attributes and not set(r.attributes) <= {"controlledProperty", "location"}


async def test_every_shipped_profile_reads_its_simulated_device(tmp_path: Path) -> None:
    assert len(SHIPPED) == 10
    images, expected = [], {}
    for unit, name in enumerate(SHIPPED, start=1):
        profile = load_profile(name)
        values = {p.name: _engineering(profile, p) for p in profile.points}
        images.append(image_from_values(unit, profile, values))
        expected[name] = {
            p.attribute: (_expected(profile, p, values), values[p.name], p) for p in profile.points if p.attribute
        }
    peer, port = await start_tcp_peer(images)
    devices = [
        {"name": f"d{unit}", "bus": "gw", "profile": name, "unit_id": unit, "poll_interval": 5, "timeout": 0.5}
        for unit, name in enumerate(SHIPPED, start=1)
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            await until(
                lambda: all(any(r.source.device == f"d{u}" and _measured(r) for r in readings) for u in range(1, 11))
            )
    finally:
        await peer.stop()
    for unit, name in enumerate(SHIPPED, start=1):
        profile = load_profile(name)
        got = next(r for r in readings if r.source.device == f"d{unit}" and _measured(r))
        assert got.entity_type == profile.entity_type
        dated = {"dateObserved"} if has_date_observed(profile.entity_type) else set()
        assert set(got.attributes) == set(expected[name]) | dated, name
        check_reading(got, encoding=ValueEncoding.PERCENT)  # the gateway stores it: Orion would take it
        described = [
            r
            for r in readings
            if r.source.device == f"d{unit}" and r.entity_type == "Device" and "controlledProperty" in r.attributes
        ]
        assert [r.attributes["controlledProperty"].value for r in described] == [list(profile.controlled_property)]
        for attribute, (want, chosen, point) in expected[name].items():
            value = got.attributes[attribute].value
            if point.ngsi_type == "Text" and isinstance(want, int):  # a number declared Text is sent as its text
                assert value == str(want), (name, attribute)
                value = int(value)
            assert value == want, (name, attribute)
            if isinstance(chosen, float):  # within one register step of the engineering value we put in
                step = abs(point.scale) / (100 if point.decimals_from else 1)
                assert math.isclose(value, chosen, abs_tol=step * 0.51 + 1e-9), (name, attribute, value, chosen)
            else:
                assert value == chosen, (name, attribute)
            assert got.attributes[attribute].unit == point.unit
            if point.data_type not in (DataType.BOOL, DataType.BITFIELD, DataType.STRING):
                assert got.attributes[attribute].metadata["quality"]["value"] == [], (name, attribute)


@pytest.mark.parametrize("text", ["tcp://", "serial:/dev/ttyUSB0", "rtu://", "tcp://h:70000"])
def test_bad_ports_are_refused_with_the_forms_that_work(text: str) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError) as info:
        modbus_config(
            [{"name": "b", "port": text}], [{"name": "d", "bus": "b", "profile": "generic/xy-md02", "unit_id": 1}]
        )
    assert "must be tcp://HOST:PORT (Modbus TCP), rtu-over-tcp://HOST:PORT" in str(info.value)


async def test_river_level_crossing_raises_an_alert_on_the_alert_lane(tmp_path: Path) -> None:
    from gateway.records import Lane

    level = load_profile("generic/pressure-level-transmitter")
    values = {"unit_code": 1, "decimals": 2, "level": 1.20, "range_zero": 0.0, "range_full": 5.0}
    peer, port = await start_tcp_peer([image_from_values(1, level, values)])
    devices = [
        {
            "name": "gauge",
            "bus": "gw",
            "profile": "generic/pressure-level-transmitter",
            "unit_id": 1,
            "poll_interval": 0.1,
            "timeout": 0.2,
            "river": {"point": "level", "thresholds": [{"level": 1.5}, {"level": 2.0}, {"level": 2.5}, {"level": 3.0}]},
        }
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    station = "urn:ngsi-ld:WaterObserved:gw1-gauge"
    try:
        async with running(adapter) as readings:
            await until(lambda: len(of(readings, station)) >= 2)
            assert of(readings, station)[-1].attributes["levelState"].value == "normal"
            await peer.server.async_setValues(1, 3, 4, [213])  # type: ignore[union-attr]  # 2.13 m
            await until(lambda: any(r.entity_type == "Alert" for r in readings))
            await until(lambda: of(readings, station)[-1].attributes["levelState"].value == "氾濫注意水位")
    finally:
        await peer.stop()
    alerts = [r for r in readings if r.entity_type == "Alert"]
    assert [a.lane for a in alerts] == [Lane.ALERT, Lane.ALERT]  # 1.5 and 2.0 crossed by one sample
    assert [a.attributes["thresholdName"].value for a in alerts] == ["水防団待機水位", "氾濫注意水位"]
    assert alerts[0].attributes["alertSource"].value == station
    last = of(readings, station)[-1]
    assert last.attributes["waterLevel"].value == 2.13 and last.attributes["levelStateIndex"].value == 2

"""Several units on one RTU bus over a socat pty pair: readings, offline/online with backoff, exceptions, CRC errors."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from adapters.modbus.bus import DeviceState
from adapters.modbus.config import ModbusConfig
from gateway.profiles import load_profile
from gateway.records import Attribute, Lane, TimeSource, iso_utc
from tests.adapters.modbus.peers import UnitImage, image_from_values, serial_bus
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, states, until

XY = load_profile("generic/xy-md02")


def _units() -> list[UnitImage]:
    images = []
    for unit, (t, rh) in {1: (21.5, 0.456), 2: (-3.2, 0.801), 3: (30.0, 0.1)}.items():
        images.append(
            image_from_values(unit, XY, {"temperature": t, "relative_humidity": rh, "temperature_correction": 0.5})
        )
    return images


def _config(path: str, **extra: object) -> ModbusConfig:
    devices = [
        {
            "name": f"th{u}",
            "bus": "rs485",
            "profile": "generic/xy-md02",
            "unit_id": u,
            "poll_interval": 0.1,
            "timeout": 0.1,
            "retries": 1,
        }
        for u in (1, 2, 3)
    ]
    return modbus_config([{"name": "rs485", "port": f"rtu://{path}"}], devices, **extra)


async def test_three_units_are_read_with_values_units_and_quality(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, _units()) as (path, _peer):
        adapter = make_adapter(_config(path), tmp_path)
        async with running(adapter) as readings:
            await until(
                lambda: all(
                    len(of(readings, f"urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th{u}")) >= 2 for u in (1, 2, 3)
                )
            )
    r2 = of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2")[0]
    assert r2.entity_type == "IndoorEnvironmentObserved"
    assert r2.attributes["temperature"].value == -3.2
    assert r2.attributes["temperature"].unit == "CEL"
    assert r2.attributes["temperature"].type == "Number"
    assert r2.attributes["temperature"].metadata == {"quality": {"type": "StructuredValue", "value": []}}
    assert r2.attributes["relativeHumidity"].value == 0.801
    # the correction setting is not published; IndoorEnvironmentObserved carries its observation time
    assert set(r2.attributes) == {"temperature", "relativeHumidity", "dateObserved"}
    assert r2.attributes["dateObserved"] == Attribute(value=iso_utc(r2.observed_at), type="DateTime")
    assert r2.time_source is TimeSource.GATEWAY and r2.lane is Lane.NORMAL
    assert r2.source.adapter == "cabinet" and r2.source.device == "th2"
    for u in (1, 2, 3):
        assert states(readings, f"urn:ngsi-ld:Device:gw1-th{u}") == ["online"]
    bus = adapter.buses["rs485"]
    assert all(d.counters.timeouts == 0 and d.counters.crc_errors == 0 for d in bus.devices)


async def test_unit_that_stops_answering_goes_offline_is_probed_with_backoff_and_comes_back(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, _units()) as (path, peer):
        adapter = make_adapter(_config(path), tmp_path)
        device_id = "urn:ngsi-ld:Device:gw1-th2"
        async with running(adapter) as readings:
            await until(lambda: states(readings, device_id) == ["online"])
            peer.muted.add(2)
            muted_at = time.monotonic()
            await until(lambda: states(readings, device_id) == ["online", "offline"])
            offline = of(readings, device_id)[-1]
            assert offline.attributes["deviceState"].metadata["reason"]["value"] == (
                f"modbus unit 2 FC04 @1 x2 on rtu://{path}: no answer, got nothing within 0.1 s, check wiring "
                "（A/B）, baud rate, parity and the unit id"
            )
            before = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"))
            await asyncio.sleep(1.6)
            # the others kept their 0.1 s rate while unit 2 was probed at 0.2, 0.4, 0.8, 0.8 … s
            assert len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1")) - before >= 10
            asked = peer.requests_to(2, since=muted_at)
            gaps = [b - a for a, b in itertools.pairwise(asked)]
            probe_gaps = [g for g in gaps if g > 0.15]
            assert len(probe_gaps) >= 2 and probe_gaps[1] > probe_gaps[0] * 1.5
            assert len(asked) <= 10  # polling would have asked ~30 times
            peer.muted.discard(2)
            await until(lambda: states(readings, device_id) == ["online", "offline", "online"], timeout=3)
            n = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2"))
            await until(lambda: len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2")) > n + 2)
        unit = adapter.buses["rs485"].devices[1]
        assert unit.state is DeviceState.ONLINE and unit.counters.went_offline == 1 and unit.counters.probes >= 2


async def test_corrupt_answers_are_counted_retried_and_never_stop_the_bus(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, _units()) as (path, peer):
        adapter = make_adapter(_config(path), tmp_path)
        async with running(adapter) as readings:
            await until(lambda: len(readings) >= 6)
            for _ in range(3):  # one at a time: each is caught by the CRC check and retried once
                answered = peer.answered
                peer.corrupt_next = 1
                await until(lambda: peer.corrupt_next == 0 and peer.answered > answered + 1)  # noqa: B023 -- awaited to the end in this same iteration
            n = len(readings)
            await until(lambda: len(readings) >= n + 6)
        counters = [d.counters for d in adapter.buses["rs485"].devices]
        assert sum(c.crc_errors for c in counters) == 3
        assert sum(c.retries for c in counters) == 3
        assert adapter.diagnostics()["malformed"] == {"crc_errors": 3, "frame_errors": 0}  # for status.json
        assert all(d.state is DeviceState.ONLINE for d in adapter.buses["rs485"].devices)
        values = {r.attributes["temperature"].value for r in readings if "temperature" in r.attributes}
        assert values == {21.5, -3.2, 30.0}  # no corrupted value got through


async def test_exception_02_is_counted_and_the_other_points_and_units_continue(tmp_path: Path) -> None:
    images = _units()
    del images[0].input[2]  # unit 1 lacks relative humidity: reading 0x0001 x2 runs into an invalid address
    async with serial_bus(tmp_path, images) as (path, _peer):
        adapter = make_adapter(_config(path), tmp_path)
        async with running(adapter) as readings:
            await until(lambda: len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th3")) >= 3)
        unit1 = adapter.buses["rs485"].devices[0]
        assert unit1.counters.exceptions[2] >= 2
        assert unit1.state is DeviceState.ONLINE  # an exception is an answer
        assert states(readings, "urn:ngsi-ld:Device:gw1-th1") == ["online"]
        # nothing published was readable: its points go out as null, flagged no_data, as a NaN does
        th1 = of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1")
        assert th1
        for reading in th1:
            for name in ("temperature", "relativeHumidity"):
                attribute = reading.attributes[name]
                assert attribute.value is None
                assert attribute.metadata["quality"]["value"] == ["no_data"]
        assert of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2")[0].attributes["temperature"].value == -3.2


async def test_requests_keep_the_inter_frame_gap(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, _units(), baud=1200) as (path, peer):
        config = _config(path)
        config = config.model_copy(update={"buses": (config.buses[0].model_copy(update={"baud": 1200}),)})
        adapter = make_adapter(config, tmp_path)
        async with running(adapter):
            await until(lambda: len(peer.requests) >= 20)
    times = sorted(t for _, t in peer.requests)
    # t3.5 at 1200 baud is 32 ms; the answers take ~1 ms on a pty, so consecutive requests are ≥ 32 ms apart
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.030

"""A poll forced by a command or by a device coming back is no late poll: `late_polls` counts only skipped poll times.

Regression: a forced poll used to be due at monotonic time 0, so the poll after it counted every
interval since the machine booted as skipped (62 012 after one command on a host up 17 hours).
"""

from __future__ import annotations

from pathlib import Path

from gateway.profiles import load_profile
from gateway.records import Command
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, states, until

XY = load_profile("generic/xy-md02")
DEVICE_ID = "urn:ngsi-ld:Device:gw1-th1"
TEMP = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"


async def test_commands_and_recoveries_leave_late_polls_at_zero(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer(
        [image_from_values(1, XY, {"temperature": 20.0, "relative_humidity": 0.5, "temperature_correction": 0.0})]
    )
    devices = [
        {
            "name": "th1",
            "bus": "gw",
            "profile": "generic/xy-md02",
            "unit_id": 1,
            "poll_interval": 0.5,
            "timeout": 0.1,
            "retries": 0,
        }
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    unit = adapter.buses["gw"].devices[0]
    try:
        async with running(adapter) as readings:
            await until(lambda: states(readings, DEVICE_ID) == ["online"])
            result = await adapter.handle(
                Command(command_id="c1", entity_id=DEVICE_ID, name="set_temperature_correction", value=5)
            )
            assert result.ok
            n = len(of(readings, TEMP))
            await until(lambda: len(of(readings, TEMP)) >= n + 2)  # the forced poll and the one after it
            assert unit.counters.late_polls == 0
            peer.muted.add(1)
            await until(lambda: states(readings, DEVICE_ID) == ["online", "offline"])
            peer.muted.discard(1)
            await until(lambda: states(readings, DEVICE_ID) == ["online", "offline", "online"])
            n = len(of(readings, TEMP))
            await until(lambda: len(of(readings, TEMP)) >= n + 2)
    finally:
        await peer.stop()
    assert unit.counters.late_polls == 0
    assert adapter.diagnostics()["buses"]["gw"]["devices"]["th1"]["late_polls"] == 0

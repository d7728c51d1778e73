"""A unit that refuses reads with exception answers is flagged: its last error, a `refusing` state, `no_data` values.

Regression: a unit answering every read with an exception stayed "online" with an empty
last_error and sent nothing, so nobody could tell it apart from a healthy, quiet one.
"""

from __future__ import annotations

from pathlib import Path

from adapters.modbus.bus import DeviceState
from tests.adapters.modbus.raw_rigs import adapter_behind_gateway, xy_md02
from tests.adapters.modbus.rawpeers import mbap, read_request, registers_pdu
from tests.adapters.modbus.running import of, states, until

TH1, TH2 = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1", "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2"
DEVICE2 = "urn:ngsi-ld:Device:gw1-th2"
NO_DATA = {"quality": {"type": "StructuredValue", "value": ["no_data"]}}
GOOD = {"quality": {"type": "StructuredValue", "value": []}}


def _devices() -> list[dict[str, object]]:
    return [xy_md02(u, "gw", timeout=0.2) for u in (1, 2)]


class Gateway:
    """A Modbus TCP gateway whose unit 2 refuses the function codes in `refused` with `code`."""

    def __init__(self) -> None:
        self.refused: set[int] = {3, 4}
        self.code = 2

    def __call__(self, tid: int, unit: int, pdu: bytes) -> bytes:
        fc, _, count = read_request(pdu)
        if unit == 2 and fc in self.refused:
            return mbap(tid, unit, bytes([fc | 0x80, self.code]))
        return mbap(tid, unit, registers_pdu(fc, [0x00D7] * count))


async def test_a_unit_refusing_every_read_is_refusing_with_its_error_and_no_data(tmp_path: Path) -> None:
    gateway = Gateway()
    async with adapter_behind_gateway(tmp_path, gateway, _devices()) as (adapter, readings):
        await until(lambda: states(readings, DEVICE2) == ["refusing"])
        th1, th2 = adapter.buses["gw"].devices
        assert th2.state is DeviceState.REFUSING and th1.state is DeviceState.ONLINE
        reason = of(readings, DEVICE2)[-1].attributes["deviceState"].metadata["reason"]["value"]
        assert reason.startswith("modbus unit 2 FC0")
        assert "exception 02 （illegal data address）" in reason  # softened for Orion like every reason
        assert th2.last_error.startswith("modbus unit 2 FC0") and th2.last_error.endswith(
            "exception 02 (illegal data address), got 02; the address is usually off by one between 0-based "
            "addresses and 40001 notation; also check that the read does not run past the device's last "
            "register (lower interface.max_gap or max_registers_per_read)"
        )
        # the attributes it should publish say so, with the same flag as a NaN or a sentinel
        refused = of(readings, TH2)[-1].attributes
        assert refused["temperature"].value is None and refused["temperature"].metadata == NO_DATA
        assert refused["relativeHumidity"].value is None and refused["relativeHumidity"].metadata == NO_DATA
        assert th2.failures_in_row == 0 and th2.counters.timeouts == 0  # it answers: not offline
        diag = adapter.diagnostics()
        assert diag["buses"]["gw"]["devices"]["th2"]["state"] == "refusing"
        assert diag["offline"] == ["th2"] and diag["summary"] == "devices online 1/2 (not online: th2)"
        # the register map fixed (or the device repaired): it reads again
        gateway.refused.clear()
        await until(lambda: states(readings, DEVICE2) == ["refusing", "online"])
        await until(lambda: of(readings, TH2)[-1].attributes["temperature"].value == 21.5)
    assert of(readings, TH2)[-1].attributes["temperature"].metadata == GOOD
    assert of(readings, DEVICE2)[-1].attributes["deviceState"].metadata["reason"]["value"] == ""


async def test_a_device_failure_exception_on_every_read_is_named(tmp_path: Path) -> None:
    gateway = Gateway()
    gateway.code = 4
    async with adapter_behind_gateway(tmp_path, gateway, _devices()) as (adapter, readings):
        await until(lambda: states(readings, DEVICE2) == ["refusing"])
    th2 = adapter.buses["gw"].devices[1]
    assert "exception 04 (server device failure), got 04; the device failed while answering" in th2.last_error
    assert th2.counters.exceptions[4] >= 2


async def test_a_unit_refusing_only_its_measurements_stays_online_and_flags_them(tmp_path: Path) -> None:
    # the input registers (FC04: temperature, humidity) refused, the holding register (FC03: a setting) read
    gateway = Gateway()
    gateway.refused = {4}
    async with adapter_behind_gateway(tmp_path, gateway, _devices()) as (adapter, readings):
        await until(lambda: len(of(readings, TH2)) >= 4)
    th2 = adapter.buses["gw"].devices[1]
    assert th2.state is DeviceState.ONLINE and states(readings, DEVICE2) == ["online"]
    assert th2.last_error.startswith("modbus unit 2 FC04 @1 x2 on tcp://127.0.0.1:")
    assert ": exception 02 (illegal data address), got 02; " in th2.last_error
    for reading in of(readings, TH2):
        assert reading.attributes["temperature"].value is None
        assert reading.attributes["temperature"].metadata == NO_DATA
    assert of(readings, TH1)[-1].attributes["temperature"].metadata == GOOD

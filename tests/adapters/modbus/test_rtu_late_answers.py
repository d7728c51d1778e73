"""A slow unit's late RTU answer is counted as its late answer and never breaks its neighbour's exchange.

Regression: the link cleared its inbox only when a request started and took the first bytes that
came, so a slow unit's answer arriving after its timeout landed in the healthy neighbour's
exchange as "answer from another unit … two devices may share unit id 2" (or a CRC error when it
straddled the request).
"""

from __future__ import annotations

from pathlib import Path

from adapters.modbus import rtu
from gateway.records import Reading
from tests.adapters.modbus.raw_rigs import adapter_on_rtu_device, xy_md02
from tests.adapters.modbus.rawpeers import rtu_answer
from tests.adapters.modbus.running import of, until

TH2 = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2"


def _devices(slow_timeout: float = 0.1) -> list[dict[str, object]]:
    return [xy_md02(1, "rs485", poll_interval=0.5, timeout=slow_timeout), xy_md02(2, "rs485")]


def _temperatures(readings: list[Reading]) -> set[object]:
    return {r.attributes["temperature"].value for r in of(readings, TH2) if "temperature" in r.attributes}


async def test_an_answer_arriving_just_after_the_timeout_is_let_pass_before_the_next_request(tmp_path: Path) -> None:

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        if request.unit_id == 1:  # 130 ms: after its timeout (100 ms + the answer's time on the wire at 9600)
            return [(0.13, rtu_answer(request, 0x00C8))]
        return [(0.005, rtu_answer(request, 0x00D7))]

    async with adapter_on_rtu_device(tmp_path, script, _devices()) as (adapter, readings):
        th1 = adapter.buses["rs485"].devices[0]
        await until(lambda: th1.counters.timeouts >= 4 and len(of(readings, TH2)) >= 10, timeout=10)
    th1, th2 = adapter.buses["rs485"].devices
    assert (th2.counters.frame_errors, th2.counters.crc_errors, th2.counters.timeouts) == (0, 0, 0)
    assert th2.last_error == ""
    assert _temperatures(readings) == {21.5}  # never unit 1's 20.0
    assert th1.counters.late_answers >= 3
    diag = adapter.diagnostics()["buses"]["rs485"]["devices"]
    assert diag["th1"]["late_answers"] == th1.counters.late_answers and diag["th2"]["late_answers"] == 0


async def test_a_late_frame_inside_the_neighbours_exchange_is_skipped(tmp_path: Path) -> None:
    # unit 1 is silent in its own exchanges; its answers come so late that they land inside unit 2's,
    # ahead of unit 2's own answer
    last: dict[int, rtu.Request] = {}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        last[request.unit_id] = request
        if request.unit_id == 1:
            return []
        late = rtu_answer(last[1], 0x00C8) if 1 in last else b""
        return [(0.002, late), (0.02, rtu_answer(request, 0x00D7))]

    async with adapter_on_rtu_device(tmp_path, script, _devices()) as (adapter, readings):
        th1 = adapter.buses["rs485"].devices[0]
        await until(lambda: th1.counters.late_answers >= 5, timeout=10)
    th1, th2 = adapter.buses["rs485"].devices
    assert (th2.counters.frame_errors, th2.counters.crc_errors, th2.counters.timeouts) == (0, 0, 0)
    assert _temperatures(readings) == {21.5}
    assert th1.counters.frame_errors == 0


async def test_a_second_answer_when_nothing_timed_out_points_at_a_shared_unit_id(tmp_path: Path) -> None:
    # two devices answer to unit id 1: the first at once, its twin so late that it lands in unit 2's exchange
    last: dict[int, rtu.Request] = {}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        last[request.unit_id] = request
        if request.unit_id == 1:
            return [(0.002, rtu_answer(request, 0x00C8))]
        twin = rtu_answer(last[1], 0x00C9) if 1 in last else b""
        return [(0.002, twin), (0.02, rtu_answer(request, 0x00D7))]

    async with adapter_on_rtu_device(tmp_path, script, _devices()) as (adapter, _):
        th2 = adapter.buses["rs485"].devices[1]
        await until(lambda: th2.counters.frame_errors >= 1, timeout=10)
    th1, th2 = adapter.buses["rs485"].devices
    where, _, what = th2.last_error.partition(": ")
    assert where in ("modbus unit 2 FC03 @259 x1", "modbus unit 2 FC04 @1 x2")
    assert what == (
        "answer from another unit, got unit 1; no request to unit 1 was left unanswered, so two devices may "
        "share unit id 1, or another master is on the bus"
    )
    assert th1.counters.late_answers == 0 and th1.counters.timeouts == 0

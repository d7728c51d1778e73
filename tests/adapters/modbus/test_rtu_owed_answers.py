"""An RTU unit asked twice for one read owes two answers: the second never becomes the next request's answer.

Regression (review 2, dfrobot/sen0676): the radar's air gap (@1) and level (@3) are two FC03 x1 reads.
Its answer to @1 came once after the timeout; the same read asked again (the retry, or the next poll)
took that late answer, and the unit's answer to the second asking then arrived inside the exchange of
@3, was taken as its answer, and the air gap was stored as the water level, quality good, with no
counter moved. RTU has no transaction id; the link now counts the answers a unit owes and waits for
them (or for their time to pass) before asking that unit anything else.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.modbus import rtu
from adapters.modbus.transport import ModbusTimeout
from gateway.records import Reading
from tests.adapters.modbus.raw_rigs import RtuLines, adapter_on_rtu_device, rtu_lines
from tests.adapters.modbus.running import of, until

__all__ = ["rtu_lines"]  # the fixture
RADAR = "urn:ngsi-ld:WaterObserved:gw1-radar"
AIR_GAP, LEVEL = 2000, 2300  # mm, at registers 1 and 3
VALUES = {1: AIR_GAP, 3: LEVEL}


def _fc03(address: int) -> rtu.Request:
    return rtu.Request(unit_id=1, function_code=3, address=address, count=1)


class SequentialUnit:
    """A unit that answers one request at a time, in order; `slow` maps the n-th request (from 1) to its latency."""

    def __init__(self, slow: dict[int, float], *, latency: float = 0.01) -> None:
        self.slow = slow
        self.latency = latency
        self.asked = 0
        self._busy_until = 0.0

    def __call__(self, request: rtu.Request) -> list[tuple[float, bytes]]:
        self.asked += 1
        now = time.monotonic()
        at = max(now, self._busy_until) + self.slow.get(self.asked, self.latency)
        self._busy_until = at
        value = VALUES.get(request.address, 400)
        return [(at - now, rtu.encode_response(request, registers=(value,) * request.count))]


def _radar(retries: int) -> list[dict[str, object]]:
    return [
        {
            "name": "radar",
            "bus": "rs485",
            "profile": "dfrobot/sen0676",
            "unit_id": 1,
            "poll_interval": 0.3,
            "timeout": 0.1,
            "retries": retries,
        }
    ]


def _levels(readings: list[Reading]) -> list[tuple[object, object]]:
    return [
        (r.attributes["distance"].value, r.attributes["waterLevel"].value)
        for r in of(readings, RADAR)
        if "waterLevel" in r.attributes
    ]


@pytest.mark.parametrize("retries", [0, 1])
async def test_a_slow_answer_to_the_air_gap_never_becomes_the_water_level(tmp_path: Path, retries: int) -> None:
    # the first poll asks @1 @3 @5 @2004; the 5th request, @1 of the second poll, is answered after 150 ms
    unit = SequentialUnit({5: 0.15})
    async with adapter_on_rtu_device(tmp_path, unit, _radar(retries)) as (adapter, readings):
        radar = adapter.buses["rs485"].devices[0]
        await until(lambda: radar.counters.late_answers >= 1 and len(_levels(readings)) >= 5, timeout=10)
    assert set(_levels(readings)) == {(2.0, 2.3)}  # never the air gap as the level
    c = radar.counters
    assert (c.timeouts, c.retries, c.late_answers, c.frame_errors, c.crc_errors) == (1, retries, 1, 0, 0)
    # the polls after the timeout read every point: its error is over
    assert radar.last_error == ""
    assert adapter.diagnostics()["buses"]["rs485"]["devices"]["radar"]["last_error"] == ""


async def test_the_retry_takes_the_late_answer_and_the_next_read_waits_for_the_second(rtu_lines: RtuLines) -> None:
    link = await rtu_lines.open(SequentialUnit({1: 0.15}))
    with pytest.raises(ModbusTimeout):
        await link.transact(_fc03(1), 0.1)
    retry = await link.transact(_fc03(1), 0.1)  # sent at once: the late answer to the first asking answers it
    assert retry.registers == (AIR_GAP,)
    assert link.take_late_answers() == []
    level = await link.transact(_fc03(3), 0.1)
    assert level.registers == (LEVEL,)
    assert link.take_late_answers() == [1]  # the second answer to @1, waited for and counted


async def test_a_retry_answered_at_once_leaves_a_wait_of_at_most_twice_the_timeout(rtu_lines: RtuLines) -> None:
    # the first asking is lost (noise), the retry answered in 10 ms: the answer the unit might still owe
    # is waited for until the retry's own timeout passed once more: at most about twice the timeout
    asked: list[rtu.Request] = []

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        asked.append(request)
        if len(asked) == 1:
            return []
        return [(0.01, rtu.encode_response(request, registers=(VALUES[request.address],)))]

    link = await rtu_lines.open(script)
    with pytest.raises(ModbusTimeout):
        await link.transact(_fc03(1), 0.1)
    assert (await link.transact(_fc03(1), 0.1)).registers == (AIR_GAP,)
    started = time.monotonic()
    assert (await link.transact(_fc03(3), 0.1)).registers == (LEVEL,)
    assert time.monotonic() - started < 0.4
    assert link.take_late_answers() == []


# --- any order of slow, lost and prompt answers ---------------------------------------------------------------

# what a unit does with a request: answer promptly, answer after its timeout (150 ms, plus 16 ms of frames at
# 9600 baud) and after the line's settling (24 ms) but well within twice it, or drop it (noise); a unit busy
# answering drops what it is sent meanwhile, as half-duplex devices do
TIMEOUT = 0.15
_FATES = st.sampled_from([0.005, 0.005, 0.23, 0.25, None])


class _Unit:
    def __init__(self, fates: list[float | None]) -> None:
        self.fates = fates
        self.answered = 0
        self._busy_until = 0.0

    def __call__(self, request: rtu.Request) -> list[tuple[float, bytes]]:
        now = time.monotonic()
        fate = self.fates.pop(0) if self.fates else 0.005
        if fate is None or now < self._busy_until:
            return []
        self._busy_until = now + fate
        self.answered += 1
        value = VALUES.get(request.address, request.address * 10)
        return [(fate, rtu.encode_response(request, registers=(value,)))]


async def _run(steps: list[tuple[int, int]], fates: list[float | None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lines = RtuLines(Path(tmp))
        unit = _Unit(fates)
        try:
            link = await lines.open(unit)
            taken = late = 0
            for address, retries in [*steps, (7, 0)]:  # @7 last, after a pause: counts what was still to come
                if address == 7:
                    await asyncio.sleep(2 * TIMEOUT)
                for _ in range(retries + 1):
                    try:
                        response = await link.transact(_fc03(address), TIMEOUT)
                    except ModbusTimeout:
                        continue
                    assert response.registers == (VALUES.get(address, address * 10),), (address, response)
                    taken += 1
                    break
                late += len(link.take_late_answers())
            assert taken + late <= unit.answered  # each answer is taken or counted late, never both or twice
        finally:
            await lines.close()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(st.sampled_from([1, 3, 5]), st.integers(0, 1)), min_size=2, max_size=5),
    fates=st.lists(_FATES, max_size=8),
)
def test_every_answer_taken_carries_the_register_asked(steps: list[tuple[int, int]], fates: list[float | None]) -> None:
    asyncio.run(_run(steps, fates))

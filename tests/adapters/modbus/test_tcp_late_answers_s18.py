"""A late Modbus TCP answer (its transaction id belongs to a request that timed out) is counted as on RTU.

Regression: pymodbus drops such an answer and the TCP link never reported it, so a slow unit behind
a gateway showed only timeouts, while on RTU the same unit's `late_answers` told the technician to
raise its timeout.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus import rtu, transport
from adapters.modbus.config import parse_port
from adapters.modbus.transport import ModbusTimeout, TcpLink
from tests.adapters.modbus.raw_rigs import adapter_behind_gateway, xy_md02
from tests.adapters.modbus.rawpeers import RawTcpServer, TcpScript, mbap, read_request, registers_pdu
from tests.adapters.modbus.running import of, until

TH2 = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2"
LATE_LINE = "an answer came after its timeout"


async def test_a_late_answer_behind_a_gateway_is_counted_and_logged_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # unit 1 is silent in its own exchanges; its answer comes ahead of unit 2's, in unit 2's exchange
    asked: dict[str, tuple[int, bytes]] = {}
    sent = {"late": 0}

    def script(tid: int, unit: int, pdu: bytes) -> bytes | None:
        fc, _, count = read_request(pdu)
        if unit == 1:
            asked["unit 1"] = (tid, pdu)
            return None
        late = b""
        if "unit 1" in asked:
            late_tid, late_pdu = asked.pop("unit 1")
            late_fc, _, late_count = read_request(late_pdu)
            late = mbap(late_tid, 1, registers_pdu(late_fc, [0xC8] * late_count))
            sent["late"] += 1
        return late + mbap(tid, unit, registers_pdu(fc, [0xD7] * count))

    caplog.set_level(logging.DEBUG, logger="adapters.modbus.bus")
    async with adapter_behind_gateway(tmp_path, script, [xy_md02(1, "gw"), xy_md02(2, "gw")]) as (adapter, readings):
        th1, th2 = adapter.buses["gw"].devices
        await until(lambda: th1.counters.late_answers >= 3, timeout=10)
    assert th1.counters.late_answers in (sent["late"], sent["late"] - 1)  # the last may still be untaken
    assert th1.counters.timeouts >= th1.counters.late_answers
    assert (th2.counters.frame_errors, th2.counters.timeouts, th2.counters.late_answers) == (0, 0, 0)
    assert {r.attributes["temperature"].value for r in of(readings, TH2) if "temperature" in r.attributes} == {21.5}
    diag = adapter.diagnostics()["buses"]["gw"]["devices"]
    assert diag["th1"]["late_answers"] == th1.counters.late_answers and diag["th2"]["late_answers"] == 0
    logged = [r for r in caplog.records if LATE_LINE in r.getMessage()]
    assert len(logged) == th1.counters.late_answers
    assert all(r.levelno == logging.DEBUG and "th1" in r.getMessage() for r in logged)


def _slow_first_answer() -> TcpScript:
    """A Modbus TCP device that answers its first request 150 ms late, in two pieces, and the rest at once."""
    asked = {"n": 0}

    def script(tid: int, unit: int, pdu: bytes) -> bytes | list[tuple[float, bytes]]:
        fc, _, count = read_request(pdu)
        asked["n"] += 1
        answer = mbap(tid, unit, registers_pdu(fc, [0xD7] * count))
        return [(0.15, answer[:5]), (0.18, answer[5:])] if asked["n"] == 1 else answer

    return script


async def test_a_late_answer_between_two_exchanges_is_counted_exactly_once() -> None:
    unit = await RawTcpServer(_slow_first_answer()).start()
    link = TcpLink(parse_port(f"tcp://127.0.0.1:{unit.port}"))
    request = rtu.Request(unit_id=1, function_code=4, address=1, count=2)
    try:
        await link.open()
        with pytest.raises(ModbusTimeout):
            await link.transact(request, 0.05)
        assert link.take_late_answers() == []
        await asyncio.sleep(0.3)  # the late answer arrives, in two pieces, while nothing is asked
        response = await link.transact(request, 0.5)
        assert response.registers == (0xD7, 0xD7)
        assert link.take_late_answers() == [1]
        await link.transact(request, 0.5)
        assert link.take_late_answers() == []
    finally:
        await link.close()
        await unit.stop()


async def test_an_unasked_transaction_id_is_not_a_late_answer() -> None:
    # an answer to a transaction that never timed out (a gateway's stray frame) is dropped, not counted
    def script(tid: int, unit: int, pdu: bytes) -> bytes:
        fc, _, count = read_request(pdu)
        return mbap(tid + 500, unit, registers_pdu(fc, [1] * count)) + mbap(tid, unit, registers_pdu(fc, [2] * count))

    server = await RawTcpServer(script).start()
    link = TcpLink(parse_port(f"tcp://127.0.0.1:{server.port}"))
    try:
        await link.open()
        response = await link.transact(rtu.Request(unit_id=3, function_code=3, address=0, count=1), 0.5)
    finally:
        await link.close()
        await server.stop()
    assert response.registers == (2,)
    assert link.take_late_answers() == []


_frames = st.lists(
    st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(min_size=1, max_size=253)), max_size=5
)


@given(_frames, st.data())
def test_mbap_transactions_are_the_whole_frames_in_any_piece_of_the_stream(
    frames: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(mbap(tid, unit, pdu) for tid, unit, pdu in frames)
    assert transport.mbap_transactions(stream) == [tid for tid, _, _ in frames]
    cut = data.draw(st.integers(0, len(stream)))
    ends, whole, whole_bytes = 0, [], 0
    for tid, _, pdu in frames:
        ends += 7 + len(pdu)
        if ends <= cut:
            whole.append(tid)
            whole_bytes = ends
    assert transport.mbap_transactions(stream[:cut]) == whole
    # a broken header (protocol id 7) ends the walk: nothing after it is taken for a frame
    assert transport.mbap_transactions(stream[:whole_bytes] + b"\x00\x01\x00\x07\x00\x03\x01" + stream) == whole

"""A Modbus TCP answer longer than its request asked is named for what came and for what usually sends it.

Regression: an answer with more registers than asked read `expected 4 data bytes, got byte count 10 in 15 bytes`:
no word of what was asked or what came, a length counted as if it were an RTU frame (the frame on the wire was
19 bytes), and no cause, so the technician went after the device's firmware; and an answer padded after its
data (a converter passing the RTU CRC through) read `… got byte count 4 in 11 bytes`, the byte count as asked.
Tested with a raw MBAP server on loopback, one unit broken and its neighbour behind the same gateway served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus import rtu
from adapters.modbus.transport import mbap_problem
from tests.adapters.modbus.rawpeers import RawTcpServer, mbap, read_request, registers_pdu
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, until
from tests.adapters.modbus.test_tcp_answer_checks import DEVICE

MORE = (
    "unit 2 answered 5 registers to a read of 2: expected 4 data bytes, got byte count 10 in a 19-byte frame; "
    "the device or the gateway in front of it answers a fixed block, or the gateway routes unit 2 to another "
    "device: check the unit ids the gateway maps, and that the profile is for this model, its function code "
    "and addresses"
)
PADDED = (
    "unit 2 answered the 4 data bytes asked and 2 bytes after them: MBAP length 9, expected 7; a gateway or "
    "converter that pads its answers (2 bytes: it passes the RTU CRC through): set it to convert Modbus TCP to "
    "RTU, not to pass frames through"
)

ANSWERS: dict[str, tuple[Callable[[int, int], bytes], str]] = {
    "more registers": (lambda fc, count: registers_pdu(fc, [0xD7] * (count + 3)), MORE),
    "padded": (lambda fc, count: registers_pdu(fc, [0xD7] * count) + b"\x3c\x71", PADDED),
}


@pytest.mark.parametrize("case", list(ANSWERS))
async def test_an_oversized_answer_says_what_was_asked_what_came_and_why(case: str, tmp_path: Path) -> None:
    answer, message = ANSWERS[case]

    def script(tid: int, unit: int, pdu: bytes) -> bytes:
        fc, _, count = read_request(pdu)
        if unit == 2 and fc == 4:
            return mbap(tid, unit, answer(fc, count))
        return mbap(tid, unit, registers_pdu(fc, [0xD7] * count))

    server = await RawTcpServer(script).start()
    devices = [{**DEVICE[0], "name": f"th{u}", "unit_id": u} for u in (1, 2)]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{server.port}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            th1, th2 = adapter.buses["gw"].devices
            await until(lambda: th2.counters.frame_errors >= 3)
            n = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"))
            await until(lambda: len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1")) >= n + 2)
    finally:
        await server.stop()
    assert th2.last_error == f"modbus unit 2 FC04 @1 x2 on tcp://127.0.0.1:{server.port}: {message}"
    assert th2.counters.timeouts == 0
    assert of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2") == []  # its values are not used
    diag = adapter.diagnostics()
    assert diag["buses"]["gw"]["devices"]["th2"]["frame_errors"] == th2.counters.frame_errors
    assert diag["malformed"]["frame_errors"] == th2.counters.frame_errors
    assert th1.counters.frame_errors == 0 and server.connections == 1


_reads = st.builds(
    lambda fc, count, unit: rtu.Request(unit_id=unit, function_code=fc, address=0, count=count),
    st.sampled_from([3, 4]),
    st.integers(1, 125),
    st.integers(1, 247),
)


@given(_reads, st.integers(1, 125), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_any_answer_with_more_registers_is_named_with_its_tcp_frame(
    request: rtu.Request, extra: int, value: int, tid: int
) -> None:
    got = min(125, request.count + extra)  # an MBAP length of at most 254 holds 125 registers
    if got == request.count:
        return
    frame = mbap(tid, request.unit_id, registers_pdu(request.function_code, [value] * got))
    problem = mbap_problem(request, tid, frame)
    assert problem is not None
    assert problem.startswith(
        f"unit {request.unit_id} answered {got} registers to a read of {request.count}: expected "
        f"{2 * request.count} data bytes, got byte count {2 * got} in a {len(frame)}-byte frame; "
    )
    assert f"routes unit {request.unit_id} to another device" in problem


@given(_reads, st.binary(min_size=1, max_size=40), st.integers(0, 0xFFFF))
def test_any_padding_after_the_data_asked_is_named_as_padding(request: rtu.Request, pad: bytes, tid: int) -> None:
    pdu = registers_pdu(request.function_code, [0x0102] * request.count) + pad
    if len(pdu) + 1 > 254:
        return  # past what an MBAP length may say: a broken header, not padding
    problem = mbap_problem(request, tid, mbap(tid, request.unit_id, pdu))
    assert problem is not None
    assert problem.startswith(
        f"unit {request.unit_id} answered the {2 * request.count} data bytes asked and {len(pad)} bytes after "
        f"them: MBAP length {len(pdu) + 1}, expected {2 * request.count + 3}; a gateway or converter that pads "
    )
    assert ("passes the RTU CRC through" in problem) == (len(pad) == 2)


@given(_reads, st.integers(0, 0xFFFF))
def test_an_answer_as_asked_has_no_problem(request: rtu.Request, tid: int) -> None:
    frame = mbap(tid, request.unit_id, registers_pdu(request.function_code, [7] * request.count))
    assert mbap_problem(request, tid, frame) is None


def test_a_padded_write_echo_is_named_as_padding() -> None:
    write = rtu.Request(unit_id=2, function_code=6, address=40, value=0x0102)
    echo = rtu.encode_pdu(write)[:5]
    assert mbap_problem(write, 5, mbap(5, 2, echo)) is None
    assert mbap_problem(write, 5, mbap(5, 2, echo + b"\x99\x37")) == (
        "unit 2 answered the echo of its write and 2 bytes after it: MBAP length 8, expected 6; a gateway or "
        "converter that pads its answers (2 bytes: it passes the RTU CRC through): set it to convert Modbus TCP to "
        "RTU, not to pass frames through"
    )

"""Modbus links (TCP, RTU on a serial port, RTU over TCP): open, one request/answer with a timeout, typed errors.

This is the only module that imports pymodbus or pyserial. Modbus TCP goes through pymodbus's client
(MBAP framing, transaction ids that drop a late answer); RTU frames are built and checked by our
sans-I/O `adapters.modbus.rtu`, because the bus scheduler needs what pymodbus's RTU client hides:
a CRC error counted as such instead of a silent timeout, and its own inter-frame gap. Serial ports
open through pyserial's `serial_for_url`, so `/dev/ttyUSB0`, ptys and `socket://host:port` all work.

Every foreign exception leaves this module as one of ours:
    LinkError (AdapterError, ConnectionError)   the port or connection cannot be opened or was lost
    ├── PortMissing                             no such serial device
    ├── PortPermission                          the user may not open it (dialout group)
    └── LineNoisy                               an RTU line that never goes quiet (it streams bytes)
    ModbusTimeout (DeviceTimeout)               no (complete) answer in time
    rtu.CrcError / rtu.FrameError               an answer that is not a valid frame for the request
    rtu.ExceptionResponse                       the device refused (exception code, name and hint)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

import pymodbus
import serial  # type: ignore[import-untyped]
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from adapters.modbus import rtu
from adapters.modbus.config import PortAddress, SerialSettings
from gateway.cancellation import cancel_and_wait, event_set_within
from gateway.errors import AdapterError, DeviceTimeout
from gateway.profiles.schema import Transport

__all__ = [
    "PYMODBUS_VERSION",
    "LineNoisy",
    "Link",
    "LinkError",
    "ModbusTimeout",
    "PortMissing",
    "PortPermission",
    "RtuSerialLink",
    "RtuTcpLink",
    "TcpLink",
    "mbap_partial",
    "mbap_problem",
    "mbap_transactions",
    "open_link",
]

PYMODBUS_VERSION = pymodbus.__version__

# pymodbus logs every timeout at ERROR and every skipped late answer; we translate and count them
# ourselves (state changes logged once), so its own lines would only repeat ours on every poll.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# `slave=` became `device_id=` in pymodbus 3.10; pick whichever the installed version takes.
_UNIT_KW = "device_id" if "device_id" in inspect.signature(AsyncModbusTcpClient.read_coils).parameters else "slave"


class LinkError(AdapterError, ConnectionError):
    code = "modbus_link"


class PortMissing(LinkError):
    code = "modbus_port_missing"


class PortPermission(LinkError):
    code = "modbus_port_permission"


class LineNoisy(LinkError):
    """The line streams bytes without the pause a Modbus RTU line keeps between frames: no request can be framed.

    The port stays open: it is the line (a babbling unit, a wrong port), not the connection, that fails.
    """

    code = "modbus_line_noisy"


class ModbusTimeout(DeviceTimeout):
    code = "modbus_timeout"


class Link(Protocol):
    """One physical or logical line; requests on it must be serialized by the caller (the bus)."""

    description: str

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def transact(self, request: rtu.Request, timeout: float) -> rtu.Response:
        """Send one request and return its answer; raises ModbusTimeout, ModbusError or LinkError."""
        ...

    def take_late_answers(self) -> list[int]:
        """The unit ids of answers that came after their request had timed out, since the last call."""
        ...

    @property
    def dropped_bytes(self) -> int:
        """Bytes that came while no request could take them, beyond what the link keeps: a line that streams."""
        ...


def open_link(address: PortAddress, settings: SerialSettings, *, connect_timeout: float = 3.0) -> Link:
    """The link for a port address (not yet opened)."""
    if address.transport is Transport.TCP:
        return TcpLink(address, connect_timeout=connect_timeout)
    if address.transport is Transport.RTU_OVER_TCP:
        return RtuTcpLink(address, settings, connect_timeout=connect_timeout)
    return RtuSerialLink(address, settings)


# --- Modbus TCP through pymodbus --------------------------------------------------------------------------


class _Pending:
    """The exchange a TcpLink waits for: its transaction id (seen as it is sent) and what was wrong with its answer."""

    def __init__(self, request: rtu.Request) -> None:
        self.request = request
        self.tid: int | None = None
        self.received = b""  # pymodbus's receive buffer as last seen
        self.problem: str | None = None
        self.broken = asyncio.Event()


class TcpLink:
    """Modbus TCP (MBAP) to one host: a device or a TCP-to-RS-485 gateway with several unit ids.

    pymodbus frames the answers, but it drops an answer from another unit or with a bad header
    without a word (a "timeout" follows), and an answer it cannot decode raises inside its protocol,
    which closes the connection of every unit behind the gateway. So the received bytes pass our
    check first (`mbap_problem`, through pymodbus's `trace_packet` hook): a broken answer is kept
    from pymodbus and reported at once as a frame error of the unit asked. An answer to a request
    that timed out (a late one, which pymodbus drops) is reported through `take_late_answers`, as on RTU.
    """

    def __init__(self, address: PortAddress, *, connect_timeout: float = 3.0) -> None:
        self.address = address
        self.description = address.text
        self._connect_timeout = connect_timeout
        self._client: AsyncModbusTcpClient | None = None
        self._pending: _Pending | None = None
        self._timed_out: dict[int, int] = {}  # transaction id -> unit id, of requests whose answer may come late
        self._late: list[int] = []  # units whose late answers came, for take_late_answers

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def dropped_bytes(self) -> int:
        return 0  # pymodbus frames the stream (MBAP lengths) and drops what is no answer

    async def open(self) -> None:
        await self.close()
        self._timed_out.clear()  # pymodbus numbers the transactions of a new connection from 1 again
        # retries=0 and no reconnect: the bus counts retries and reopens with its own backoff
        client = AsyncModbusTcpClient(
            self.address.host,
            port=self.address.port,
            timeout=self._connect_timeout,
            retries=0,
            reconnect_delay=0,
            reconnect_delay_max=0,
            trace_packet=self._trace,
        )
        client.set_max_no_responses(2**31)  # one silent unit must not close the link its neighbours use
        if not await client.connect():
            client.close()
            raise LinkError(
                f"modbus {self.description}: cannot connect, got no connection within {self._connect_timeout:g} s; "
                "check the address and port (502 by default), that the device is powered and on this network",
                port=self.description,
            )
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def take_late_answers(self) -> list[int]:
        """The unit ids of the answers that came after their request had timed out, since the last call."""
        late, self._late = self._late, []
        return late

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and self._timed_out:
            # pymodbus drops these (their transaction id is not the current one's): count them first. A
            # frame is seen again with every later piece of data until pymodbus consumes it, so each
            # transaction id is forgotten once counted.
            for tid in mbap_transactions(data):
                unit = self._timed_out.pop(tid, None)
                if unit is not None:
                    self._late.append(unit)
        pending = self._pending
        if pending is None or pending.problem is not None:
            return b""  # nothing is asked (or the answer is judged already): pymodbus gets nothing to choke on
        if sending:
            pending.tid = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return data
        pending.received = data
        if pending.tid is None:
            return data
        problem = mbap_problem(pending.request, pending.tid, data)
        if problem is None:
            return data
        pending.problem = problem
        pending.broken.set()
        return b""

    async def transact(self, request: rtu.Request, timeout: float) -> rtu.Response:
        client = self._client
        where = f"{request.describe()} on {self.description}"
        if client is None or not client.connected:
            raise LinkError(
                f"modbus {self.description}: connection lost, got a closed link; it will be reopened",
                port=self.description,
            )
        pending = self._pending = _Pending(request)
        call = asyncio.ensure_future(self._call(client, request))
        broken = asyncio.ensure_future(pending.broken.wait())
        try:
            await asyncio.wait((call, broken), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pending = None
            broken.cancel()
            if not call.done():
                await cancel_and_wait(call)
        if pending.problem is not None:
            raise rtu.FrameError(f"{where}: {pending.problem}")
        try:
            if not call.done() or call.cancelled():
                raise TimeoutError
            pdu = call.result()
        except TimeoutError:
            partial = mbap_partial(pending.tid, pending.received)
            if partial is not None:
                raise rtu.FrameError(f"{where}: {partial} within {timeout:g} s") from None
            self._may_come_late(pending)
            raise ModbusTimeout(
                f"{where}: no answer, got nothing within {timeout:g} s; check the unit id, "
                "and that the device behind a gateway is powered and wired",
                unit_id=request.unit_id,
                timeout=timeout,
            ) from None
        except ConnectionException as exc:
            await self.close()
            raise LinkError(f"modbus {self.description}: connection lost, got {exc}", port=self.description) from None
        except ModbusIOException:
            self._may_come_late(pending)
            raise ModbusTimeout(
                f"{where}: no answer, got nothing within {timeout:g} s", unit_id=request.unit_id, timeout=timeout
            ) from None
        except ModbusException as exc:
            raise rtu.FrameError(f"{where}: unusable answer, got {exc}") from None
        except OSError as exc:
            await self.close()
            raise LinkError(f"modbus {self.description}: connection lost, got {exc}", port=self.description) from None
        return _from_pdu(request, pdu, where)

    def _may_come_late(self, pending: _Pending) -> None:
        if pending.tid is None:
            return
        self._timed_out[pending.tid] = pending.request.unit_id
        if len(self._timed_out) > _LATE_TIDS:  # an answer later than this many timeouts will not come
            del self._timed_out[next(iter(self._timed_out))]

    @staticmethod
    async def _call(client: AsyncModbusTcpClient, r: rtu.Request) -> Any:
        unit: dict[str, Any] = {_UNIT_KW: r.unit_id}
        fc = r.function_code
        if fc == 1:
            return await client.read_coils(r.address, count=r.count, **unit)
        if fc == 2:
            return await client.read_discrete_inputs(r.address, count=r.count, **unit)
        if fc == 3:
            return await client.read_holding_registers(r.address, count=r.count, **unit)
        if fc == 4:
            return await client.read_input_registers(r.address, count=r.count, **unit)
        if fc == 5:
            return await client.write_coil(r.address, bool(r.value), **unit)
        if fc == 6:
            return await client.write_register(r.address, r.value, **unit)
        if fc == 15:
            return await client.write_coils(r.address, list(r.bits), **unit)
        if fc == 16:
            return await client.write_registers(r.address, list(r.registers), **unit)
        raise ValueError(f"{r.describe()}: function code must be one of 1-6, 15, 16, got {fc}")


_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit id + PDU), unit id
_LATE_TIDS = 64  # timed-out transactions remembered per connection, for counting their late answers


def mbap_transactions(data: bytes) -> list[int]:
    """The transaction ids of the whole Modbus TCP frames at the front of `data` (up to a broken header)."""
    tids: list[int] = []
    at = 0
    while len(data) - at >= _MBAP.size:
        tid, protocol, length, _ = _MBAP.unpack_from(data, at)
        if protocol != 0 or not 2 <= length <= 254 or len(data) < at + 6 + length:
            break
        tids.append(tid)
        at += 6 + length
    return tids


def mbap_problem(request: rtu.Request, tid: int, data: bytes) -> str | None:
    """What is wrong with the answer to transaction `tid` in received bytes `data`; None if nothing (yet).

    Answers to other transactions (late ones) are passed over, as pymodbus does; an incomplete answer
    is not judged until the timeout (`mbap_partial`).
    """
    at = 0
    while len(data) - at >= _MBAP.size:
        got_tid, protocol, length, unit = _MBAP.unpack_from(data, at)
        if protocol != 0:
            return (
                f"not a Modbus TCP answer, got protocol id {protocol}, expected 0; check that the port is the "
                "device's Modbus TCP port and not a serial server's raw one (for that, rtu-over-tcp://)"
            )
        if not 2 <= length <= 254:
            return f"broken MBAP header, got length {length}, expected 2..254 ({data[at : at + 16].hex(' ')})"
        end = at + 6 + length
        if len(data) < end:
            return None
        if got_tid == tid:
            if unit != request.unit_id:
                return f"answer from another unit, got unit {unit}; check the unit ids the Modbus TCP gateway maps"
            pdu = data[at + _MBAP.size : end]
            oversized = _oversized(request, pdu)
            if oversized:
                return oversized
            try:
                rtu.decode_response_pdu(request, unit, pdu, "")
            except rtu.ExceptionResponse:
                return None  # a refusal is an answer: pymodbus decodes it
            except rtu.FrameError as exc:
                return exc.message.removeprefix(": ")  # the PDU check's own words, without a `where`
            return None
        at = end
    return None


# What sends a longer answer over TCP: the unit, or the gateway in front of it answering for the wrong device.
_MORE_CAUSE = (
    "the device or the gateway in front of it answers a fixed block, or the gateway routes unit {unit} to another "
    "device: check the unit ids the gateway maps, and that the profile is for this model, its function code and "
    "addresses"
)
_RTU_CRC = 2  # bytes a converter left in "transparent" mode passes through after each answer


def _oversized(request: rtu.Request, pdu: bytes) -> str:
    """The wording for an answer longer than `request` asked: more data than asked (its byte count true to the PDU),
    or the answer as asked with bytes after it that its MBAP length counts; "" if neither."""
    longer = rtu.longer_answer(request, pdu)
    if longer:
        cause = _MORE_CAUSE.format(unit=request.unit_id)
        return f"{longer} in a {_MBAP.size + len(pdu)}-byte frame; {cause}"
    size = rtu.expected_response_length(request) - 3  # the PDU of a normal answer: the RTU frame less unit and CRC
    if len(pdu) <= size or pdu[0] != request.function_code:
        return ""
    try:
        rtu.decode_response_pdu(request, request.unit_id, pdu[:size], "")
    except rtu.ModbusError:
        return ""  # not the answer asked for with bytes after it: the PDU check words it
    extra = len(pdu) - size
    what = (
        f"the {size - 2} data bytes asked and {extra} bytes after them"
        if request.function_code in (1, 2, 3, 4)
        else f"the echo of its write and {extra} bytes after it"
    )
    crc = f" ({_RTU_CRC} bytes: it passes the RTU CRC through)" if extra == _RTU_CRC else ""
    return (
        f"unit {request.unit_id} answered {what}: MBAP length {len(pdu) + 1}, expected {size + 1}; a gateway or "
        f"converter that pads its answers{crc}: set it to convert Modbus TCP to RTU, not to pass frames through"
    )


def mbap_partial(tid: int | None, data: bytes) -> str | None:
    """The wording for bytes of transaction `tid` that never made a whole answer; None when none came."""
    at = 0
    while len(data) - at >= _MBAP.size:
        got_tid, _, length, _ = _MBAP.unpack_from(data, at)
        if got_tid == tid or len(data) < at + 6 + length:
            return f"incomplete answer, got {len(data) - at} of {6 + length} bytes"
        at += 6 + length  # a late answer to an earlier transaction
    if at < len(data):
        return f"incomplete answer, got {len(data) - at} bytes ({data[at : at + 16].hex(' ')})"
    return None


def _from_pdu(request: rtu.Request, pdu: Any, where: str) -> rtu.Response:
    fc = request.function_code
    # pymodbus matches an answer to its request by transaction id only: the function code is ours to check
    got = int(pdu.function_code) & 0xFF
    if pdu.isError():
        code = int(getattr(pdu, "exception_code", 0)) & 0xFF
        # the shared decoder words the exception (name and technician hint) exactly as for RTU, and
        # refuses an exception answer to another function code as a frame error
        rtu.decode_response_pdu(request, request.unit_id, bytes([got, code]), where)
    if got != fc:
        raise rtu.FrameError(f"{where}: answer for another function code, got {got}", function_code=got)
    if fc in (1, 2):
        bits = tuple(bool(b) for b in pdu.bits[: request.count])
        if len(bits) != request.count:
            raise rtu.FrameError(f"{where}: expected {request.count} bits, got {len(bits)}")
        return rtu.Response(unit_id=request.unit_id, function_code=fc, bits=bits)
    if fc in (3, 4):
        regs = tuple(int(r) for r in pdu.registers)
        if len(regs) != request.count:
            raise rtu.FrameError(f"{where}: expected {request.count} registers, got {len(regs)}")
        return rtu.Response(unit_id=request.unit_id, function_code=fc, registers=regs)
    if fc in (5, 6):
        return rtu.Response(unit_id=request.unit_id, function_code=fc, address=request.address, value=request.value)
    n = len(request.bits) or len(request.registers)
    return rtu.Response(unit_id=request.unit_id, function_code=fc, address=request.address, count=n)


# --- RTU framing over a byte stream -----------------------------------------------------------------------


# The most bytes an inbox holds. An exchange needs its answer (an RTU frame is at most 260 bytes: a byte
# count of 255) and the late answers of a few units ahead of it; between exchanges only late answers come.
# More is a line that streams (a babbling unit, a wrong port or baud rate, a serial server's console): the
# oldest bytes go, counted, so a line that never stops cannot fill the gateway's memory.
_FRAME_MAX = 260
_INBOX_MAX = 8 * _FRAME_MAX


class _Inbox:
    """Bytes from the line (the newest `_INBOX_MAX`), and an event that wakes the request waiting for them."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.event = asyncio.Event()
        self.error: Exception | None = None
        self.dropped = 0  # the oldest bytes dropped to keep the bound
        self.received = 0  # every byte that came
        self.last_byte = 0.0  # when (monotonic) the last bytes were handed to us

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        self.last_byte = time.monotonic()
        self.data += data
        over = len(self.data) - _INBOX_MAX
        if over > 0:
            del self.data[:over]
            self.dropped += over
        self.event.set()

    def fail(self, exc: Exception) -> None:
        self.error = exc
        self.event.set()


# After a failed exchange the line may still carry its answer (a slow unit answering past its timeout,
# the rest of a broken frame): the next request waits until the line has been quiet for t3.5 plus this
# margin, because USB–RS-485 dongles hand received bytes over in bursts (FTDI: every 16 ms) and a
# request sent into an answer collides with it on a half-duplex line.
_SETTLE_MARGIN = 0.02
_SETTLE_MARGIN_TCP = 0.05  # a serial server adds its network's and its own buffering's delay
_SETTLE_MAX_TCP = 0.3  # the longest a frame can take on a serial server's line is unknown: bound the wait


class _RtuLink:
    """RTU request/answer over any byte stream; subclasses open the stream and write bytes.

    Theory of operation. RTU has no transaction id: an answer is known only by its place on the line
    (after its request, from the unit asked) and by the silence around it. So:

    - Answers owed are counted, not remembered as a flag. A unit whose request got no answer (the line
      stayed silent) may still answer it until its timeout has passed once more (`_owed`). The same
      question asked again (a retry, the next poll) goes at once, and the first answer of its shape is
      taken for it: it is the answer to one of the same askings, so it carries the same register. The
      unit then still owes one answer; before it is asked anything else, that answer is waited for
      (skipped and counted in `take_late_answers`) or the time it could come in is let pass
      (`_await_owed`). Else it would come inside the next request's exchange and, with the same
      function code and length, be taken for that answer, with another register's value. That wait
      lasts up to about twice the timeout, and the bus waits with it: a retry answered at once may
      have taken the first asking's answer, and its own may come until its timeout has passed once
      more. An answer later than that is beyond what order and silence can tell when it has the
      shape of the next asking's: `late_answers` growing says raise the unit's timeout.
    - Before the next request after a failed exchange, after stray bytes, or after the line streamed
      past what the inbox keeps (`_INBOX_MAX`), the line is let settle (see `_SETTLE_MARGIN`); a line
      that does not stay quiet that long before the longest frame would have ended, or that brings
      more than the inbox keeps in one exchange, is a `LineNoisy` fault of the line.
    - A complete, CRC-valid answer from a unit left unanswered that arrives inside another unit's
      exchange is skipped and counted as its late answer. A complete answer from a unit whose
      request *was* answered is a second answer: a frame error that points at a shared unit id or
      another master. A frame from the unit asked can be a late answer only when an earlier request
      to it went unanswered and the frame has the function code and length of that request's answer;
      otherwise it is this request's answer, and a wrong one (a clone that caps reads, one that
      answers a longer block) is reported as what it is.
    """

    description: str
    baud: int | None  # None when the line's speed is not ours to know (a TCP serial server)
    settle_margin = _SETTLE_MARGIN

    def __init__(self) -> None:
        self._dropped_before = 0  # bytes the inboxes of earlier connections dropped
        self._inbox = _Inbox()
        self._new_line()

    @property
    def dropped_bytes(self) -> int:
        return self._dropped_before + self._inbox.dropped

    def _fresh_inbox(self) -> None:
        """A new connection's inbox (what the old one held is no answer to anything asked now)."""
        self._dropped_before += self._inbox.dropped
        self._inbox = _Inbox()
        self._new_line()

    def _new_line(self) -> None:
        self._unsettled = False  # the last exchange failed: bytes of it may still be on their way
        self._dropped_seen = self._inbox.dropped  # the inbox's drops when the line was last let settle
        # per unit, in order, the askings it may still answer, each with the time (monotonic) its answer may come until
        self._owed: dict[int, list[tuple[rtu.Request, float]]] = {}
        self._asked_until = 0.0  # the same, for the request on the line
        # units whose requests got no answer of their own yet, with the (function code, length) each answer would have
        self._unanswered: dict[int, set[tuple[int, int]]] = {}
        self._late: list[int] = []  # units whose late answers were skipped, for take_late_answers

    def _write(self, frame: bytes) -> None:
        raise NotImplementedError

    def take_late_answers(self) -> list[int]:
        """The unit ids of the late answers skipped since the last call (one entry per answer)."""
        late, self._late = self._late, []
        return late

    def _skip_late(self, data: bytearray, request: rtu.Request | None, *, asked_before: bool = False) -> int:
        """Drop the complete late answers at the front of `data`; their bytes, or -1 while one is still arriving.

        `asked_before`: the unit of `request` had an earlier request left unanswered, so its frames may be late.
        """
        skipped = 0
        while len(data) >= 3 and data[0] in self._unanswered:
            n = rtu.answer_length(data)
            if n is None:
                break
            if request is not None and data[0] == request.unit_id:
                if not asked_before:
                    break  # nothing of it was pending: whatever it sends is its answer to this request
                fc = data[1]
                own = fc == request.function_code | 0x80 or (
                    fc == request.function_code and n == rtu.expected_response_length(request)
                )
                if own:  # its answer to this very request (or one that cannot be told from it)
                    break
                if (fc, n) not in self._unanswered[data[0]]:  # fits none of its earlier requests: its answer to this
                    break
            if len(data) < n:
                return -1
            if not rtu.crc_ok(bytes(data[:n])):
                break
            self._late.append(data[0])
            self._paid(data[0], (data[1], n))
            del data[:n]
            skipped += n
        return skipped

    async def _settle(self) -> None:
        """Wait until the line has been quiet for t3.5 plus a margin (bounded), then drop what came.

        Raises LineNoisy when that silence did not come within the time the longest frame lasts: bytes kept
        coming, the last within the quiet time, and no request could be framed.
        """
        inbox = self._inbox
        quiet = self._quiet()
        # a frame already on the wire ends within 260 characters
        longest = rtu.char_time(self.baud) * _FRAME_MAX if self.baud else _SETTLE_MAX_TCP
        start = time.monotonic()
        # the margin once more: a USB dongle delays the last byte of a late long answer as it did the first
        limit = start + quiet + longest + self.settle_margin
        noisy = False
        while inbox.error is None:
            # quiet only after a whole `quiet` without a byte: a wait cut short by the limit proves nothing, and
            # a babbler at the line's pace (bursts every few ms) would pass it. Judged by when the bytes were
            # handed over, not by the wake-up: after a stall of the process the timeout may fire first although
            # bytes came meanwhile (the loop hands them over before it runs the timeout).
            now = time.monotonic()
            quiet_from = max(start, inbox.last_byte)
            if now - quiet_from >= quiet:
                break
            if now >= limit:
                noisy = True  # bytes all along, the last within `quiet`: not a frame's tail, a line that streams
                break
            inbox.event.clear()
            await event_set_within(inbox.event, quiet_from + quiet - now)
        self._skip_late(inbox.data, None)
        inbox.data.clear()
        self._dropped_seen = inbox.dropped
        self._unsettled = noisy
        if noisy:
            raise self._noisy()

    def _quiet(self) -> float:
        """The silence that ends a frame on this line, with the margin for the buffering before us."""
        return (rtu.silent_interval(self.baud) if self.baud else 0.0) + self.settle_margin

    def _noisy(self) -> LineNoisy:
        """The error of a line that streams: one text for the link, so the bus says it once a spell."""
        return LineNoisy(
            f"modbus {self.description}: the line never goes quiet, got bytes without a pause of "
            f"{self._quiet() * 1000:.0f} ms for longer than any frame lasts; a device or another master sends "
            "without pause, or the port or its baud rate is not this bus's: check the wiring, the port and the "
            "serial server's mode",
            port=self.description,
        )

    async def _await_owed(self, request: rtu.Request) -> bool:
        """Before asking a unit that may still answer earlier askings (see the class's notes); True to ask at once.

        At once when every asking it owes is `request` itself: what comes of them answers it too. Else up to
        the latest time an owed answer may come: about twice the timeout after a retry answered at once.
        """
        unit = request.unit_id
        inbox = self._inbox
        while self._owing(unit) and inbox.error is None:
            if all(asked == request for asked, _ in self._owed[unit]):
                return True
            self._skip_late(inbox.data, None)  # an answer it owes is counted and paid
            if not self._owing(unit):
                break
            inbox.event.clear()
            await event_set_within(inbox.event, min(until for _, until in self._owed[unit]) - time.monotonic())
        return False

    def _owing(self, unit: int) -> bool:
        """Whether `unit` may still answer an asking of ours; the askings whose time passed are forgotten."""
        now = time.monotonic()
        owed = [(asked, until) for asked, until in self._owed.get(unit, ()) if until > now]
        if owed:
            self._owed[unit] = owed
        else:
            self._owed.pop(unit, None)
        return bool(owed)

    def _paid(self, unit: int, shape: tuple[int, int]) -> bool:
        """Strike off the oldest asking of `unit` an answer of `shape` may be for (a unit answers in order)."""
        owed = self._owed.get(unit, [])
        for i, (asked, _) in enumerate(owed):
            if shape in _answer_shapes(asked):
                del owed[i]
                if not owed:
                    del self._owed[unit]
                return True
        return False

    async def transact(self, request: rtu.Request, timeout: float) -> rtu.Response:
        if not self.is_open:  # type: ignore[attr-defined]
            raise LinkError(
                f"modbus {self.description}: port closed, got a closed link; it will be reopened", port=self.description
            )
        inbox = self._inbox
        data = inbox.data
        if await self._await_owed(request) and (
            not data or (data[0] == request.unit_id and data[1:2] in _fc_bytes(request))
        ):
            # the same question again, a retry or the next poll of a slow unit: a late answer to an earlier
            # asking answers this one too, so what came of it is kept (after an incomplete answer nothing is
            # owed: its bytes glued to the retry's would fail the CRC)
            pass
        else:
            self._skip_late(data, None)  # a late answer that came between two exchanges is counted
            # bytes that are no late answer, or more than the inbox kept: something may be on the wire still
            if self._unsettled or data or inbox.dropped != self._dropped_seen:
                await self._settle()
            data.clear()  # stray bytes between two exchanges are no answer to this one
        inbox.event.clear()
        self._unsettled = True  # until the exchange ends with a clean answer
        asked_before = request.unit_id in self._unanswered
        # until its own answer (even a broken one) is taken
        self._unanswered.setdefault(request.unit_id, set()).update(_answer_shapes(request))
        response = await self._exchange(request, timeout, asked_before=asked_before)
        self._unsettled = bool(inbox.data)  # bytes past the answer: the rest of something else
        return response

    async def _exchange(self, request: rtu.Request, timeout: float, *, asked_before: bool) -> rtu.Response:
        inbox = self._inbox
        frame = rtu.encode_request(request)
        self._write(frame)
        want = rtu.expected_response_length(request)
        char = 0.0 if self.baud is None else rtu.char_time(self.baud)
        # the timeout counts from the end of our request to the end of the answer's first bytes:
        # at 9600 baud a 125-register answer alone is on the wire for 0.29 s
        deadline = time.monotonic() + timeout + char * (len(frame) + want)
        self._asked_until = deadline + timeout  # the latest its answer is waited for, should it be owed
        longer = 0  # bytes the answer's byte count says past `want`, already added to the deadline
        late_before = len(self._late)
        dropped = inbox.dropped
        while True:
            data = inbox.data
            if inbox.error is not None:
                error, inbox.error = inbox.error, None
                await self.close()  # type: ignore[attr-defined]
                raise LinkError(f"modbus {self.description}: port lost, got {error}", port=self.description)
            if inbox.dropped != dropped:
                # more than any answer and the late ones before it came: no frame can be told in it
                self._unsettled = True
                raise self._noisy()
            skipped = self._skip_late(data, request, asked_before=asked_before)
            deadline += char * max(skipped, 0)  # a late answer held the line
            if skipped >= 0:
                if len(data) >= 5 and data[0] == request.unit_id and data[1] == request.function_code | 0x80:
                    return self._decode(request, 5)
                self._another_unit(request, data)
                short = self._short_answer(request, data, want)
                if short:
                    return self._decode(request, short)
                n = rtu.own_answer_length(request, data)
                if n is not None:
                    return self._decode(request, n)
                if len(data) >= 3 and data[0] == request.unit_id and data[1] == request.function_code:
                    said = rtu.answer_length(data) or want
                    if said - want > longer:  # a longer answer holds the line longer
                        deadline += char * (said - want - longer)
                        longer = said - want
            left = deadline - time.monotonic()
            if left <= 0:
                break
            inbox.event.clear()
            await event_set_within(inbox.event, left)
        where = f"{request.describe()} on {self.description}"
        if skipped >= 0:  # (not while a late answer is still arriving at the front)
            n = rtu.own_answer_length(request, inbox.data, timed_out=True)
            if n is not None:
                return self._decode(request, n)
        if inbox.data:
            # the rest of this answer may still come, and the retry's answer after it: the retry waits
            # for a quiet line and starts clean instead of reading the two as one frame
            raise rtu.FrameError(
                f"{where}: incomplete answer, got {len(inbox.data)} of {want} bytes "
                f"({bytes(inbox.data[:16]).hex(' ')}); check baud rate, parity and termination",
                length=len(inbox.data),
            )
        # its answer may yet come, until its timeout has passed once more
        self._owed.setdefault(request.unit_id, []).append((request, time.monotonic() + timeout + char * want))
        late = self._late[late_before:]
        got = f"only a late answer from unit {late[-1]}" if late else "nothing"
        raise ModbusTimeout(
            f"{where}: no answer, got {got} within {timeout:g} s; check wiring (A/B), baud rate, parity and the unit id",
            unit_id=request.unit_id,
            timeout=timeout,
        )

    def _decode(self, request: rtu.Request, n: int) -> rtu.Response:
        data = self._inbox.data
        frame = bytes(data[:n])
        del data[:n]
        unit = request.unit_id
        if frame[0] == unit:
            if self._paid(unit, (frame[1], n)):
                # the answer to an earlier asking of the same shape, as likely as this one's (RTU cannot tell):
                # taken for this one, whose own answer is then owed
                self._owed.setdefault(unit, []).append((request, self._asked_until))
            if not self._owed.get(unit):
                self._unanswered.pop(unit, None)
        try:
            return rtu.decode_response(request, frame)
        except rtu.ExceptionResponse:
            self._unsettled = bool(data)  # a clean answer, if a refusal
            raise

    @staticmethod
    def _short_answer(request: rtu.Request, data: bytearray, want: int) -> int:
        """The length of a whole, CRC-valid answer of the unit asked that is shorter than `want`; 0 if none.

        Without this, a clone that caps reads would be waited for until the timeout and its answer
        called incomplete, instead of decoded so that its byte count is named.
        """
        if len(data) < 3 or data[0] != request.unit_id or data[1] != request.function_code:
            return 0
        n = rtu.answer_length(data)
        if n is None or n >= want or len(data) < n or not rtu.crc_ok(bytes(data[:n])):
            return 0
        return n

    def _another_unit(self, request: rtu.Request, data: bytearray) -> None:
        """Raise for a complete, CRC-valid answer from a unit that is not waiting for one: a second answer."""
        if len(data) < 3 or data[0] == request.unit_id:
            return
        n = rtu.answer_length(data)
        if n is None or len(data) < n or not rtu.crc_ok(bytes(data[:n])):
            return
        other = data[0]
        raise rtu.FrameError(
            f"{request.describe()}: answer from another unit, got unit {other}; no request to unit {other} was "
            f"left unanswered, so two devices may share unit id {other}, or another master is on the bus",
            unit_id=other,
        )


def _answer_shapes(request: rtu.Request) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (function code, length) of the answers `request` may get: its normal answer and its refusal."""
    return (request.function_code, rtu.expected_response_length(request)), (request.function_code | 0x80, 5)


def _fc_bytes(request: rtu.Request) -> tuple[bytes, bytes, bytes]:
    """The second byte an answer to `request` may start with (b"" while only its first byte came)."""
    return (b"", bytes([request.function_code]), bytes([request.function_code | 0x80]))


_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class RtuSerialLink(_RtuLink):
    """RTU on a local serial port (RS-485 dongle, pty) or any pyserial URL (`socket://host:port`)."""

    def __init__(self, address: PortAddress, settings: SerialSettings) -> None:
        super().__init__()
        self.address = address
        self.settings = settings
        self.baud = settings.baud
        self.description = address.text
        self._serial: Any = None
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        await self.close()
        s = self.settings
        url = self.address.path
        try:
            # socket:// URLs connect here, so keep the loop free
            ser = await asyncio.to_thread(
                serial.serial_for_url,
                url,
                baudrate=s.baud,
                bytesize=s.data_bits,
                parity=_PARITY[s.parity.value],
                stopbits=s.stop_bits,
                timeout=0,
                write_timeout=2.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise port_error(self.description, exc) from None
        self._serial = ser
        self._fresh_inbox()
        loop = asyncio.get_running_loop()
        self._fd = ser.fileno()
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        ser = self._serial
        if ser is None:
            return
        try:
            data = ser.read(max(1, ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            self._stop_reading()
            self._inbox.fail(exc)
            return
        if data:
            self._inbox.feed(data)

    def _stop_reading(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None

    def _write(self, frame: bytes) -> None:
        try:
            self._serial.write(frame)
        except (serial.SerialException, OSError) as exc:
            self._inbox.fail(exc)

    async def close(self) -> None:
        self._stop_reading()
        ser, self._serial = self._serial, None
        if ser is not None:
            # the device may be gone already (USB dongle unplugged)
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, inbox_of: Callable[[], _Inbox]) -> None:
        self._inbox_of = inbox_of
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._inbox_of().feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inbox_of().fail(exc or ConnectionResetError("closed by the serial server"))
        self.transport = None


class RtuTcpLink(_RtuLink):
    """RTU frames through a TCP serial server (transparent RS-485 to Ethernet converter)."""

    def __init__(self, address: PortAddress, settings: SerialSettings, *, connect_timeout: float = 3.0) -> None:
        super().__init__()
        self.address = address
        self.description = address.text
        self.baud = None  # the converter's serial side is configured on the converter
        self.settle_margin = _SETTLE_MARGIN_TCP
        self._connect_timeout = connect_timeout
        self._protocol: _StreamProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def open(self) -> None:
        await self.close()
        self._fresh_inbox()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _StreamProtocol(lambda: self._inbox), self.address.host, self.address.port
                )
        except (TimeoutError, OSError) as exc:
            got = (
                f"no connection within {self._connect_timeout:g} s"
                if isinstance(exc, asyncio.TimeoutError)
                else str(exc)
            )
            raise LinkError(
                f"modbus {self.description}: cannot connect, got {got}; check the serial server's "
                "address and port and that it is in TCP server (raw) mode",
                port=self.description,
            ) from None
        self._protocol = protocol

    def _write(self, frame: bytes) -> None:
        assert self._protocol is not None and self._protocol.transport is not None
        self._protocol.transport.write(frame)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


def port_error(port: str, exc: BaseException) -> LinkError:
    """Our error for a serial port that cannot be opened, worded for the technician."""
    number = getattr(exc, "errno", None)
    text = str(exc)
    if number == errno.ENOENT or "No such file" in text or ("could not open port" in text and "[Errno 2]" in text):
        return PortMissing(
            f'modbus {port}: no such serial port, got "{port}"; check the cable and '
            "`ls /dev/ttyUSB* /dev/ttyACM* /dev/serial/by-id/`",
            port=port,
        )
    if number in (errno.EACCES, errno.EPERM) or "[Errno 13]" in text or "Permission denied" in text:
        return PortPermission(
            f'modbus {port}: permission denied, got no access to "{port}"; add the user to the '
            "dialout group: sudo usermod -aG dialout $USER (then log in again)",
            port=port,
        )
    if "[Errno 11]" in text or "exclusively lock" in text or "Resource temporarily unavailable" in text:
        return LinkError(
            f'modbus {port}: port in use, got "{port}" locked by another program; stop it '
            "(another edgegw, a terminal program, ModemManager)",
            port=port,
        )
    return LinkError(f"modbus {port}: cannot open the port, got {text}", port=port)

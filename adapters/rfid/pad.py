"""A FEIG HF pad on a serial line: inventory, read and decode every tag on it, set the security bits.

The blocking pyserial port is used from one worker thread at a time (`asyncio.to_thread` under a
lock): a reader answers one request at a time, and a late reply must never be taken for the next
request's. A cancelled call's thread goes on until its timeout, so the port has a thread lock too:
the next exchange, and `close`, wait for that thread to leave the port (a close under it would free
the fd, a number the next `open()` anywhere is given); an exchange after close is the reader lost
and touches nothing. A write is bounded too (`_write_timeout`): a pad that stopped taking data is the
reader lost, not a thread held in the port for good with every close behind it. A corrupt frame on
the line, or a sound reply to another control byte (the late answer to a request that timed out),
is counted (`frame_errors`, by error code), logged at DEBUG and skipped, as the reply may still
follow; only when none does is the request an error. A late reply with the request's own control
byte cannot be told from the reply (the protocol numbers nothing); the parsers' length checks refuse
most of them. Tags are decoded with the ISO 28560-3 (Danish) codec first and ISO 28560-2 second; a
tag neither decodes is reported with its error code, never dropped (`decode_tag`, sans-I/O). The EAS
bit is NXP's custom command, which a tag of another maker ignores: only NXP tags are asked for it or
have it written; the others are secured by their AFI alone (`feig.has_nxp_eas`). An inventory follows the
reader's "more data" only as far as a pad's worth of tags (`MAX_INVENTORY_ROUNDS`, `MAX_INVENTORY_UIDS`):
firmware that never stops saying it is a faulty reader (`FeigEndlessInventory`), not a poll that never ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import termios
import threading
import time
from dataclasses import dataclass, field

import serial  # type: ignore[import-untyped]

from adapters.rfid.danish import decode_danish
from adapters.rfid.errors import RfidTagError
from adapters.rfid.feig import (
    FeigEndlessInventory,
    FeigFrameError,
    FeigResponse,
    FeigStaleReply,
    FrameReader,
    check_ok,
    has_nxp_eas,
    parse_blocks,
    parse_inventory,
    parse_system_info,
    req_eas_alarm,
    req_inventory,
    req_read_blocks,
    req_set_eas,
    req_set_output,
    req_system_info,
    req_write_afi,
)
from adapters.rfid.iso15962 import decode_iso28560_2

__all__ = [
    "AFI_ON_LOAN",
    "AFI_SECURED",
    "MAX_INVENTORY_UIDS",
    "PadTag",
    "Security",
    "SerialPad",
    "decode_tag",
]

log = logging.getLogger(__name__)

# Library AFI values (ISO 28560-1 / the Danish model): 0x07 in the library (alarm), 0xC2 lent out.
AFI_SECURED = 0x07
AFI_ON_LOAN = 0xC2


class Security(enum.Enum):
    SECURED = "secured"  # AFI in-library and EAS set: the gate alarms
    RELEASED = "released"  # lent out: AFI on-loan, EAS reset


@dataclass(frozen=True, slots=True, kw_only=True)
class PadTag:
    uid: str  # hex, MSB first as the reader reports it
    afi: int
    eas: bool | None  # None when the tag has no NXP EAS: another maker's (UID not E0 04 …), never asked
    item_id: str | None = field(repr=False)  # on a patron card, the card number
    # ISO 28560-1 type of usage, main qualifier (`danish.Usage`; `danish.tag_role` says what it makes the tag);
    # None when the tag does not say or is undecodable
    usage: int | None
    owner: str | None  # ISIL (with country for 28560-3)
    parts_in_set: int | None
    part_number: int | None
    data_model: str  # "iso28560-3", "iso28560-2" or "" when undecodable
    error: str = ""  # the codec's error code when undecodable


# The longest request sent (read-blocks) is 17 bytes: 18 ms of 8N1 at 9600 baud, the slowest a pad is
# set to. Ten times that at the port's baud, and a quarter second more for a USB-serial adapter's
# latency timer and the scheduler, is far beyond what a pad taking data needs; a write still waiting
# then waits for a pad that stopped taking data (off, its USB-serial adapter hung or pulled out, the cable).
_LONGEST_REQUEST = 17


# How long an inventory is followed while the reader answers "more data" (STATUS 0x94). One reply carries
# at most 24 tags (10 bytes each in a 255-byte frame), and a pad's field reaches a stack of books, a few
# dozen tags at most: 256 tags is far beyond any pad, and firmware that never ends the inventory otherwise
# holds the poll, and its growing list, for good. Every reply must bring a new tag, so this bounds the
# replies too, whatever few a reader sends in each (a bound of 16 replies refused a reader sending 3).
MAX_INVENTORY_UIDS = 256


def decode_tag(uid: str, afi: int, eas: bool | None, memory: bytes) -> PadTag:
    """The tag whose user memory is `memory`: ISO 28560-3 (Danish) first, ISO 28560-2 second, else its error code."""
    try:
        d = decode_danish(memory).tag
    except RfidTagError as first:
        try:
            t = decode_iso28560_2(memory)
        except RfidTagError:
            return PadTag(
                uid=uid,
                afi=afi,
                eas=eas,
                item_id=None,
                usage=None,
                owner=None,
                parts_in_set=None,
                part_number=None,
                data_model="",
                error=first.code,
            )
        s = t.set_information
        return PadTag(
            uid=uid,
            afi=afi,
            eas=eas,
            item_id=t.primary_item_id,
            usage=t.usage,
            owner=t.owner_isil,
            parts_in_set=s.parts_in_set if s else None,
            part_number=s.part_number if s else None,
            data_model="iso28560-2",
        )
    return PadTag(
        uid=uid,
        afi=afi,
        eas=eas,
        item_id=d.primary_item_id,
        usage=d.usage,
        owner=(d.country + "-" + d.isil) if d.country and d.isil else (d.isil or None),
        parts_in_set=d.parts_in_set,
        part_number=d.part_number,
        data_model="iso28560-3",
    )


def _write_timeout(baudrate: int) -> float:
    return round(0.25 + 10 * _LONGEST_REQUEST * 10 / baudrate, 2)


class SerialPad:
    """One reader on one serial port (`url`: a device path, a pty, or any pyserial URL)."""

    def __init__(self, url: str, *, baudrate: int = 38400, com_adr: int = 255, timeout_s: float = 0.5) -> None:
        self._write_timeout = _write_timeout(baudrate)
        self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s, write_timeout=self._write_timeout)
        self._url = url
        self._com_adr = com_adr
        self._timeout = timeout_s
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()  # a cancelled call's thread may still be in the port
        self._closed = False
        self.frame_errors: collections.Counter[str] = collections.Counter()  # dropped frames by error code

    def close(self) -> None:
        """Close the port once no exchange is in it: blocks up to the write and read timeouts, so call it from a
        worker thread."""
        with self._thread_lock:
            self._closed = True
            self._port.close()

    def _transact(self, request: bytes) -> FeigResponse:
        with self._thread_lock:
            if self._closed:
                raise FeigFrameError(
                    f"rfid pad {self._url}",
                    "the port is closed",
                    "a request",
                    "the pad is opened again when it is found again",
                )
            try:
                return self._exchange(request)
            except termios.error as exc:  # no OSError: the input flush of a hung-up tty (the adapter pulled out)
                got = f"[Errno {exc.args[0]}] {exc.args[1]}" if len(exc.args) == 2 else str(exc)
                raise FeigFrameError(
                    f"rfid pad {self._url}",
                    "the port failed",
                    got,
                    "check the cable and the USB-serial adapter; the pad is opened again when it is found again",
                ) from None

    def _exchange(self, request: bytes) -> FeigResponse:
        self._port.reset_input_buffer()
        reader = FrameReader()  # nothing of an earlier exchange may count for this one
        self._write(request)
        deadline = time.monotonic() + self._timeout
        dropped: FeigFrameError | None = None
        while time.monotonic() < deadline:
            chunk = self._port.read(max(1, self._port.in_waiting))
            if not chunk:
                continue
            reader.feed(chunk)
            frames, error = self._decode(reader)
            dropped = error or dropped
            for frame in frames:
                if frame.control == request[2]:
                    return frame
                self._drop(FeigStaleReply(expected=request[2], got=frame.control))
        if dropped is not None:
            raise dropped  # a reply came, corrupt: say why rather than "no reply"
        raise FeigFrameError("rfid feig reader", "no reply within the timeout", f"{self._timeout} s", "check the cable")

    def _write(self, request: bytes) -> None:
        try:
            self._port.write(request)
        except serial.SerialTimeoutException:
            # What the line still holds goes: a pad taking data again must not answer requests that
            # already failed (their replies read as a later request's), and a port closed with output
            # queued waits for it to drain (30 s on a UART by default). A port that refuses even that is
            # gone altogether; the stall is still what to report.
            with contextlib.suppress(OSError, termios.error):
                self._port.reset_output_buffer()
            raise FeigFrameError(
                f"rfid pad {self._url}",
                "the pad stopped taking data",
                f"a {len(request)}-byte request not taken within {self._write_timeout:g} s",
                "check the cable, the pad's power and whether its USB-serial adapter hung or was pulled out",
                request_bytes=len(request),
                write_timeout=self._write_timeout,
            ) from None

    def _decode(self, reader: FrameReader) -> tuple[list[FeigResponse], FeigFrameError | None]:
        """Every whole frame buffered in `reader`; a bad one is counted, logged and skipped (the last is returned)."""
        frames: list[FeigResponse] = []
        error: FeigFrameError | None = None
        while True:
            try:
                frame = reader.next()
            except FeigFrameError as exc:
                self._drop(exc)
                error = exc
                continue
            if frame is None:
                return frames, error
            frames.append(frame)

    def _drop(self, exc: FeigFrameError) -> None:
        self.frame_errors[exc.code] += 1
        log.debug("rfid pad %s: frame dropped: %s", self._url, exc)

    async def call(self, request: bytes) -> FeigResponse:
        async with self._lock:
            return await asyncio.to_thread(self._transact, request)

    async def inventory(self) -> list[bytes]:
        """The UIDs on the pad, each once, in the reader's order. A reader still saying "more data" after a round
        that brought no new tag, or past `MAX_INVENTORY_UIDS` tags, is faulty:
        `FeigEndlessInventory`, counted in `frame_errors`, and the pad is lost until it is found again."""
        uids: list[bytes] = []
        seen: set[bytes] = set()
        more = False
        rounds = 0
        while True:
            tags, more = parse_inventory(await self.call(req_inventory(self._com_adr, more=more)))
            rounds += 1
            new = [t.uid for t in tags if t.uid not in seen]
            seen.update(new)
            uids += new
            if not more:
                return uids
            why = ""
            if not new:
                why = "with no tag it had not listed already"
            elif len(uids) >= MAX_INVENTORY_UIDS:
                why = f"past {MAX_INVENTORY_UIDS} tags"
            if why:
                exc = FeigEndlessInventory(f"rfid pad {self._url}", rounds=rounds, uids=len(uids), why=why)
                self.frame_errors[exc.code] += 1
                raise exc

    async def read_tag(self, uid: bytes) -> PadTag:
        info = parse_system_info(await self.call(req_system_info(uid, self._com_adr)))
        count = min(info.block_count, max(1, 36 // info.block_size))
        memory, _ = parse_blocks(await self.call(req_read_blocks(uid, 0, count, self._com_adr)))
        eas: bool | None = None  # another maker's tag would not answer, and no answer reads as "EAS off"
        if has_nxp_eas(uid):
            eas = (await self.call(req_eas_alarm(uid, self._com_adr))).status == 0x00
        return decode_tag(uid.hex().upper(), info.afi, eas, memory)

    async def read_all(self) -> list[PadTag]:
        return [await self.read_tag(uid) for uid in await self.inventory()]

    async def set_security(self, uid: bytes, security: Security) -> None:
        """Write the AFI, and the EAS bit on an NXP tag; another maker's tag is secured by its AFI alone, as the
        EAS command is NXP's and such a tag ignores it (the reader would answer "no transponder" every time)."""
        secured = security is Security.SECURED
        check_ok(await self.call(req_write_afi(uid, AFI_SECURED if secured else AFI_ON_LOAN, self._com_adr)))
        if has_nxp_eas(uid):
            check_ok(await self.call(req_set_eas(uid, secured, self._com_adr)))

    async def beep(self, ok: bool) -> None:
        # output 1 = beeper, 2 = green LED, 3 = red LED on the pads we model (verify per model)
        led = 2 if ok else 3
        check_ok(await self.call(req_set_output([(1, 1, 1 if ok else 5), (led, 1, 10)], self._com_adr)))

"""Keyboard-wedge scanners read from a Linux input device: the `input_event` ABI, the exclusive grab, idle gaps.

Theory of operation. A HID scanner is a keyboard: the kernel's evdev driver hands out fixed-size
`struct input_event` records (linux/input.h: `struct timeval` of two native longs, `__u16 type`,
`__u16 code`, `__s32 value`; 24 bytes on 64-bit hosts, 16 on 32-bit). `EventParser` is sans-I/O:
bytes in, whole events out, a partial record kept for the next read, so a test can feed the same
stream through a pipe that a device node gives. `WedgeAssembler` turns key events into scans with
the codec's `WedgeDecoder` and ends a scan at the configured terminator or, when the scanner sends
none, at an idle gap measured with the events' own timestamps (no clock is read). `SYN_DROPPED`
(the kernel's buffer overran) discards the scan in progress: a scan with lost keys must be scanned
again, never stored with holes.

`open_device` grabs the device exclusively (EVIOCGRAB) so the keystrokes never reach a console or
a login prompt; a file that is no input device (a pipe, a recording) cannot be grabbed and is read
as is, which `grabbed` reports. A recording in a regular file is read to its end and then followed
for what is appended (the adapter polls it: epoll refuses regular files), never read twice.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from adapters.scanner.codec import KeymapError
from adapters.scanner.keymap import Terminator, WedgeConfig, WedgeDecoder

__all__ = [
    "EVENT_FORMAT",
    "EVENT_SIZE",
    "EVIOCGRAB",
    "EV_KEY",
    "EV_SYN",
    "SYN_DROPPED",
    "EventParser",
    "InputEvent",
    "WedgeAssembler",
    "WedgeResult",
    "grab",
    "pack_event",
]

EVENT_FORMAT = "@llHHi"  # struct input_event, native sizes and alignment
EVENT_SIZE = struct.calcsize(EVENT_FORMAT)
EV_SYN = 0x00
EV_KEY = 0x01
SYN_REPORT = 0
SYN_DROPPED = 3
# _IOW('E', 0x90, int) from linux/input.h
EVIOCGRAB = (1 << 30) | (struct.calcsize("i") << 16) | (ord("E") << 8) | 0x90
_KEY_ENTER = 28
_KEY_TAB = 15


@dataclass(frozen=True, slots=True, kw_only=True)
class InputEvent:
    """One `struct input_event`; `time_us` is the kernel's timestamp in microseconds."""

    time_us: int
    type: int
    code: int
    value: int


def pack_event(time_us: int, type_: int, code: int, value: int) -> bytes:
    """The bytes the kernel writes for one event (for recordings and tests)."""
    return struct.pack(EVENT_FORMAT, time_us // 1_000_000, time_us % 1_000_000, type_, code, value)


class EventParser:
    """Bytes of an evdev stream in, whole `InputEvent`s out; a partial record waits for the rest."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> Iterator[InputEvent]:
        buf = self._pending + data
        whole = len(buf) - len(buf) % EVENT_SIZE
        self._pending = buf[whole:]
        for sec, usec, type_, code, value in struct.iter_unpack(EVENT_FORMAT, buf[:whole]):
            yield InputEvent(time_us=sec * 1_000_000 + usec, type=type_, code=code, value=value)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete record held back (non-zero at EOF means a truncated stream)."""
        return len(self._pending)


@dataclass(frozen=True, slots=True, kw_only=True)
class WedgeResult:
    """A finished scan (`text`) or a failed one (`error`), stamped with its last keystroke's time."""

    time_us: int
    text: str | None = None
    error: KeymapError | None = None


class WedgeAssembler:
    """Input events in, scans out: terminator key, idle gap (`idle_gap_ms`, 0 = off) or SYN_DROPPED."""

    __slots__ = ("_config", "_decoder", "_flush_key", "_gap_us", "_last_us", "_open")

    def __init__(self, config: WedgeConfig, *, idle_gap_ms: int = 0) -> None:
        self._config = config
        self._decoder = WedgeDecoder(config)
        self._gap_us = idle_gap_ms * 1000
        self._last_us = 0
        self._open = False  # characters received since the last scan ended
        self._flush_key = _KEY_TAB if config.terminator is Terminator.TAB else _KEY_ENTER

    def feed(self, event: InputEvent) -> list[WedgeResult]:
        out: list[WedgeResult] = []
        if event.type == EV_SYN and event.code == SYN_DROPPED:
            if self._open:
                out.append(
                    WedgeResult(
                        time_us=event.time_us,
                        error=KeymapError(
                            "keymap_events_dropped",
                            "keyboard wedge: the kernel dropped input events mid-scan, got SYN_DROPPED; scan again",
                        ),
                    )
                )
            self._decoder = WedgeDecoder(self._config)
            self._open = False
            return out
        if event.type != EV_KEY:
            return out
        if self._gap_us and self._open and event.time_us - self._last_us > self._gap_us:
            out.extend(self._flush(self._last_us))
        self._last_us = event.time_us
        try:
            text = self._decoder.feed(event.code, event.value)
        except KeymapError as exc:
            # still open while the decoder drops the failed scan's rest: without a terminator, only the
            # idle gap's flush ends that, and left to the next scan's flush it would swallow that scan
            self._open = self._decoder.dropping
            out.append(WedgeResult(time_us=event.time_us, error=exc))
            return out
        if text is not None:
            self._open = False
            out.append(WedgeResult(time_us=event.time_us, text=text))
        elif event.value == 1 and event.code not in (42, 54):
            self._open = True
        return out

    def idle(self, now_us: int) -> list[WedgeResult]:
        """Call when no event arrived for a while: ends a scan whose idle gap has passed."""
        if self._gap_us and self._open and now_us - self._last_us > self._gap_us:
            return self._flush(self._last_us)
        return []

    def _flush(self, time_us: int) -> list[WedgeResult]:
        self._open = False
        try:
            text = self._decoder.feed(self._flush_key, 1)
        except KeymapError as exc:  # pragma: no cover - a terminator press never fails
            return [WedgeResult(time_us=time_us, error=exc)]
        return [] if text is None else [WedgeResult(time_us=time_us, text=text)]


def grab(fd: int) -> bool:
    """Grab an input device exclusively; False when `fd` is no input device (a pipe, a file)."""
    try:
        fcntl.ioctl(fd, EVIOCGRAB, 1)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            return False
        raise
    return True


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)

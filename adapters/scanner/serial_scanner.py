"""Serial scanners (CDC-ACM, RS-232): bytes from the line split into scans at the configured suffix.

`LineSplitter` is sans-I/O (bytes in, framed scans out, the partial tail kept); `SerialScanner`
reads a pyserial port in a worker thread and hands each scan over with the monotonic time its last
byte arrived, which the latency figures are measured from. A cancelled read's thread goes on until
the read's timeout, so `close` waits for the thread in the port (a close under it would free the
fd, a number the next `open()` anywhere is given); a read or a send after close touches nothing. A
send is bounded (`_write_timeout`): a scanner that stopped taking data is lost, its port closed there
and then, rather than a thread held in the port for good with every read and close behind it.

`StreamWatch` (sans-I/O, time passed in) tells a scanner from a device that sends lines on its own (a
scale, a GPS, a scanner left in continuous mode, a wrong baud rate's noise): more than `STREAM_LINES`
refused lines within `STREAM_WINDOW_S` is such a stream, whose lines are counted rather than handed on,
until `STREAM_QUIET_S` pass without a refused line or a good scan comes. `line_shape` says what a line
looks like without what it says (a card number is nine digits, never the digits).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import string
import termios
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import serial  # type: ignore[import-untyped]

from adapters.scanner.aim import Framed, FramingConfig, Suffix, unframe
from adapters.scanner.codec import BarcodeError, FramingError
from gateway.errors import AdapterError

__all__ = [
    "MAX_SCAN_CHARS",
    "STREAM_LINES",
    "STREAM_QUIET_S",
    "STREAM_SUMMARY_S",
    "STREAM_WINDOW_S",
    "LineSplitter",
    "ScannerPortClosed",
    "SerialScan",
    "SerialScanner",
    "StreamVerdict",
    "StreamWatch",
    "line_shape",
]

_TERMINATORS = {
    Suffix.CR: re.compile(r"\r"),
    Suffix.LF: re.compile(r"\n"),
    Suffix.CRLF: re.compile(r"\r\n"),
    Suffix.TAB: re.compile(r"\t"),
    Suffix.ANY_EOL: re.compile(r"\r\n|\r|\n"),
}


class ScannerPortClosed(AdapterError, ConnectionError):
    code = "scanner_port_closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialScan:
    framed: Framed | None
    error: BarcodeError | None = None
    at: float = 0.0  # time.monotonic() of the last byte


# No scanner sends a scan this long (a QR code holds at most 4296 alphanumerics): a buffer past it is a
# scanner whose suffix never comes, and holding on would keep card numbers in memory without bound.
MAX_SCAN_CHARS = 4096
# A CRLF's two bytes come back to back; a CR alone this long ended its scan (a CR-only scanner).
_PAIR_GAP_S = 0.25
_OTHER_EOL = re.compile(r"[\r\n\t]")
_EOL_NAMES = {"\r": "CR", "\n": "LF", "\t": "Tab"}
_SUFFIX_OF = {"CR": Suffix.CR, "LF": Suffix.LF, "CRLF": Suffix.CRLF, "Tab": Suffix.TAB}
_ESCAPED = re.compile("[\udc80-\udcff]")  # what the surrogateescape decoder makes of a byte not UTF-8


class LineSplitter:
    """Bytes in, one `SerialScan` per suffix out, the partial tail kept.

    A CR, LF or Tab that is not (part of) the configured suffix ends a scan too, as a `framing_suffix`
    error naming what came and the suffix to set: a scanner set to another suffix than the config
    would otherwise never end a scan, and its scans would pile up unseen. The LF of a CRLF after a
    CR suffix stays with the scan it starts, which gets the error (the scan before it was whole).
    A CR at the end waits up to `_PAIR_GAP_S` (by `at`) for the LF of a CRLF. Bytes are decoded as
    they come, a UTF-8 character cut by a read kept for the next; a scan holding bytes that are not
    UTF-8 is refused alone (`framing_encoding`, naming the first such byte), never the scans around it.
    """

    def __init__(self, config: FramingConfig) -> None:
        if config.suffix is Suffix.NONE:
            raise ValueError("serial scanner: suffix 'none' cannot split a stream, got none; set the scanner's suffix")
        self._config = config
        self._pattern = (
            re.compile(re.escape(config.custom_suffix))
            if config.suffix is Suffix.CUSTOM
            else _TERMINATORS[config.suffix]
        )
        # a suffix of more than one character, whose start at the buffer's end may still become it
        self._end = {Suffix.CUSTOM: config.custom_suffix, Suffix.CRLF: "\r\n"}.get(config.suffix, "")
        self._expected = f"custom {config.custom_suffix!r}" if config.suffix is Suffix.CUSTOM else config.suffix.value
        self._buf = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._after_cr = False  # the last scan ended with a CR suffix: an LF now is the rest of a CRLF
        self._waiting_since: float | None = None

    @property
    def pending(self) -> int:
        """Characters held for a scan not ended yet."""
        return len(self._buf)

    def feed(self, data: bytes, at: float | None = None) -> list[SerialScan]:
        """`data` as read (b"" when a read timed out: a CR waiting for its LF may end then); `at` its
        time.monotonic(), now if not given."""
        at = time.monotonic() if at is None else at
        # Incremental: a character cut by the read boundary waits for its other bytes. A byte that is
        # not UTF-8 stays in the text as a surrogate escape, so the splitting goes on around it and
        # only the scan holding it is refused (`_scan`); every suffix and line end is ASCII or whole UTF-8.
        self._buf += self._decoder.decode(data)
        out: list[SerialScan] = []
        while self._buf:
            buf = self._buf
            m = self._pattern.search(buf)
            other = _OTHER_EOL.search(buf, 0, m.start() if m else len(buf))
            if other is None:
                if m is None:
                    break
                self._take(m.end())
                if m.end() > len(m.group(0)):  # not an empty line (the LF of a CRLF split across reads)
                    out.append(self._scan(buf[: m.end()], at))
                continue
            i = other.start()
            if i == 0 and buf[0] == "\n" and self._after_cr:
                # a CRLF scanner on a CR setting: the scan this LF starts goes as far as its own end
                rest = self._pattern.search(buf, 1)
                stray = _OTHER_EOL.search(buf, 1, rest.start() if rest else len(buf))
                end = stray if stray is not None else rest
                if end is None:
                    break
                self._take(end.end())
                out.append(self._framing(at, "CRLF", "got CRLF, its LF starting the next scan"))
                continue
            if m is None and self._may_continue(buf[i:]):
                if self._waiting_since is None:
                    self._waiting_since = at
                if at - self._waiting_since < _PAIR_GAP_S:
                    break
            seen = "CRLF" if buf.startswith("\r\n", i) else _EOL_NAMES[buf[i]]
            self._take(i + (2 if seen == "CRLF" else 1))
            out.append(self._framing(at, seen, f"got {seen} after {i} characters"))
        if len(self._buf) > MAX_SCAN_CHARS:
            held = len(self._buf)
            self._take(held)
            error = FramingError(
                "framing_suffix",
                f"scanner framing: no suffix {self._expected} within {MAX_SCAN_CHARS} characters, got {held}; "
                "check the scanner's suffix setting against suffix",
                expected=self._config.suffix.value,
                max_chars=MAX_SCAN_CHARS,
            )
            out.append(SerialScan(framed=None, error=error, at=at))
        return out

    def _may_continue(self, end: str) -> bool:
        """`end` (from the first CR/LF/Tab to the buffer's end) may still become the suffix or a CRLF."""
        return end == "\r" or (len(end) < len(self._end) and self._end.startswith(end))

    def _take(self, n: int) -> None:
        # an LF next is the rest of a CRLF, unless the suffix holds the LF itself
        self._after_cr = self._buf[:n].endswith("\r") and "\n" not in self._end
        self._buf = self._buf[n:]
        self._waiting_since = None

    def _scan(self, chunk: str, at: float) -> SerialScan:
        if _ESCAPED.search(chunk):
            # back to the bytes that came, so the error names the first bad byte and where it is
            raw: str | bytes = chunk.encode("utf-8", "surrogateescape")
        else:
            raw = chunk
        try:
            return SerialScan(framed=unframe(raw, self._config), at=at)
        except BarcodeError as exc:
            return SerialScan(framed=None, error=exc, at=at)

    def _framing(self, at: float, seen: str, got: str) -> SerialScan:
        # the scan's text stays out: it may be a library card's number
        fix = f'"{_SUFFIX_OF[seen].value}"' + ("" if seen == "Tab" else ' (or "any_eol")')
        error = FramingError(
            "framing_suffix",
            f"scanner framing: another end of line than the suffix {self._expected}, {got}; "
            f"set the scanner's suffix = {fix} to match what it sends",
            expected=self._config.suffix.value,
            seen=seen,
        )
        return SerialScan(framed=None, error=error, at=at)


# A scanner sends a line when someone pulls its trigger: two a second at the most, also for a librarian
# going through a pile of damaged labels (one a second was reached: a first threshold of 10 in 10 s silenced
# their refused beeps). More than STREAM_LINES refused lines within STREAM_WINDOW_S (7 a second) come from a
# device sending on its own (a scale sends ~56 a second); its lines are then counted, not sent or beeped.
STREAM_LINES = 20
STREAM_WINDOW_S = 3.0
# The stream is over after this long without a refused line (or at a good scan); so is an unreadable spell
# (the line's framing failing) only after this long without a framing failure, so noise does not flap it.
STREAM_QUIET_S = 10.0
# While a stream goes on, how often the lines held back are said
STREAM_SUMMARY_S = 900.0
_SHAPE_CHARS = 32  # of a line's shape shown in the log; its length is said in full


def line_shape(text: str) -> str:
    """`text` with every letter an A, every digit a 9 and anything else not printable ASCII a ?: what a line
    looks like (`ST,GS,+0001.23kg` is `AA,AA,+9999.99AA`), never what it says (a card's number)."""
    out = []
    for ch in text[:_SHAPE_CHARS]:
        if ch.isascii() and ch.isalpha():
            out.append("A")
        elif ch.isascii() and ch.isdigit():
            out.append("9")
        elif ch in string.punctuation or ch == " ":
            out.append(ch)
        else:
            out.append("?")
    return "".join(out) + ("…" if len(text) > _SHAPE_CHARS else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamVerdict:
    handle: bool  # the line is a scan to hand on as ever; False: a stream's, counted only
    started: bool = False  # this line made the refused lines a stream: say so, once
    ended: int | None = None  # a stream ended before this line: the lines it held back
    quiet: bool = False  # …by a quiet of STREAM_QUIET_S (False: by a good scan)
    summary: int | None = None  # a summary is due: the lines held back since the last one


class StreamWatch:
    """One serial device's refused lines in time: which start a stream, which belong to one, which end it."""

    def __init__(
        self,
        *,
        lines: int = STREAM_LINES,
        window_s: float = STREAM_WINDOW_S,
        quiet_s: float = STREAM_QUIET_S,
        summary_s: float = STREAM_SUMMARY_S,
    ) -> None:
        self._window_s = window_s
        self._quiet_s = quiet_s
        self._summary_s = summary_s
        self._refused: deque[float] = deque(maxlen=lines + 1)  # when the latest refused lines came
        self.streaming = False
        self.held = 0  # lines of the current stream counted, not handed on
        self._unsaid = 0  # …of which not yet in a summary
        self._said_at = 0.0

    def see(self, now: float, *, refused: bool) -> StreamVerdict:
        """A line came at `now` (monotonic seconds); `refused`: unreadable or unknown, not a good scan."""
        ended: int | None = None
        quiet = self.streaming and now - self._refused[-1] >= self._quiet_s
        if self.streaming and (quiet or not refused):
            ended = self.held
            self.streaming, self.held, self._unsaid = False, 0, 0
            self._refused.clear()  # what came before the stream's end counts for no new one
        if not refused:
            return StreamVerdict(handle=True, ended=ended, quiet=quiet)
        self._refused.append(now)
        if self.streaming:
            summary: int | None = None
            if now - self._said_at >= self._summary_s:  # the lines since the last summary, this one the next's
                summary, self._unsaid, self._said_at = self._unsaid, 0, now
            self.held += 1
            self._unsaid += 1
            return StreamVerdict(handle=False, summary=summary)
        full = len(self._refused) == self._refused.maxlen
        if full and now - self._refused[0] <= self._window_s:
            self.streaming, self.held, self._unsaid, self._said_at = True, 1, 1, now
            return StreamVerdict(handle=False, started=True, ended=ended, quiet=quiet)
        return StreamVerdict(handle=True, ended=ended, quiet=quiet)


# What is sent is a vendor's beep command, a handful of bytes; 16 is ample. Ten times 16 bytes of 8N1
# at the port's baud (0.17 s at the default 9600), and a quarter second more for a USB-serial adapter's
# latency timer and the scheduler, is far beyond what a scanner taking data needs; a write still
# waiting then waits for one that stopped taking data (off, its USB-serial adapter hung or pulled out,
# the cable).
_LONGEST_COMMAND = 16


def _write_timeout(baudrate: int) -> float:
    return round(0.25 + 10 * _LONGEST_COMMAND * 10 / baudrate, 2)


class SerialScanner:
    """Scans from one serial port (`url`: device path, pty or pyserial URL) until the port goes away."""

    def __init__(self, url: str, config: FramingConfig, *, baudrate: int = 9600) -> None:
        self._write_timeout = _write_timeout(baudrate)
        self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05, write_timeout=self._write_timeout)
        self._url = url
        self._splitter = LineSplitter(config)
        self._thread_lock = threading.Lock()  # a cancelled read's thread may still be in the port
        self._closed = False

    def close(self) -> None:
        """Close the port once no read or send is in it (up to the read's 50 ms, or the send's write timeout)."""
        with self._thread_lock:
            self._closed = True
            self._port.close()

    def _live_port(self, what: str) -> serial.SerialBase:
        if self._closed:
            raise ScannerPortClosed(f"serial scanner {self._url}: the port is closed, got a {what}")
        return self._port

    async def send(self, data: bytes) -> None:
        """A command to the scanner (good-read / bad-read beep), in the scanner's own command set."""
        if data:
            await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        with self._thread_lock:
            port = self._live_port("send")
            try:
                port.write(data)
            except serial.SerialTimeoutException:
                # The scanner is lost: what the line still holds goes (a port closed with output queued
                # waits for it to drain, 30 s on a UART by default), and so does the port; found again,
                # the scanner starts on a port of its own. One that refuses even the flush is gone.
                with contextlib.suppress(OSError, termios.error):
                    port.reset_output_buffer()
                self._closed = True
                port.close()
                raise ScannerPortClosed(
                    f"serial scanner {self._url}: the scanner stopped taking data, got a {len(data)}-byte command"
                    f" not taken within {self._write_timeout:g} s; check the cable, the scanner's power and whether"
                    " its USB-serial adapter hung or was pulled out",
                    command_bytes=len(data),
                    write_timeout=self._write_timeout,
                ) from None

    def _read(self) -> tuple[bytes, float]:
        with self._thread_lock:
            port = self._live_port("read")
            return port.read(max(1, port.in_waiting)), time.monotonic()

    async def scans(self) -> AsyncGenerator[SerialScan, None]:
        while True:
            data, at = await asyncio.to_thread(self._read)
            for scan in self._splitter.feed(data, at):
                yield scan

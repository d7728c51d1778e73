"""Serial scanners (CDC-ACM, RS-232): bytes from the line split into scans at the configured suffix.

`LineSplitter` is sans-I/O (bytes in, framed scans out, the partial tail kept); `SerialScanner`
reads a pyserial port in a worker thread and hands each scan over with the monotonic time its last
byte arrived, which the latency figures are measured from. A cancelled read's thread goes on until
the read's timeout, so `close` waits for the thread in the port (a close under it would free the
fd, a number the next `open()` anywhere is given); a read or a send after close touches nothing. A
send is bounded (`_write_timeout`): a scanner that stopped taking data is lost, its port closed there
and then, rather than a thread held in the port for good with every read and close behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import termios
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import serial  # type: ignore[import-untyped]

from adapters.scanner.aim import Framed, FramingConfig, Suffix, unframe
from adapters.scanner.codec import BarcodeError
from gateway.errors import AdapterError

__all__ = ["LineSplitter", "ScannerPortClosed", "SerialScan", "SerialScanner"]

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


class LineSplitter:
    def __init__(self, config: FramingConfig) -> None:
        if config.suffix is Suffix.NONE:
            raise ValueError("serial scanner: suffix 'none' cannot split a stream, got none; set the scanner's suffix")
        self._config = config
        self._pattern = (
            re.compile(re.escape(config.custom_suffix))
            if config.suffix is Suffix.CUSTOM
            else _TERMINATORS[config.suffix]
        )
        self._buf = ""

    def feed(self, data: bytes, at: float = 0.0) -> list[SerialScan]:
        try:
            self._buf += data.decode("utf-8")
        except UnicodeDecodeError:
            self._buf = ""
            return [
                SerialScan(
                    framed=None,
                    error=BarcodeError("framing_encoding", "scanner framing: not UTF-8, got undecodable bytes"),
                    at=at,
                )
            ]
        out: list[SerialScan] = []
        while m := self._pattern.search(self._buf):
            chunk, self._buf = self._buf[: m.end()], self._buf[m.end() :]
            if chunk == m.group(0):  # an empty line (the LF of a CRLF split across reads)
                continue
            try:
                out.append(SerialScan(framed=unframe(chunk, self._config), at=at))
            except BarcodeError as exc:
                out.append(SerialScan(framed=None, error=exc, at=at))
        return out


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

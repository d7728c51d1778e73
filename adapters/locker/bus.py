"""One RS-485 line of locker boards: the serial link, status cycles, unlocks slipped in between, boards offline on their own.

Theory of operation. A bus is one line (a serial port or a TCP serial server, opened through
pyserial's `serial_for_url`, so ptys and `socket://` work too) shared by several boards. Only one
frame exchange is on it at a time (`asyncio.Lock`), and between two the line stays quiet for `gap`.
A status cycle asks every online board once; a board that gives no valid reply `offline_after`
times in a row is offline and from then on only probed, with a doubling delay, so its timeouts do
not slow the cycle of the others. An unlock waits for the lock, is sent, and the board is polled
at once so the caller learns whether the door really opened. The blocking pyserial calls run in a
worker thread; the loop never blocks. Writes, and the wait for an unlock with no reply to leave the
port, are bounded (`_write_timeout`): a line that stopped taking data is the link lost, like any
failed line, not a thread held in the port for good with every close behind it. A line that failed
is reopened at once; only one failing again with no good cycle in between (a stalled line opens fine
every time) waits, for a pause that doubles while it keeps failing. An exchange that ends without its
reply, or fails, leaves nothing queued for the line: a request given up must never reach a board
once the line takes data again (an unlock reported failed would open a door minutes later). On a TCP
serial server the queue is this host's socket, which only a reset empties: an exchange that ends so
with bytes still unsent there gives the link up with a reset in its own thread (its awaiting task
may be gone, cancelled by a command's deadline), and a close with bytes unsent is a reset too. An
exchange whose caller is gone sends nothing once it reaches the line, and on TCP one its thread was
still running takes back what it left unsent there; an unlock cancelled later (in its settle, before
its poll) has the link checked and reset the same way: an unlock reported failed, or never reported,
must not open a door later. Where the kernel does not count a socket's unsent bytes, a board's silence
is taken as silence (a reset at every one would keep the whole bus down), so late delivery goes
unnoticed there: logged once. An exchange that reaches a port closed under it says so, as one after
the close does. A failure before any byte of a request was written is `RequestNotSent`: the one
failure after which an unlock is known not to have reached a board (an unlock's poll failing so is
a plain LinkError, since the unlock itself went out).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import os
import socket
import struct
import termios
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import serial  # type: ignore[import-untyped]

from adapters.locker import codec
from adapters.locker.config import BoardConfig, BoardModel, BusConfig, serial_url
from gateway.errors import AdapterError, DeviceTimeout
from gateway.logs import StateLog, component_logger

__all__ = [
    "Board",
    "BoardState",
    "BoardTimeout",
    "LinkError",
    "LockerBus",
    "RequestNotSent",
    "SerialLink",
    "board_frames",
]


class LinkError(AdapterError, ConnectionError):
    code = "locker_link"


class RequestNotSent(LinkError):
    """The line failed before any byte of the request was written: it reached no board.

    The one failure after which an unlock is known not to have opened a door; any other (a write that
    stalled, a poll after the unlock) may have come after the board got it.
    """


class BoardTimeout(DeviceTimeout):
    code = "locker_board_timeout"


class BoardState(enum.Enum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """A request and what to wait for: `reply_len` bytes, or none (the board does not answer)."""

    request: bytes
    reply_len: int


def board_frames(model: BoardModel, address: int) -> tuple[Exchange, Callable[[int], Exchange]]:
    """The status query of a board and a function giving the unlock exchange of one of its locks."""
    if model is BoardModel.CU16:
        return (
            Exchange(request=codec.encode_cu16_query(address), reply_len=codec.CU16_REPLY_LEN),
            lambda lock: Exchange(request=codec.encode_cu16_unlock(address, lock), reply_len=0),
        )
    if model is BoardModel.CU48:
        return (
            Exchange(request=codec.encode_cu48_query(address), reply_len=codec.CU48_REPLY_LEN),
            lambda lock: Exchange(request=codec.encode_cu48_unlock(address, lock), reply_len=0),
        )
    channels = model.locks
    groups = -(-channels // 8)
    return (
        Exchange(request=codec.encode_xor_query_all(address), reply_len=groups + 4),
        lambda lock: Exchange(request=codec.encode_xor_unlock(address, lock, channels=channels), reply_len=5),
    )


def decode_status(cfg: BoardConfig, frame: bytes) -> codec.BoardStatus:
    m = cfg.model
    if m is BoardModel.CU16:
        return codec.decode_cu16_status(
            frame, board=cfg.address, polarity=cfg.polarity, occupancy_polarity=cfg.occupancy_polarity
        )
    if m is BoardModel.CU48:
        return codec.decode_cu48_status(frame, board=cfg.address, polarity=cfg.polarity)
    return codec.decode_xor_status(frame, board=cfg.address, channels=m.locks, polarity=cfg.polarity)


# The longest request sent (a CU48 query or unlock) is 6 bytes: 50 ms of 8N1 at 1200 baud, the slowest
# a bus is set to. Ten times that at the line's baud, and a quarter second more for a USB-serial
# adapter's latency timer, a TCP serial server's round trip and the scheduler, is far beyond what a
# line taking data needs; a write still waiting then waits for one that stopped taking data (the
# adapter or server off, hung or pulled out, the cable out).
_LONGEST_REQUEST = 6


def _write_timeout(baud: int) -> float:
    return round(0.25 + 10 * _LONGEST_REQUEST * 10 / baud, 2)


class _Ticket:
    """One exchange between its caller (the loop) and its thread: which of the two heard last.

    Its caller cancelled (a command's deadline, a stop) while the thread still has the exchange ahead or
    under way: the thread takes back what it left unsent. The thread already through: the caller has to.
    """

    __slots__ = ("_lock", "abandoned", "ended")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.abandoned = False
        self.ended = False

    def abandon(self) -> bool:
        """From the caller, cancelled; whether the thread has yet to end (and so takes back what it leaves)."""
        with self._lock:
            self.abandoned = True
            return not self.ended

    def end(self) -> bool:
        """From the thread, at its end; whether its caller is gone (and so the thread takes back what it leaves)."""
        with self._lock:
            self.ended = True
            return self.abandoned


class SerialLink:
    """Bytes to and from one serial line; blocking pyserial calls in a worker thread, one at a time."""

    def __init__(self, cfg: BusConfig, dialect: codec.Dialect) -> None:
        self.url = serial_url(cfg.port)
        self.tcp = self.url.startswith("socket://")  # a TCP serial server
        self.baud = cfg.baud
        self.write_timeout = _write_timeout(cfg.baud)
        self.dialect = dialect
        self.discarded = 0  # noise bytes dropped while looking for a frame
        self._port: serial.SerialBase | None = None
        self._thread_lock = threading.Lock()  # a cancelled exchange's thread may still be reading
        self._reset: tuple[serial.SerialBase, LinkError] | None = None  # a port an exchange's thread gave up, and why
        self._last: _Ticket | None = None  # the latest exchange's
        self.counts_unsent = True  # the kernel counts a TCP socket's unsent bytes (SIOCOUTQNSD)

    @property
    def is_open(self) -> bool:
        return self._port is not None

    async def open(self) -> None:
        self._reset = None
        try:
            self._port = await asyncio.to_thread(
                serial.serial_for_url, self.url, baudrate=self.baud, timeout=0.2, write_timeout=self.write_timeout
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"locker bus {self.url}: cannot open the port, got {exc}") from None
        if self.tcp:
            # Nagle's algorithm would hold a request back until the server acknowledges the one before
            # (up to its delayed ACK, 40 ms and more): longer than a short reply timeout, and bytes held
            # so would read as a server that stopped taking data. pyserial leaves it on.
            _set_option(self._port, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.counts_unsent = _unsent(self._port) is not None

    async def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            await asyncio.to_thread(self._close, port, give_up=False)

    async def _give_up(self, port: serial.SerialBase) -> None:
        """Close a port whose line failed, unless a close got to it first."""
        if self._port is port:
            self._port = None
            await asyncio.to_thread(self._close, port, give_up=True)

    def _close(self, port: serial.SerialBase, *, give_up: bool) -> None:
        # A cancelled exchange's thread may still be reading: closing under it would free the fd, a
        # number the next `open()` anywhere is given.
        with self._thread_lock:
            # A plain close of a socket still sends all it queues; one with nothing queued stays plain,
            # so a TCP serial server does not log every stop and reload as a connection reset.
            if self.tcp and port.is_open and (give_up or _unsent(port) != 0):
                _reset_on_close(port)
            port.close()

    async def exchange(self, ex: Exchange, timeout: float) -> bytes | None:
        """Send a request and return the reply frame (None when no reply is expected)."""
        port = self._port
        if port is None:
            raise RequestNotSent(f"locker bus {self.url}: the port is closed, got an exchange")
        self._last = ticket = _Ticket()
        # Shielded so that the thread always runs, even when cancelled before it started: only a thread
        # that ran can tell (see `_Ticket`) whether taking back what is unsent is its job or the caller's.
        work = asyncio.ensure_future(asyncio.to_thread(self._blocking, port, ex, timeout, ticket))
        try:
            return await asyncio.shield(work)
        except LinkError:
            await self._give_up(port)  # the line failed; a port closed under the exchange is gone already
            raise
        except asyncio.CancelledError:
            ticket.abandon()
            work.add_done_callback(_heard)
            raise

    async def take_back(self) -> None:
        """After an unlock its caller gave up: a TCP link reset while its socket may still hold bytes unsent.

        An unlock awaits no reply, so on TCP its exchange ends once the bytes are in this host's socket;
        cancelled after that (in its settle, its poll not started) nothing else would ever look. A
        reset found needed is reported by the next exchange, as one of an exchange's thread is.
        """
        port, last = self._port, self._last
        if not self.tcp or port is None:
            return  # a UART's exchange waits until the unlock left the port
        if last is not None and last.abandoned and not last.ended:
            return  # that exchange's thread does it at its end, after all it sends
        await asyncio.shield(asyncio.to_thread(self._take_back_locked, port))

    def _take_back_locked(self, port: serial.SerialBase) -> None:
        with self._thread_lock:
            if port.is_open:
                self._take_back(port)

    def _take_back(self, port: serial.SerialBase) -> None:
        """Reset a TCP link its caller gave up while its socket may still hold bytes unsent; the thread lock held."""
        unsent = _unsent(port)
        if unsent == 0:
            return
        count = "an unknown number of bytes (the kernel does not count them)" if unsent is None else f"{unsent} bytes"
        err = LinkError(
            f"locker bus {self.url}: a request was given up (cancelled, an unlock's command past its deadline)"
            f" with {count} unsent to the TCP serial server; the link is reset so none of them reaches a board"
            " later; check the power and the network of the TCP serial server, and whether its serial side hung",
            unsent_bytes=unsent,
        )
        self._reset_link(port, err)

    def _reset_link(self, port: serial.SerialBase, err: LinkError) -> None:
        """A TCP link given up with a reset, here and now (the thread lock held), `err` kept for the next exchange."""
        _reset_on_close(port)
        port.close()
        self._reset = (port, err)

    def _blocking(self, port: serial.SerialBase, ex: Exchange, timeout: float, ticket: _Ticket) -> bytes | None:
        """The exchange in its thread: a reply, None, BoardTimeout (the board's silence) or LinkError (the line's failure)."""
        with self._thread_lock:
            try:
                return self._guarded(port, ex, timeout, ticket)
            finally:
                if ticket.end() and self.tcp and port.is_open:
                    self._take_back(port)

    def _guarded(self, port: serial.SerialBase, ex: Exchange, timeout: float, ticket: _Ticket) -> bytes | None:
        if ticket.abandoned:
            return None  # its caller is gone: an unlock sent now would open a door reported failed
        if not port.is_open:  # closed between the exchange taking it and this thread reaching it
            reset = self._reset
            if reset is not None and reset[0] is port:  # by an exchange's thread, whose caller may be gone
                raise RequestNotSent(str(reset[1]), **reset[1].params)
            raise RequestNotSent(f"locker bus {self.url}: the port is closed, got an exchange")
        try:
            return self._discarding(port, ex, timeout)
        except (BoardTimeout, LinkError):
            raise  # OSErrors too (TimeoutError, ConnectionError), already saying what ended the exchange
        except (serial.SerialException, OSError, termios.error) as exc:
            # termios.error (no OSError) is what the input flush of a hung-up tty raises: the adapter pulled out
            raise LinkError(f"locker bus {self.url}: the line failed, got {_os_text(exc)}") from None

    def _discarding(self, port: serial.SerialBase, ex: Exchange, timeout: float) -> bytes | None:
        """The exchange on the port; one that ends without its reply, or fails, leaves nothing queued."""
        try:
            return self._on_port(port, ex, timeout)
        except Exception as exc:
            # What the line still holds goes, before any other exchange: a line taking data again
            # (an adapter or server that stopped passing data on, a cable put back) must get neither
            # requests whose replies already count as missing (they would read as a later request's)
            # nor an unlock reported failed, which would open a door long after. A port closed with
            # output queued also waits for it to drain (30 s on a UART by default). A port that refuses
            # even this is gone altogether; the exchange's own end is still what to report. On a
            # TCP serial server this discards nothing (pyserial cannot reach the socket's queue).
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                port.reset_output_buffer()
            if self.tcp:
                self._reset_if_unsent(port, exc, timeout)
            raise

    def _reset_if_unsent(self, port: serial.SerialBase, exc: Exception, timeout: float) -> None:
        """Give a TCP link up with a reset, here and now, while its socket still holds bytes unsent.

        The server stopped reading (its serial side hung): its window is closed, and this host's socket
        keeps the requests, far from full, so no write times out. When the server reads again it would
        get them all, an unlock reported failed among them. Done in the exchange's own thread, since its
        awaiting task may be gone (a command's deadline) and would never give the link up; the next
        exchange on the port says why it is gone.
        """
        unsent = _unsent(port)
        if unsent == 0:
            return  # all of it reached the server; a board's silence, or a failure given up as usual
        if unsent is None and isinstance(exc, BoardTimeout):
            # Not known: taken as the board's silence, or every silent board would reset the link at
            # each poll and keep the whole bus down. Logged once at the open (`LockerBus.run`).
            return
        if isinstance(exc, BoardTimeout):
            count = (
                "an unknown number of bytes (the kernel does not count them)" if unsent is None else f"{unsent} bytes"
            )
            err = LinkError(
                f"locker bus {self.url}: the TCP serial server stopped taking data, got {count} unsent after"
                f" {timeout:g} s without a reply; the link is reset so none of them reaches a board later; check"
                " the power and the network of the TCP serial server, and whether its serial side hung",
                unsent_bytes=unsent,
                timeout=timeout,
            )
        elif isinstance(exc, LinkError):
            err = exc
        else:  # what `_blocking` makes of it
            err = LinkError(f"locker bus {self.url}: the line failed, got {_os_text(exc)}")
        self._reset_link(port, err)
        if isinstance(exc, BoardTimeout):
            raise err from None

    def _on_port(self, port: serial.SerialBase, ex: Exchange, timeout: float) -> bytes | None:
        try:
            port.reset_input_buffer()
        except (serial.SerialException, OSError, termios.error) as exc:
            raise RequestNotSent(f"locker bus {self.url}: the line failed, got {_os_text(exc)}") from None
        self._write(port, ex.request)
        if ex.reply_len == 0:
            self._drain(port, ex.request)
            return None
        deadline = time.monotonic() + timeout
        buf = b""
        need = ex.reply_len
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                split = codec.split_frames(buf, self.dialect, final=True)
                self.discarded += split.discarded
                if split.frames:
                    return split.frames[0]
                raise BoardTimeout(
                    f"locker bus {self.url}: no valid reply within {timeout:g} s, got {len(buf)} bytes",
                    got=len(buf),
                )
            port.timeout = left
            buf += port.read(need)
            split = codec.split_frames(buf, self.dialect)
            if split.frames:
                self.discarded += split.discarded
                return split.frames[0]
            need = max(1, ex.reply_len - len(split.remainder))

    def _write(self, port: serial.SerialBase, request: bytes) -> None:
        try:
            port.write(request)
        except serial.SerialTimeoutException:
            raise self._stalled(request, "not taken") from None

    def _drain(self, port: serial.SerialBase, request: bytes) -> None:
        """Wait, bounded, until a request with no reply has left the port (the next frame keeps its gap)."""
        if self.tcp:
            port.flush()  # a no-op: what a TCP serial server does with the bytes is out of sight
            return
        # pyserial's flush is tcdrain, which has no bound: an adapter that took the bytes into its
        # driver and hung would hold this thread, the bus's lock and every close for good. The count
        # says when the bytes left the driver, the request's wire time when they left the UART's FIFO.
        sent_by = time.monotonic() + len(request) * 10 / self.baud
        deadline = time.monotonic() + self.write_timeout
        while waiting := port.out_waiting:
            if time.monotonic() >= deadline:
                raise self._stalled(request, "taken but not sent")
            time.sleep(min(max(0.001, waiting * 10 / self.baud), max(0.0, deadline - time.monotonic())))
        time.sleep(max(0.0, sent_by - time.monotonic()))

    def _stalled(self, request: bytes, what: str) -> LinkError:
        return LinkError(
            f"locker bus {self.url}: the line stopped taking data, got a {len(request)}-byte request {what}"
            f" within {self.write_timeout:g} s; check the power and the cable of the RS-485 adapter or TCP serial"
            " server, and whether it hung or was pulled out",
            request_bytes=len(request),
            write_timeout=self.write_timeout,
        )


def _reset_on_close(port: serial.SerialBase) -> None:
    """Make the close of a TCP port a reset (RST), which drops what the socket still queues.

    A plain close still sends all of it, so a TCP serial server that takes data again would be handed
    requests given up, an unlock reported failed among them.
    """
    _set_option(port, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _set_option(port: serial.SerialBase, level: int, option: int, value: int | bytes) -> None:
    """A socket option of a TCP port, set through a second handle on its socket (pyserial offers only the fd)."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(port.fileno())) as sock:
        sock.setsockopt(level, option, value)


# <linux/sockios.h>: the bytes a TCP socket holds and has not sent yet. Bytes sent and not yet
# acknowledged are on their way (no reset calls them back, as none calls back bytes on a cable).
_SIOCOUTQNSD = 0x894B


def _unsent(port: serial.SerialBase) -> int | None:
    """The bytes a TCP port's socket still holds unsent; None when the kernel does not say (count it as some)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(port.fileno(), _SIOCOUTQNSD, bytes(4)))[0])
    except OSError:  # also pyserial's PortNotOpenError
        return None


def _heard(work: asyncio.Future[bytes | None]) -> None:
    """Retrieve the end of a thread whose caller is gone (its LinkError is reported by the next exchange)."""
    if not work.cancelled():
        work.exception()


def _os_text(exc: Exception) -> str:
    """An OSError's text; termios.error's (errno, text) in the same form."""
    if isinstance(exc, termios.error) and len(exc.args) == 2:
        return f"[Errno {exc.args[0]}] {exc.args[1]}"
    return str(exc)


@dataclass(slots=True)
class BoardCounters:
    polls: int = 0
    answers: int = 0
    timeouts: int = 0
    frame_errors: int = 0
    unlocks: int = 0
    went_offline: int = 0


class Board:
    """A board on the bus: its config, frames, last status and online state."""

    def __init__(self, cfg: BoardConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.query, self.unlock_exchange = board_frames(cfg.model, cfg.address)
        self.state = BoardState.UNKNOWN
        self.status: codec.BoardStatus | None = None
        self.counters = BoardCounters()
        self.failures_in_row = 0
        self.next_probe = 0.0
        self.probe_delay = 0.0
        self.last_error = ""


StatusCallback = Callable[[Board, codec.BoardStatus], Awaitable[None]]
StateCallback = Callable[[Board, BoardState, str], Awaitable[None]]


class LockerBus:
    """Runs the status cycles of one line until cancelled; `unlock` slips in between two exchanges."""

    def __init__(
        self,
        *,
        cfg: BusConfig,
        boards: Sequence[Board],
        on_status: StatusCallback,
        on_state: StateCallback,
        poll_interval: float,
        offline_after: int,
        probe_initial: float = 5.0,
        probe_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        component: str = "locker",
    ) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.boards = list(boards)
        self.link = SerialLink(cfg, self.boards[0].cfg.model.dialect)
        self.on_status = on_status
        self.on_state = on_state
        self.poll_interval = poll_interval
        self.offline_after = offline_after
        self.probe_initial = probe_initial
        self.probe_max = probe_max
        self.clock = clock
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.link_error = ""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._quiet_from = 0.0
        self._log = component_logger(__name__, component)
        self._line = StateLog(self._log)
        self._warned_unsent = False

    async def run(self) -> None:
        delay = 1.0
        cycled = False  # the last attempt went through a whole cycle
        try:
            while True:
                try:
                    if not self.link.is_open:
                        await self.link.open()
                        self._warn_unsent()
                    started = self.clock()
                    await self.cycle()
                except LinkError as exc:
                    self.link_error = str(exc)
                    self._line.fail(str(exc), logging.WARNING, "bus %s: %s", self.name, exc)
                    # A one-off failure after a good cycle (a blip, a server restarting) is reopened at
                    # once, so unlocks work again straight away. Failing with no cycle in between (or
                    # before any) pauses: a line that stopped taking data opens fine every time, and would
                    # be reopened over and over.
                    if not cycled:
                        await self._pause(delay)
                        delay = min(delay * 2, 60.0)
                    cycled = False
                    continue
                # back once a cycle went through, not at the open: the stall follows the open at once
                self.link_error = ""
                self._line.ok("bus %s: port open again", self.name)
                cycled = True
                delay = 1.0
                self.last_cycle_s = self.clock() - started
                await self._pause(max(0.0, self.poll_interval - self.last_cycle_s))
        finally:
            await self.link.close()

    def _warn_unsent(self) -> None:
        if self.link.counts_unsent or self._warned_unsent:
            return
        self._warned_unsent = True
        self._log.warning(
            "bus %s: the kernel does not count the bytes a socket holds unsent (SIOCOUTQNSD) on this platform:"
            " requests a TCP serial server did not take when a board gave no reply cannot be detected, and may"
            " reach the board late once the server reads again (an unlock reported failed among them)",
            self.name,
        )

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def poll_soon(self) -> None:
        self._wake.set()

    async def cycle(self) -> None:
        """Ask every board that is due once (online ones every cycle, offline ones when their probe is due)."""
        self.cycles += 1
        for board in self.boards:
            if board.state is BoardState.OFFLINE and self.clock() < board.next_probe:
                continue
            await self.poll(board)

    async def poll(self, board: Board) -> codec.BoardStatus | None:
        board.counters.polls += 1
        try:
            frame = await self._exchange(board.query)
            assert frame is not None  # a query always expects a reply
            status = decode_status(board.cfg, frame)
        except BoardTimeout as exc:
            board.counters.timeouts += 1
            await self._failed(board, str(exc))
            return None
        except codec.LockerFrameError as exc:
            board.counters.frame_errors += 1
            await self._failed(board, str(exc))
            return None
        board.counters.answers += 1
        board.failures_in_row = 0
        board.probe_delay = 0.0
        board.status = status
        if board.state is not BoardState.ONLINE:
            was = board.state
            board.state = BoardState.ONLINE
            board.last_error = ""
            if was is BoardState.OFFLINE:
                self._log.info("board %s on bus %s: answers again", board.name, self.name)
            await self.on_state(board, BoardState.ONLINE, "")
        await self.on_status(board, status)
        return status

    async def _failed(self, board: Board, reason: str) -> None:
        board.last_error = reason
        board.failures_in_row += 1
        if board.state is BoardState.OFFLINE:
            board.probe_delay = min(board.probe_delay * 2, self.probe_max)
            board.next_probe = self.clock() + board.probe_delay
            return
        if board.failures_in_row >= self.offline_after:
            board.state = BoardState.OFFLINE
            board.counters.went_offline += 1
            board.probe_delay = self.probe_initial
            board.next_probe = self.clock() + board.probe_delay
            self._log.warning(
                "board %s on bus %s: offline after %d failed polls: %s",
                board.name,
                self.name,
                board.failures_in_row,
                reason,
            )
            await self.on_state(board, BoardState.OFFLINE, reason)

    async def unlock(self, board: Board, lock: int) -> codec.BoardStatus | None:
        """Pulse one lock open and poll the board; the status says whether the door opened (None: no answer).

        RequestNotSent: the unlock never left; any other LinkError (or a cancel) leaves it open whether it did.
        """
        if not self.link.is_open:
            raise RequestNotSent(
                f"locker bus {self.name}: the port is not open, got {self.link_error or 'no port yet'}"
            )
        board.counters.unlocks += 1
        try:
            return await self._unlock(board, lock)
        except BaseException:
            # Given up (a command's deadline cancels it, or it failed): the command is reported failed,
            # so an unlock a TCP serial server did not take must never reach the board later.
            await self.link.take_back()
            raise

    async def _unlock(self, board: Board, lock: int) -> codec.BoardStatus | None:
        ex = board.unlock_exchange(lock)
        try:
            reply = await self._exchange(ex)
        except BoardTimeout:
            reply = None  # an unlock reply is informative only: the status poll below decides
        except codec.LockerFrameError:
            reply = None
        if reply is not None and board.cfg.model in (BoardModel.XOR12, BoardModel.XOR24):
            try:
                codec.decode_xor_lock_reply(reply, board=board.cfg.address, lock=lock, polarity=board.cfg.polarity)
            except codec.LockerFrameError:
                board.counters.frame_errors += 1
        if self.cfg.unlock_settle:
            await asyncio.sleep(self.cfg.unlock_settle)  # the bolt needs a moment before the board reports it
        try:
            return await self.poll(board)
        except RequestNotSent as exc:
            # the poll's request went nowhere, the unlock's did: not to be taken for an unlock never sent
            raise LinkError(str(exc), **exc.params) from None

    async def _exchange(self, ex: Exchange) -> bytes | None:
        async with self._lock:
            wait = self._quiet_from - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await self.link.exchange(ex, self.cfg.timeout)
            finally:
                self._quiet_from = self.clock() + self.cfg.quiet_s

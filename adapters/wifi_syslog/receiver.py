"""Syslog receiver for Wi-Fi association events: UDP datagrams and TCP streams (RFC 6587), stored as sessions.

Theory of operation. Every datagram, or every frame a TCP connection's `FrameSplitter` yields
(octet counting or LF, chosen per frame), is parsed and matched against the vendor patterns
(`patterns.toml`). Lines that are not association events are counted and dropped; a TCP stream
that loses framing sync is closed (RFC 6587 gives no way to resynchronise). Events are queued and
committed in batches by one writer task, like the RADIUS receiver.

Syslog has no acknowledgement and UDP no redelivery: an event received and then dropped is gone from the
legally kept log for good. So a commit the store refuses for a while (SQLITE_BUSY past the busy timeout
while the nightly backup or `edgegw wifi` maintenance holds the write lock, an I/O error, a full disk) keeps
its batch first in line and is retried, backing off from 0.5 s to 30 s (`CommitRetry`); only an error no
retry can mend (a closed store, a missing table or another SQL error, a damaged file, a bug) gives the batch
up, counted in `lost`. A batch's lines become session events once, before its first attempt (a leave takes
its join's session id then), and once the store took them they are never stored again, whatever fails after.
At most `max_pending` events wait; past that new ones are refused and counted. `close()` stops the sockets,
lets the writer store what was received for up to `drain_s`, and only then ends it: the adapter closes the
store after.

The batch is committed in a worker thread, which runs on when its writer task is cancelled: one lock lets
one thread at a time fill, convert, commit or give up the batch, so a writer started again after a stop
finds it stored (or still failed), never commits it beside the old thread. What a stop gives up is counted
in `lost` and let go there; a commit still running then reports its own outcome once it ends (no one awaits
it any more): stored, or counted in `lost` with an ERROR.

Syslog has no session id: a `connected` line opens a session on its AP (the AP's MAC when the line
names it, else the sending host) and the next `disconnected` line of the same station on the same
AP closes it. A join waits for its leave at most `max_session` after its last join line (a leave lost over UDP, an
AP rebooted; an AP logs a station's re-association as a join again, which keeps its session), and at most
`open_kept` joins wait, the oldest forgotten first: the line's AP and host are the sender's to invent, and any host
may send while `senders` is empty (said at start). A forgotten join's leave still closes the session the store
holds open, as after a restart; the station's next join there closes it instead (REJOIN_CAUSE), so no session is
left open for ever. The session id is an HMAC of AP, station and join time under a key of the box
(`gateway.wifilog.runner.session_key`): no one without it can tell from the id, or from the platform's
entity id made of it, which MAC it belongs to, and the same line gives the same id after a restart, so a
join sent again (a relay's queue) merges with its session. The key is read when a listener starts, so a
secret store that cannot be read stops the start, before any line is taken. A `disconnected` line
matching no open session whose station left that AP at that same time is the line again (a UDP
duplicate, an AP repeating it): counted in `repeated_leaves`, not made a session.

A TCP connection from a host not in `senders` (when set) is closed at accept. Each connection holds a file
descriptor of the whole gateway, so a host keeps at most `connections_per_peer`: its next one closes its own
quietest (a connection it no longer uses: the AP rebooted or its NAT forgot, and no FIN reached us), never the new
one. Listed senders are bounded by that alone (len(senders) × connections_per_peer). With `senders` empty, at most
`max_connections` are open: one more closes the quietest if it had no byte for `idle_s`, else it is refused.
Nothing is closed on a timer: a sender that writes without checking its connection would lose the line it sends
into one we closed.

A line that does not parse is counted in `unparsable`, kept in `last_error` and logged per sender
(`SenderSpells`: WARNING at the first of a spell, within a budget of WARNINGs a minute, DEBUG after, INFO once it
sends a line that parses five minutes or more after its last one that did not).
A device time more than MAX_BEHIND before or MAX_AHEAD after the gateway's clock is not believed: the
event is stored at its arrival time, counted in `device_time_ignored` and logged the same way. Unless the kernel
says the gateway's clock is not synchronised (`GatewayClock`, whose docstring has the rule): then an AP's time
ahead of it and of the latest time the box knew is kept, counted in `gateway_clock_unsynced`, by up to three years
while that clock is stale (it started this boot at 1970, its build date or the saved time), a day once it is not
(a good RTC without NTP is believed). An RFC 3164 line has no year: while the clock is stale its year is read
after the latest time the box knew, not taken from the wrong clock, and as that year is a guess the line is kept
only within a day past that time or the gateway's (an AP reset to "Jan  1 00:03:00" is stored at its arrival,
not filed at the next New Year). An AP's time before the latest time the box knew is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from adapters.wifi_syslog.codec import decode_wifi_event
from adapters.wifi_syslog.errors import SyslogError
from adapters.wifi_syslog.framing import FrameSplitter
from adapters.wifi_syslog.gateway_clock import WORDS
from adapters.wifi_syslog.message import SyslogFormat, parse_syslog
from adapters.wifi_syslog.patterns import AssociationKind, PatternSet, WifiEvent, load_patterns
from gateway import redact
from gateway.cancellation import event_set_within
from gateway.device_clock import SYNC_TTL_S, GatewayClock, SyncSource, describe_skew
from gateway.host import clock_synced as kernel_clock_synced
from gateway.logs import SenderSpells, SpellBudget, StateLog, component_logger
from gateway.wifilog.runner import SYSLOG_SESSION_ID, CommitRetry, keyed_digest, listen_error, retryable, session_key
from gateway.wifilog.sessions import EventKind, SessionEvent
from gateway.wifilog.store import WifiLogStore

__all__ = ["SyslogReceiver"]

log = component_logger(__name__, "wifi_syslog")

MAX_BATCH = 4096
# A library's APs send a few association events a second at the busiest (its visitors' joins and leaves):
# 100,000 waiting events are nine hours or more of a store that refuses commits (a night's backup or
# maintenance gone wrong, a failing SD card), time for a technician to act, and cost at most about 75 MB
# (0.5-0.75 KB an event as queued, measured with hostapd and UniFi lines) on a box with 1 GB or more.
MAX_PENDING = 100_000
# a stop or reload waits this long for the store to take what was received: one full busy timeout of the
# store, and a bound on how long a stop of the adapter takes
DRAIN_S = 10.0
STREAMS_END_S = 1.0  # the TCP connections closed at a stop read what they hold, then end
# An AP's lines arrive within seconds (a relay's queue after an outage: hours). A device time further back is a
# clock never set (an AP booted before NTP says 1970) and one ahead a wrong clock or a year-less RFC 3164 date
# put in the next year: believed, they file the session in a period decades away, erased at the next expiry
# though it arrived a minute ago, or kept past the retention. The margin ahead is an AP clock drifting unset.
MAX_BEHIND = timedelta(days=1)
MAX_AHEAD = timedelta(days=1)  # a box without RTC may lag a good AP (GatewayClock keeps more while unsynchronised)
_LEAST_SKEW = -MAX_BEHIND  # built once: every line is compared with it
# the (AP, station) pairs whose leave is remembered, to know the same leave again; about 1 MB
CLOSED_KEPT = 4096
# A join whose leave never came (lost over UDP, the AP rebooted) is forgotten this long after its last join line:
# the station's next join there is a session of its own, not the old one's id again, and closes the old one. A
# leave after that still closes the session the store holds open.
MAX_SESSION = timedelta(hours=24)
# Joins waiting for their leave, at most (the oldest forgotten first, as above): a library has a few hundred
# stations at once, and any host on the Wi-Fi side may send joins for invented APs and stations; about 5 MB
OPEN_KEPT = 16_384
# Forgotten joins whose session the store holds open, remembered to close it at the station's next join on that AP
# (else it stays open for ever and an inquiry finds the station there "perhaps still"); about 1 MB
FORGOTTEN_KEPT = 4096
# The terminate cause of such a session, worded like RFC 2866's: it ended at the latest at that next join
REJOIN_CAUSE = "Leave Lost, Joined Again"
# TCP senders: every connection is a file descriptor of the whole gateway (its stores, uplinks, serial ports)
MAX_CONNECTIONS = 64
CONNECTIONS_PER_PEER = 8
# with senders empty and max_connections open, the quietest is closed for a new one if it had no byte this long
IDLE_S = 600.0
REFUSALS_QUIET_S = 300.0  # connections refused for room: the spell ends once none was for this long


class _Writer:
    """A writer task's standing, shared with its commit's thread: `abandoned` once a stop ended the task."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.receiver.line(data, str(addr[0]))


class SyslogReceiver:
    """UDP and/or TCP listeners feeding one writer; `allowed` limits which senders are heard (None: any).

    `clock_synced` says whether the gateway's clock is synchronised (None: unknown), asked at most every
    `sync_ttl_s`; by default the kernel (adjtimex). `not_before`: the latest time the box knew (by default
    gateway_clock.known_floor), below which an AP's time is never believed over the gateway's.
    """

    def __init__(
        self,
        store: WifiLogStore,
        *,
        clock: Callable[[], datetime],
        patterns: PatternSet | None = None,
        allowed: frozenset[str] | None = None,
        on_event: Callable[[SessionEvent], None] | None = None,
        max_pending: int = MAX_PENDING,
        drain_s: float = DRAIN_S,
        clock_synced: SyncSource = kernel_clock_synced,
        sync_ttl_s: float = SYNC_TTL_S,
        not_before: datetime | None = None,
        max_session: timedelta = MAX_SESSION,
        open_kept: int = OPEN_KEPT,
        max_connections: int = MAX_CONNECTIONS,
        connections_per_peer: int = CONNECTIONS_PER_PEER,
        idle_s: float = IDLE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_event = on_event
        self.store = store
        self.clock = clock
        self.patterns = patterns or load_patterns()
        self.allowed = allowed
        self.max_pending = max_pending
        self.drain_s = drain_s
        self.max_session = max_session
        self.open_kept = open_kept
        self.max_connections = max_connections
        self.connections_per_peer = connections_per_peer
        self.idle_s = idle_s
        self._monotonic = monotonic
        # appended on the loop, taken from the left in a commit's thread: deque's append and popleft are atomic
        # in CPython, so this needs no lock
        self._pending: deque[tuple[WifiEvent, str]] = deque()
        # the batch first in line: lines taken from `_pending` (`_taken`) become session events in the writer's
        # thread (`_ready`) once, as a leave takes its join's session id then (a second time it would find none);
        # both wait there, in order, until the store took them. Only the thread holding `_batch_lock` touches
        # them and `_open`: a cancelled writer's thread runs on, and a writer started after it would otherwise
        # commit the same batch beside it
        self._taken: deque[tuple[WifiEvent, str]] = deque()
        self._ready: list[SessionEvent] = []
        # (AP, station) → the open session's id and when its join arrived (gateway clock), oldest first
        self._open: OrderedDict[tuple[str, str], tuple[str, datetime]] = OrderedDict()
        self._crowded = StateLog(log)  # joins forgotten for room: logged once a spell, and its end
        self._closed: OrderedDict[tuple[str, str], datetime] = OrderedDict()  # (AP, station) → its last leave
        # (AP, station) → the session id of a join forgotten before its leave came, the oldest first
        self._forgotten: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._id_key: bytes | None = None  # read by the first listener's start (`_session_key`)
        self._batch_lock = threading.Lock()
        # held briefly, by a commit's thread and by the stop: whether a thread holds the batch (`_committing`,
        # its writer), whether that writer was abandoned, and `lost`, decided at one moment on either side
        self._state = threading.Lock()
        self._committing: _Writer | None = None
        self._held = 0  # events in the batch `_committing`'s thread holds: fixed while it converts them
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._retry = CommitRetry(log, what="wifi syslog store", kept="events", items="events", waiting="events")
        self._full = StateLog(log)  # events refused for want of room: logged once a spell, and its end
        self._refused_before = 0  # refused_queue_full when the spell began
        self._handing_on = StateLog(log)  # on_event failing for stored events: the same
        budget = SpellBudget()  # one for both: any host may send, from many addresses
        self._unparsable = SenderSpells(log, what="wifi syslog", clock=monotonic, budget=budget)  # lines not parsed
        self._clocks = SenderSpells(log, what="wifi syslog", clock=monotonic, budget=budget)  # times not believed
        self._refusing = StateLog(log)  # TCP connections refused for room
        self._last_refusal = 0.0
        self._peers: Counter[str] = Counter()  # TCP connections open, per peer
        # the same connections and their peers, the quietest (longest without a byte) first: closed first for room
        self._conns: OrderedDict[asyncio.Task[Any], str] = OrderedDict()
        self._heard: dict[asyncio.Task[Any], float] = {}  # monotonic, at their accept or last byte
        self._said_open = False  # the WARNING that any host may send, said at the first start
        self._gateway_clock = GatewayClock(log, clock_synced, words=WORDS, ttl_s=sync_ttl_s, not_before=not_before)
        self._closing = False
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._streams: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._writers: dict[asyncio.Task[None], _Writer] = {}
        self.last_error: str | None = None
        self.counters: dict[str, int] = {
            "lines": 0,
            "events": 0,
            "stored": 0,
            "ignored": 0,
            "unparsable": 0,
            "framing_errors": 0,
            "refused_sender": 0,  # lines, and TCP connections, from a host not in senders
            "refused_connections": 0,  # TCP connections refused: senders empty, max_connections open, none idle_s quiet
            "idle_closed": 0,  # TCP connections closed, the quietest first, for a new one past a cap
            "open_expired": 0,  # joins forgotten max_session after their last join line, their leave never seen
            "open_forgotten": 0,  # joins forgotten, the oldest first, as open_kept were waiting for their leave
            "rejoin_closed": 0,  # sessions of forgotten joins closed at the station's next join on their AP
            "device_time_ignored": 0,  # stored at arrival: a device time out of MAX_BEHIND..MAX_AHEAD
            "gateway_clock_unsynced": 0,  # a device time out of those bounds kept: the gateway's clock is not synced
            "repeated_leaves": 0,  # a leave line again, dropped
            "commit_retries": 0,  # attempts made again after the store refused a commit
            "refused_queue_full": 0,  # events refused while max_pending waited
            "lost": 0,  # events given up: an error no retry mends, or a stop before the store took them
            "hand_on_failed": 0,  # stored events that on_event (usage, session events) failed on
        }

    @property
    def waiting(self) -> int:
        """Events received and not stored yet."""
        return len(self._pending) + len(self._taken) + len(self._ready)

    async def start_udp(self, host: str, port: int) -> tuple[str, int]:
        self._say_open(host)
        await asyncio.to_thread(self._session_key)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
        except OSError as exc:
            raise listen_error(exc, "wifi syslog udp", host, port) from None
        self._transports.append(transport)
        self._start_writer()
        name = transport.get_extra_info("sockname")
        log.info("wifi syslog: listening on udp %s:%d", name[0], name[1])
        return str(name[0]), int(name[1])

    async def start_tcp(self, host: str, port: int) -> tuple[str, int]:
        self._say_open(host)
        await asyncio.to_thread(self._session_key)
        try:
            server = await asyncio.start_server(self._stream, host, port)
        except OSError as exc:
            raise listen_error(exc, "wifi syslog tcp", host, port) from None
        self._servers.append(server)
        self._start_writer()
        name = server.sockets[0].getsockname()
        log.info("wifi syslog: listening on tcp %s:%d", name[0], name[1])
        return str(name[0]), int(name[1])

    def _say_open(self, host: str) -> None:
        if self.allowed is not None or self._said_open:
            return
        self._said_open = True
        log.warning(
            "wifi syslog: senders is empty, so any host that reaches %s may send association lines (sessions in "
            "the Wi-Fi log, usage readings); list the APs' addresses in senders",
            host,
        )

    @property
    def listeners(self) -> int:
        """Sockets open (UDP and TCP)."""
        return len(self._transports) + len(self._servers)

    def _start_writer(self) -> None:
        self._closing = False
        self._retry.hurry.clear()
        if not self._writers:
            writer = _Writer()
            self._writers[asyncio.create_task(self._write_loop(writer), name="wifi-syslog-writer")] = writer

    async def close(self) -> None:
        """Stop listening, store what was received (for up to `drain_s`), then end the writer.

        The store stays open: its owner closes it after this, so no batch meets a closed store. Cancelled
        meanwhile (a second stop), it ends the writer at once. What was not stored is counted in `lost` and let
        go, but for a commit still running in the writer's thread: that one is stored if it succeeds, and
        logged and counted as lost by its thread if not.
        """
        self._closing = True
        for t in self._transports:
            t.close()
        for s in self._servers:
            s.close()
        # Server.close leaves the accepted connections open: an AP would go on sending into a receiver
        # that no longer stores, and never learn of it
        for w in self._streams.values():
            w.close()
        servers, self._servers = self._servers, []
        self._transports.clear()
        reason = "received after the store took the rest"  # by a stream still reading past STREAMS_END_S
        try:
            for s in servers:
                await s.wait_closed()
            if self._streams:  # what they had received is queued before the drain
                await asyncio.wait(list(self._streams), timeout=STREAMS_END_S)
            if not await self._drained():
                reason = f"the store did not take them within {self.drain_s:g} s"
        except asyncio.CancelledError:
            reason = "stopped again before the store took them"
            raise
        finally:
            writers, self._writers = self._writers, {}
            self._abandon(writers.values(), reason)
            for task in writers:
                task.cancel()
            await asyncio.gather(*writers, return_exceptions=True)

    async def _drained(self) -> bool:
        """Whether the writer stored all that waited within `drain_s` (or had nothing to store)."""
        if not self._writers or not self.waiting:
            return True
        self._retry.hurry.set()
        return await event_set_within(self._idle, self.drain_s)

    def _abandon(self, writers: Iterable[_Writer], reason: str) -> None:
        """The stop's account of what was not stored, given just before it cancels `writers`: at the same
        moment as a commit's thread decides whom its outcome goes to, so each event is counted once."""
        with self._state:
            for writer in writers:
                writer.abandoned = True
            # the loop's own thread: nothing is queued meanwhile, and a thread holding the batch took its lines
            running = self._held if self._committing is not None else 0
            waiting = len(self._pending) + (running or len(self._taken) + len(self._ready))
            if not running:  # no thread holds the batch: it is let go with the queue
                self._taken.clear()
                self._ready = []
            self._pending.clear()
            self.counters["lost"] += waiting - running
        if not waiting:
            return
        log.error(
            "wifi syslog: stopped with %d association events not stored (%s)%s; last error: %s",
            waiting,
            reason,
            f"; {running} of them in a commit still running: stored if it succeeds, else logged as lost"
            if running
            else "",
            self.last_error,
        )

    async def flush(self) -> None:
        """Wait until everything received so far is committed (tests, shutdown)."""
        await self._idle.wait()

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        if not self._admitted(peer):
            writer.transport.abort()  # nothing of theirs is read: no need to wait for a close
            return
        splitter = FrameSplitter()
        task = asyncio.current_task()
        if task is not None:
            self._streams[task] = writer
            self._conns[task] = peer
            self._heard[task] = self._monotonic()
            self._peers[peer] += 1
        try:
            if self._closing:  # accepted as the server closed
                return
            while data := await self._read(reader, task):
                splitter.feed(data)
                while (frame := splitter.next()) is not None:
                    self.line(frame, peer)
            if not self._closing:  # at a stop the end of the stream is ours: a frame cut there is no message
                for frame in splitter.close():
                    self.line(frame, peer)
        except SyslogError as exc:
            self.counters["framing_errors"] += 1
            self.last_error = str(exc)
            log.warning("wifi syslog: closing the tcp stream from %s (%s)", peer, exc)
        finally:
            if task is not None:
                self._forget(task)
                del self._streams[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _admitted(self, peer: str) -> bool:
        """Whether a TCP connection from `peer` is kept: a host in senders (if set); room made at a cap by closing
        the quietest connection (the peer's own at its cap), refused only with senders empty and none quiet."""
        if self.allowed is not None and peer not in self.allowed:
            self.counters["refused_sender"] += 1
            return False
        if self._peers[peer] >= self.connections_per_peer:
            self._close_quietest(next(t for t, p in self._conns.items() if p == peer), peer)
        elif self.allowed is None and len(self._conns) >= self.max_connections:
            quietest = next(iter(self._conns), None)
            if quietest is None or self._monotonic() - self._heard[quietest] < self.idle_s:
                return self._refuse_connection(peer)
            self._close_quietest(quietest, peer)
        now = self._monotonic()
        if self._refusing.failing and now - self._last_refusal >= REFUSALS_QUIET_S:
            self._refusing.ok(
                "wifi syslog: taking tcp connections again (%d refused so far)",
                self.counters["refused_connections"],
            )
        return True

    def _refuse_connection(self, peer: str) -> bool:
        self.counters["refused_connections"] += 1
        self._last_refusal = self._monotonic()
        if not self._refusing.fail(
            "full",
            logging.WARNING,
            "wifi syslog: refusing tcp connections (counted in refused_connections), e.g. from %s: %d open of at most "
            "%d and none quiet for %g s to close for it; set senders to the APs' addresses (then any number of them "
            "may connect, %d connections each)",
            peer,
            len(self._conns),
            self.max_connections,
            self.idle_s,
            self.connections_per_peer,
        ):
            log.debug("wifi syslog: refused a tcp connection from %s (%d open)", peer, len(self._conns))
        return False

    def _close_quietest(self, task: asyncio.Task[Any], newcomer: str) -> None:
        """`task`'s connection closed for one from `newcomer`; it no longer counts, though its task ends later."""
        quiet_s = self._monotonic() - self._heard[task]
        peer = self._forget(task)
        self.counters["idle_closed"] += 1
        log.debug(
            "wifi syslog: closing the tcp stream from %s, quiet for %.0f s, for a new one from %s",
            peer,
            quiet_s,
            newcomer,
        )
        self._streams[task].close()  # its reader sees the end: what it holds is read, then its task ends

    def _forget(self, task: asyncio.Task[Any]) -> str | None:
        """`task`'s connection no longer counted against the caps (once: at its close for room, or at its end)."""
        peer = self._conns.pop(task, None)
        self._heard.pop(task, None)
        if peer is not None:
            self._peers[peer] -= 1
            if not self._peers[peer]:
                del self._peers[peer]
        return peer

    async def _read(self, reader: asyncio.StreamReader, task: asyncio.Task[Any] | None) -> bytes:
        """The next bytes of a TCP stream, its connection then the last to be closed for room."""
        data = await reader.read(65536)
        if data and task is not None and task in self._conns:
            self._conns.move_to_end(task)
            self._heard[task] = self._monotonic()
        return data

    def line(self, data: bytes, sender: str) -> None:
        """One syslog message from `sender`: parsed, matched, queued if it is an association event."""
        if self.allowed is not None and sender not in self.allowed:
            self.counters["refused_sender"] += 1
            return
        self.counters["lines"] += 1
        now = self.clock()
        try:
            event = decode_wifi_event(data, now=now, patterns=self.patterns)
        except SyslogError as exc:
            self.counters["unparsable"] += 1
            # quoted device text has its MACs masked; an e-mail in it is masked here
            self.last_error = redact.text(f"wifi syslog: dropped a line from {sender}: {exc}")
            self._unparsable.fail(sender, "unparsable", self.last_error, self._until("it sends a line that parses"))
            return
        self._unparsable.ok(sender, "wifi syslog: %s sends lines that parse again", sender)
        if event is None:
            self.counters["ignored"] += 1
            return
        self.counters["events"] += 1
        if self.waiting >= self.max_pending:
            self.counters["refused_queue_full"] += 1
            if self._full.fail(
                "full",
                logging.WARNING,
                "wifi syslog: %d association events wait for the store; refusing new ones until it takes them "
                "(counted in refused_queue_full); last error: %s",
                self.waiting,
                self.last_error,
            ):
                self._refused_before = self.counters["refused_queue_full"] - 1
            return
        if self._full.failing:
            self._full.ok(
                "wifi syslog: taking association events again; %d association events refused while %d waited",
                self.counters["refused_queue_full"] - self._refused_before,
                self.max_pending,
            )
        skew = event.time - now
        year_guessed = False
        if skew < _LEAST_SKEW or skew > MAX_AHEAD or event.time < self._gateway_clock.not_before:
            # a stale clock gives a year-less line its own year, wrong even within the bounds (at 1970-01-01 a
            # right New Year's line would be one of 1970): the year is read after the latest time the box knew
            event, year_guessed = self._redated(data, event, now)
            skew = event.time - now
        if skew < _LEAST_SKEW or skew > MAX_AHEAD:
            if self._gateway_clock.keeps(sender, event.time, now, year_guessed=year_guessed):
                self.counters["gateway_clock_unsynced"] += 1
            else:
                self._device_time_ignored(event, sender, now)
                event = event._replace(time=now)
        else:
            self._clocks.ok(sender, "wifi syslog: %s dates its association events within the bounds again", sender)
            if self._gateway_clock.unsynced:
                self._gateway_clock.check()
        self._pending.append((event, sender))
        self._idle.clear()
        self._wake.set()

    def _redated(self, data: bytes, event: WifiEvent, now: datetime) -> tuple[WifiEvent, bool]:
        """`event`, its RFC 3164 date's year read after the latest time the box knew rather than near the
        gateway's clock, while that clock is stale (`GatewayClock.dates_after`): at 1970 or its build date, the
        year it gives a right December line is 1969 or the build's, behind that time, so the AP's time would be
        replaced by the wrong arrival time. And whether its year is so guessed: the AP's date is then kept only
        near that time (`GatewayClock.keeps`). A line with a year (RFC 5424) comes back the same, not guessed."""
        after = self._gateway_clock.dates_after(now)
        if after is None:
            return event, False
        try:
            msg = parse_syslog(data, now=now, year_after=after)
        except SyslogError:  # parsed once already: only a Feb 29 with no leap year after (2100) fails here
            return event, False
        if msg.format is not SyslogFormat.RFC3164:
            return event, False
        redated = self.patterns.match(msg, now=now)
        return (event, False) if redated is None else (redated, True)

    def _device_time_ignored(self, event: WifiEvent, sender: str, now: datetime) -> None:
        self.counters["device_time_ignored"] += 1
        doubt = self._gateway_clock.doubt(now)
        self._clocks.fail(
            sender,
            "device_time_ignored",
            f"wifi syslog: {sender} dated an association event {event.time.isoformat()}, "
            f"{describe_skew(event.time - now)} the gateway's clock; stored at its arrival time "
            f"{now.isoformat()} instead; set the AP's clock (NTP){'; ' + doubt if doubt else ''}",
            self._until("its clock is right again"),
        )

    def _until(self, end: str) -> str:
        return f"{end} {self._unparsable.quiet_s:g} s or more after the last one"

    async def _write_loop(self, writer: _Writer) -> None:
        while True:
            await self._wake.wait()
            while self.waiting:
                try:
                    stored = await asyncio.to_thread(self._commit, writer)
                except Exception as exc:  # one a retry may mend: the batch stays first in line
                    await self._retry_later(exc)
                    continue
                if stored:
                    self._commit_succeeded()
            self._wake.clear()
            self._idle.set()

    def _take(self) -> None:
        """Fill the batch first in line from the queue, keeping the order the lines came in."""
        while self._pending and len(self._taken) + len(self._ready) < MAX_BATCH:
            # appended before it leaves the queue: `waiting`, read on the loop meanwhile, never counts it out
            self._taken.append(self._pending[0])
            self._pending.popleft()

    def _commit(self, writer: _Writer) -> bool:
        """In a worker thread: the batch first in line, filled from the queue, into the store, then handed on.

        True once stored; False when given up (an error no retry mends), when `writer` was abandoned before
        it began, or when a thread before it left nothing to commit. Raises an error a retry may mend, the
        batch staying first in line. Once a stop abandoned `writer`, no one awaits this any more: the thread
        reports the outcome itself.
        """
        with self._batch_lock:
            if not self._hold(writer):
                return False
            ready = self._ready
            try:
                while self._taken:
                    event, sender = self._taken[0]
                    if self.repeated_leave(event, sender):
                        self.counters["repeated_leaves"] += 1
                    else:
                        ready.extend(self.session_events(event, sender))
                    self._taken.popleft()
                self.store.apply(ready)
            except Exception as exc:
                transient = retryable(exc)
                if not transient:
                    self._give_up(exc)
                if self._let_go(writer, exc) or not transient:
                    return False
                raise
            # stored: nothing from here on may send the writer back to store them again (on_event would see
            # them twice)
            self._ready = []
            self.counters["stored"] += len(ready)
            self._let_go(writer, None)
            self._hand_on(ready)
            return True

    def _hold(self, writer: _Writer) -> bool:
        """The batch first in line filled from the queue and held by `writer`'s thread, unless a stop
        abandoned `writer` (it counted and let go what waited) or there is nothing to commit."""
        with self._state:
            if writer.abandoned:
                return False
            self._take()
            self._held = len(self._taken) + len(self._ready)
            if not self._held:  # stored or given up by a thread before this one
                return False
            self._committing = writer
            return True

    def _let_go(self, writer: _Writer, failure: Exception | None) -> bool:
        """The batch let go by `writer`'s thread after its attempt; whether a stop had abandoned `writer`, the
        outcome then reported here (a failed batch is lost: the stop let go what waited with it)."""
        with self._state:
            self._committing = None
            abandoned = writer.abandoned
            lost = len(self._taken) + len(self._ready) if abandoned and failure is not None else 0
            if lost:
                self._taken.clear()
                self._ready = []
                self.counters["lost"] += lost
        if not abandoned:
            return False
        if failure is None:
            log.info(
                "wifi syslog: the %d association events of the commit still running at the stop are stored after all",
                self._held,
            )
        elif lost:
            self.last_error = f"wifi syslog store: commit failed, got {type(failure).__name__}: {failure}"
            log.error("%s; %d events lost (the commit still running at the stop)", self.last_error, lost)
        return True

    def _hand_on(self, events: list[SessionEvent]) -> None:
        if self.on_event is None:
            return
        failed: list[Exception] = []
        for ev in events:
            try:
                self.on_event(ev)
            except Exception as exc:
                failed.append(exc)
        if not failed:
            self._handing_on.ok("wifi syslog: stored events are handed on again (usage, session events)")
            return
        self.counters["hand_on_failed"] += len(failed)
        first = failed[0]
        self.last_error = f"wifi syslog: handing stored events on failed, got {type(first).__name__}: {first}"
        self._handing_on.fail(
            "failing",
            logging.ERROR,
            "%s; they are in the Wi-Fi log, missing from the usage readings and session events (%d so far)",
            self.last_error,
            self.counters["hand_on_failed"],
        )

    async def _retry_later(self, exc: Exception) -> None:
        self.counters["commit_retries"] += 1
        self.last_error = self._retry.refused(exc, self.waiting)
        await self._retry.pause()

    def _commit_succeeded(self) -> None:
        ended = self._retry.succeeded(self.counters["commit_retries"], self.waiting)
        if ended is not None and self.last_error == ended:
            self.last_error = None

    def _give_up(self, exc: Exception) -> None:
        """In the thread holding the batch, an error a retry cannot mend: the batch is lost, or the one line
        whose session could not be found (the others of its batch are tried again)."""
        if self._taken:
            self._taken.popleft()
            lost = 1
        else:
            lost = len(self._ready)
            self._ready = []
        with self._state:
            self.counters["lost"] += lost
        self.last_error = f"wifi syslog store: commit failed, got {type(exc).__name__}: {exc}"
        log.error("%s; %d events lost", self.last_error, lost)

    @staticmethod
    def _key(ev: WifiEvent, sender: str) -> tuple[str, str]:
        """(NAS, station): the AP as its MAC when the line names it, else the sending host."""
        return f"syslog:{ev.ap_mac.value if ev.ap_mac is not None else ev.hostname or sender}", ev.client_mac.value

    def repeated_leave(self, ev: WifiEvent, sender: str) -> bool:
        """A leave matching no open session, its station having left that AP at that same time: the line again."""
        if ev.kind is AssociationKind.CONNECTED:
            return False
        key = self._key(ev, sender)
        return key not in self._open and self._closed.get(key) == ev.time

    def _session_key(self) -> bytes:
        """The key of the session ids (blocking: the secret store), read once."""
        if self._id_key is None:
            self._id_key = session_key(self.store.secrets, SYSLOG_SESSION_ID)
        return self._id_key

    def _session_id(self, nas: str, mac: str, ev: WifiEvent) -> str:
        return "assoc-" + keyed_digest(self._session_key(), nas, mac, ev.time.isoformat())

    def session_event(self, ev: WifiEvent, sender: str) -> SessionEvent:
        """The line's own session event (`session_events` less the Stop of a forgotten session it may close)."""
        return self.session_events(ev, sender)[-1]

    def session_events(self, ev: WifiEvent, sender: str) -> list[SessionEvent]:
        """The session event of an association line (pairs a leave with its join on the same AP), after the Stop
        of the station's session there whose join was forgotten, when this line is its next join."""
        key = nas, mac = self._key(ev, sender)
        now = self.clock()
        self._expire(now)
        out = []
        if ev.kind is AssociationKind.CONNECTED:
            joined = self._open.get(key)
            if joined is not None:
                # the AP logs a re-association (roaming back, a rekey) as a join: the session goes on, and waits
                # max_session from now, or a station connected a day would be split in two, the first half open
                sid = joined[0]
                self._open[key] = (sid, now)
                self._open.move_to_end(key)
            else:
                sid = self._opened(key, self._session_id(nas, mac, ev))
                stale = self._forgotten.pop(key, None)
                if stale is not None and stale != sid:
                    out.append(self._rejoined(nas, mac, stale, ev))
            kind = EventKind.START
        else:
            joined = self._open.pop(key, None)
            # not kept: the gateway started since its join, or the join was forgotten (max_session, open_kept)
            stale = self._forgotten.pop(key, None)
            found = joined[0] if joined is not None else stale or self.store.open_session_id(nas, mac)
            sid = found if found is not None else self._session_id(nas, mac, ev)  # a leave without its join
            kind = EventKind.STOP
            self._closed[key] = ev.time
            self._closed.move_to_end(key)
            if len(self._closed) > CLOSED_KEPT:
                self._closed.popitem(last=False)
        out.append(
            SessionEvent(
                nas=nas,
                session_id=sid,
                kind=kind,
                time=ev.time,
                source="syslog",
                client_mac=mac,
                ap_mac=ev.ap_mac.value if ev.ap_mac is not None else None,
                ssid=ev.ssid,
            )
        )
        return out

    def _rejoined(self, nas: str, mac: str, sid: str, ev: WifiEvent) -> SessionEvent:
        """The Stop of a forgotten join's session (`sid`) at the station's next join there: it ended by then."""
        self.counters["rejoin_closed"] += 1
        return SessionEvent(
            nas=nas,
            session_id=sid,
            kind=EventKind.STOP,
            time=ev.time,
            source="syslog",
            client_mac=mac,
            ap_mac=ev.ap_mac.value if ev.ap_mac is not None else None,
            terminate_cause=REJOIN_CAUSE,
        )

    def _forget_join(self, key: tuple[str, str], sid: str) -> None:
        """A join given up waiting for its leave: its session is closed at the station's next join there."""
        self._forgotten[key] = sid
        self._forgotten.move_to_end(key)
        if len(self._forgotten) > FORGOTTEN_KEPT:
            self._forgotten.popitem(last=False)

    def _opened(self, key: tuple[str, str], sid: str) -> str:
        """`sid` kept for its leave; the oldest join forgotten past `open_kept` (its leave finds it in the store)."""
        self._open[key] = (sid, self.clock())
        if len(self._open) > self.open_kept:
            gone, (stale, _) = self._open.popitem(last=False)
            self._forget_join(gone, stale)
            self.counters["open_forgotten"] += 1
            self._crowded.fail(
                "full",
                logging.WARNING,
                "wifi syslog: %d joins wait for their leave, far more than a site has stations; forgetting the oldest "
                "(counted in open_forgotten): a station's next join on that AP is a session of its own. If hosts "
                "other than the APs send, list the APs in senders",
                self.open_kept,
            )
        elif len(self._open) <= self.open_kept * 3 // 4:
            self._crowded.ok(
                "wifi syslog: joins waiting for their leave are below %d again (%d forgotten so far)",
                self.open_kept,
                self.counters["open_forgotten"],
            )
        return sid

    def _expire(self, now: datetime) -> None:
        """Joins last seen `max_session` ago or more forgotten: their leave was lost, or the AP rebooted."""
        oldest = now - self.max_session
        while self._open:
            key, (sid, joined) = next(iter(self._open.items()))
            if joined > oldest:
                return
            del self._open[key]
            self._forget_join(key, sid)
            self.counters["open_expired"] += 1

    def diagnostics(self) -> dict[str, Any]:
        c = self.counters
        return {
            **c,
            "malformed": {k: c[k] for k in ("unparsable", "framing_errors", "refused_sender") if c[k]},
            "last_error": self.last_error,
            "waiting": self.waiting,
            "summary": f"lines {c['lines']}, association events stored {c['stored']}",
        }

"""RADIUS accounting receiver: verified requests committed in batches, answered only once durable.

Theory of operation. `datagram_received` verifies each datagram against its NAS's shared secret
(unknown source address or bad authenticator: dropped and counted, never answered) and queues it.
One writer task takes everything queued, converts it to session events, and commits them in one
transaction in a worker thread (`WifiLogStore.apply`: one fsync for the batch); only then are the
Accounting-Responses sent. A NAS that gets no answer retransmits, so nothing is lost across a
kill -9: a request stored before the kill is merged again idempotently and answered.

What is dropped is also logged, per NAS (`SenderSpells`): the first of a spell at WARNING (at most 20 senders a
minute, then a line saying how many more and naming five, each of them warned of at its next trouble there is room for;
a client's trouble whatever the budget), the rest at DEBUG, the end at INFO once that NAS sends a valid request
five minutes or more after its last bad one; the text is kept in `last_error`. An Acct-Delay-Time past
a day (`codec.MAX_DELAY_S`) is not believed: the request is stored at its arrival time, counted in
`device_time_ignored` and logged the same way.

A request is filed at its arrival less Acct-Delay-Time by the gateway's clock; the NAS's Event-Timestamp is
ignored, unless the kernel says that clock is not synchronised (`GatewayClock`, shared with the syslog receiver:
a box without RTC booted before NTP, at 1970 or its build date): then an Event-Timestamp ahead of the gateway's
time and of the latest time the box knew, by at most three years while that clock is stale (one day once it
started this boot after that time: a good RTC without NTP is believed), is the event time, counted in
`gateway_clock_unsynced`; filed at 1970, the sessions would be erased by the next expiry once NTP set the clock.
Accounting-On/Off closes the NAS's sessions at the time so chosen.

Retransmissions (same source, identifier and authenticator, RFC 5080 2.2.2) of a request already
answered get the same response again from a bounded cache; those of a request still waiting or being
committed are counted and dropped (the commit answers the source).

A NAS retransmits an unanswered request only a few times over tens of seconds (RFC 5080 2.2.1: typically
3 to 5 tries), then drops or queues the record depending on the vendor, and the Wi-Fi log is the legally
kept record. So a commit the store refuses for a while (SQLITE_BUSY past the busy timeout while the nightly
backup or `edgegw wifi` maintenance holds the write lock, an I/O error, a full disk) keeps its batch first
in line, in order, its requests' retransmission keys still in flight, and is retried, backing off from
0.5 s to 30 s (`CommitRetry`); each request is answered once stored, whether its NAS still retries or gave
up (a late answer is harmless). A batch is stored a transaction at a time (a NAS reset's closing of its
sessions is one of its own): a part stored is never stored again. Only an error no retry can mend (a closed
store, a damaged file, a bug) drops the rest of the batch unanswered, its keys forgotten, for the NAS's
retransmissions to bring anew. At most `max_pending` requests wait; past that new ones are left unanswered
and counted. `close()` takes no new requests, lets the writer store and answer what waits for up to
`drain_s`, and only then closes the socket and ends the writer: the adapter closes the store after.

The batch is committed in a worker thread, which runs on when its writer task is cancelled. What a stop
leaves unstored is counted in `stopped_unanswered`, but for a commit still running then: no one awaits it any
more, so its thread takes no further part (the store's close may take the store between two) and reports its
own outcome once it ends: stored after all (unanswered, the socket being closed: the NAS's retransmission to
the next run is merged again idempotently, as after a kill -9), or not, then logged and counted there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from adapters.radius.attributes import AcctStatusType
from adapters.radius.codec import (
    MAX_DELAY_S,
    AccountingRequest,
    RetransmissionKey,
    build_accounting_response,
    decode_request,
)
from adapters.radius.errors import RadiusAuthenticatorError, RadiusError
from gateway import redact
from gateway.cancellation import event_set_within
from gateway.device_clock import SYNC_TTL_S, ClockWords, GatewayClock, SyncSource
from gateway.host import clock_synced as kernel_clock_synced
from gateway.logs import SPELL_QUIET_S, SenderSpells, SpellBudget, StateLog, component_logger
from gateway.wifilog.runner import CommitRetry, listen_error, retryable
from gateway.wifilog.sessions import EventKind, SessionEvent
from gateway.wifilog.store import WifiLogStore

__all__ = ["RadiusAccountingServer", "SenderSpells", "session_event"]

log = component_logger(__name__, "radius")

ANSWERED_CACHE = 4096
MAX_BATCH = 2048
# A town's or a library's controller sends a few Accounting-Requests a second at the busiest (Starts, Stops,
# an Interim-Update per session every few minutes; a NAS's retransmissions of a waiting request are not
# queued again, though a vendor that resends a given-up record with a new identifier adds a copy): 20,000
# waiting requests are hours of a store that refuses commits (a night's backup or maintenance gone wrong, a
# failing SD card), time for a technician to act, and cost about 60 MB (3 KB a request as queued, with its
# retransmission key, measured with a controller's Interim-Update) on a box with 1 GB or more.
MAX_PENDING = 20_000
# a stop or reload waits this long for the store to take what was received: one full busy timeout of the
# store, and a bound on how long a stop of the adapter takes
DRAIN_S = 10.0
_UNTIL_VALID = f"it sends a valid Accounting-Request {SPELL_QUIET_S:g} s or more after the last one"
_CLOCK_WORDS = ClockWords(
    where="radius accounting",
    sender="NAS ",
    dated="sent an Accounting-Request with Event-Timestamp",
    kept="the NAS's time",
    otherwise="Event-Timestamp is ignored and Accounting-Requests filed at their arrival less Acct-Delay-Time",
)
_KINDS = {
    AcctStatusType.START: EventKind.START,
    AcctStatusType.INTERIM_UPDATE: EventKind.INTERIM,
    AcctStatusType.STOP: EventKind.STOP,
}


class _Writer:
    """A writer task's standing, shared with its commit's thread: `abandoned` once a stop ended the task,
    `running` the requests its thread then held unstored (the thread's to account for)."""

    __slots__ = ("abandoned", "running")

    def __init__(self) -> None:
        self.abandoned = False
        self.running = 0


def session_event(req: AccountingRequest) -> SessionEvent | None:
    """The session event an accounting request carries (None for On/Off and records without a session)."""
    r = req.record
    status = r.status
    kind = _KINDS.get(status) if status is not None else None
    if kind is None or r.session_id is None:
        return None
    mac, ap = r.client_mac, r.ap_mac
    return SessionEvent(
        nas=req.session_key.nas,
        session_id=r.session_id,
        kind=kind,
        time=req.event_time,
        source="radius",
        client_mac=mac.value if mac is not None else None,
        user_name=r.user_name,
        ap_mac=ap.value if ap is not None else None,
        ssid=r.ssid,
        framed_ip=str(r.framed_ip_address) if r.framed_ip_address is not None else None,
        session_time=r.session_time,
        input_octets=r.input_octets,
        output_octets=r.output_octets,
        terminate_cause=r.terminate_cause_name,
    )


class RadiusAccountingServer(asyncio.DatagramProtocol):
    """One UDP socket; `secrets` maps a NAS source address to its shared secret.

    `clock_synced` says whether the gateway's clock is synchronised (None: unknown), asked at most every
    `sync_ttl_s`; by default the kernel (adjtimex). `not_before`: the latest time the box knew (by default
    `gateway.device_clock.known_floor`), below which a NAS's Event-Timestamp is never believed over the gateway.
    """

    def __init__(
        self,
        store: WifiLogStore,
        secrets: Mapping[str, bytes],
        *,
        clock: Callable[[], datetime],
        on_event: Callable[[SessionEvent], None] | None = None,
        answered_cache: int = ANSWERED_CACHE,
        max_pending: int = MAX_PENDING,
        drain_s: float = DRAIN_S,
        clock_synced: SyncSource = kernel_clock_synced,
        sync_ttl_s: float = SYNC_TTL_S,
        not_before: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.answered_cache = answered_cache
        self.max_pending = max_pending
        self.drain_s = drain_s
        self.store = store
        self.secrets = dict(secrets)
        self.clock = clock
        self.on_event = on_event
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: deque[tuple[AccountingRequest, bytes]] = deque()
        # the batch first in line, taken from `_pending`: the writer's thread stores it a transaction at a time,
        # its first `_done` requests stored (their session events in `_stored`); the rest wait there, in order,
        # until the store took them. Read and refilled on the loop only while no thread holds it.
        self._batch: list[tuple[AccountingRequest, bytes]] = []
        self._done = 0
        self._stored: list[SessionEvent] = []
        # held briefly, by a commit's thread and by the stop: whether a thread holds the batch (`_committing`,
        # its writer), whether that writer was abandoned, `_done` and `stopped_unanswered`, decided at one
        # moment on either side, so each request is counted once
        self._state = threading.Lock()
        self._committing: _Writer | None = None
        self._writer_state: _Writer | None = None
        self._in_flight: set[RetransmissionKey] = set()
        self._answered: OrderedDict[RetransmissionKey, bytes] = OrderedDict()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._retry = CommitRetry(
            log,
            what="radius accounting store",
            kept="Accounting-Requests unanswered",
            items="requests",
            waiting="Accounting-Requests",
        )
        self._full = StateLog(log)  # requests refused for want of room: logged once a spell, and its end
        self._refused_before = 0  # refused_queue_full when the spell began
        # datagrams dropped (unknown client, bad authenticator, malformed), and Acct-Delay-Times not believed: one
        # budget of WARNINGs (any host may send datagrams from many addresses)
        budget = SpellBudget()
        self._dropped = SenderSpells(log, what="radius accounting", clock=monotonic, budget=budget)
        self._delays = SenderSpells(log, what="radius accounting", clock=monotonic, budget=budget)
        self._gateway_clock = GatewayClock(
            log, clock_synced, words=_CLOCK_WORDS, ttl_s=sync_ttl_s, not_before=not_before
        )
        self.last_error: str | None = None
        self.counters: dict[str, int] = {
            "answered": 0,
            "stored": 0,
            "retransmissions": 0,
            "unknown_client": 0,
            "bad_authenticator": 0,
            "malformed": 0,
            "no_session_id": 0,
            "device_time_ignored": 0,  # stored at arrival: Acct-Delay-Time past codec.MAX_DELAY_S
            "gateway_clock_unsynced": 0,  # filed at its Event-Timestamp: the gateway's clock is not synchronised
            "batches": 0,
            "commit_failed": 0,  # requests left unanswered by an error no retry mends
            "commit_retries": 0,  # attempts made again after the store refused a commit
            "refused_queue_full": 0,  # requests left unanswered while max_pending waited
            "refused_stopping": 0,  # new requests left unanswered while a stop stored what waited
            "stopped_unanswered": 0,  # requests a stop left unstored (the store refused for all of drain_s)
        }

    @property
    def waiting(self) -> int:
        """Requests received and not stored yet."""
        return len(self._pending) + len(self._batch) - self._done

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        except OSError as exc:
            raise listen_error(exc, "radius accounting", host, port) from None
        self._writer_state = _Writer()
        self._writer = asyncio.create_task(self._write_loop(self._writer_state), name="radius-writer")
        sockname = transport.get_extra_info("sockname")
        log.info("radius accounting: listening on %s:%d (%d NAS clients)", sockname[0], sockname[1], len(self.secrets))
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        """Take no new requests, store and answer what waits (for up to `drain_s`), then close the socket and
        end the writer.

        The socket stays open meanwhile, as the answers leave through it; the store stays open: its owner
        closes it after this, so no batch meets a closed store. Cancelled meanwhile (a second stop), it ends
        the writer at once. What was not stored is counted in `stopped_unanswered`, but for a commit still
        running in the writer's thread: its thread logs and counts what it does not store.
        """
        self._closing = True
        reason = "stopped before the store took them"
        try:
            if not await self._drained():
                reason = f"the store did not take them within {self.drain_s:g} s"
        except asyncio.CancelledError:
            reason = "stopped again before the store took them"
            raise
        finally:
            if self.transport is not None:
                self.transport.close()
            writer, self._writer = self._writer, None
            state, self._writer_state = self._writer_state, None
            if state is not None:
                self._abandon(state, reason)
            if writer is not None:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def _drained(self) -> bool:
        """Whether the writer stored all that waited within `drain_s` (or had nothing to store)."""
        if self._writer is None or not self.waiting:
            return True
        self._retry.hurry.set()
        return await event_set_within(self._idle, self.drain_s)

    def _abandon(self, writer: _Writer, reason: str) -> None:
        """The stop's account of what was not stored, given just before it cancels `writer`: at the same
        moment as a commit's thread decides whom its outcome goes to."""
        with self._state:
            writer.abandoned = True
            waiting = self.waiting
            running = writer.running = len(self._batch) - self._done if self._committing is writer else 0
            self.counters["stopped_unanswered"] += waiting - running
        if not waiting:
            return
        log.error(
            "radius accounting: stopped with %d Accounting-Requests not stored (%s%s); unanswered, so the NAS "
            "sends them again to the next run if it still retries; last error: %s",
            waiting,
            reason,
            f"; {running} of them in a commit still running: stored if it succeeds, else logged and counted then"
            if running
            else "",
            self.last_error,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport in 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = (str(addr[0]), int(addr[1]))
        secret = self.secrets.get(source[0])
        if secret is None:
            self._drop(
                source[0],
                "unknown_client",
                f"not one of the adapter's clients, got {len(data)} octets from port {source[1]}; add its address "
                "and shared secret to clients if it is a NAS of this site",
                "the adapter is reloaded",
            )
            return
        try:
            req = decode_request(data, secret=secret, now=self.clock(), source=source)
        except RadiusAuthenticatorError as exc:
            self._drop(source[0], "bad_authenticator", str(exc), _UNTIL_VALID)
            return
        except RadiusError as exc:
            self._drop(source[0], "malformed", str(exc), _UNTIL_VALID)
            return
        self._dropped.ok(source[0], "radius accounting: NAS %s sends valid Accounting-Requests again", source[0])
        key = req.retransmission_key
        cached = self._answered.get(key)
        if cached is not None:
            self.counters["retransmissions"] += 1
            self._send(cached, source)
            return
        if key in self._in_flight:
            self.counters["retransmissions"] += 1
            return
        if self._closing:  # what waits is being stored for a bounded time: the NAS retries with the next run
            self.counters["refused_stopping"] += 1
            return
        if len(self._pending) + len(self._batch) - self._done >= self.max_pending:
            self._refuse()
            return
        if self._full.failing:
            self._full.ok(
                "radius accounting: taking Accounting-Requests again; %d refused while %d waited",
                self.counters["refused_queue_full"] - self._refused_before,
                self.max_pending,
            )
        stamp = req.record.event_timestamp
        # only a NAS time ahead of the gateway's can be kept: the common one, the same second, asks nothing
        if stamp is not None and stamp > req.event_time and self._gateway_clock.keeps(source[0], stamp, req.event_time):
            self.counters["gateway_clock_unsynced"] += 1
            req = req._replace(event_time=stamp)
        else:
            if self._gateway_clock.unsynced:
                self._gateway_clock.check()
            if req.delay_ignored:
                self._delay_ignored(req)
            else:
                self._delays.ok(
                    source[0], "radius accounting: NAS %s sends a believable Acct-Delay-Time again", source[0]
                )
        self._in_flight.add(key)
        self._pending.append((req, secret))
        self._idle.clear()
        self._wake.set()

    def _drop(self, sender: str, counter: str, problem: str, until: str) -> None:
        """A datagram dropped unanswered: counted, its problem kept in `last_error` and logged per NAS."""
        self.counters[counter] += 1
        # the codec's errors mask user names and MACs; this catches any e-mail or MAC a NAS's bytes put there
        self.last_error = redact.text(f"radius accounting: dropped a datagram from {sender}: {problem}")
        # a client's trouble has its WARNING whatever the budget: the clients are few, the addresses of a flood not
        self._dropped.fail(sender, counter, self.last_error, until, listed=counter != "unknown_client")

    def _delay_ignored(self, req: AccountingRequest) -> None:
        self.counters["device_time_ignored"] += 1
        sender = req.source[0]
        self._delays.fail(
            sender,
            "device_time_ignored",
            f"radius accounting: NAS {sender} sent an Accounting-Request with Acct-Delay-Time "
            f"{req.record.delay_time} s, more than {MAX_DELAY_S} s (1 day): a NAS fault; stored at its arrival time "
            f"{req.received_at.isoformat()} instead",
            f"its delays are believable again {SPELL_QUIET_S:g} s or more after the last one",
            listed=True,  # its authenticator was right: a client
        )

    def _refuse(self) -> None:
        """Unanswered, and its key not in flight: a retransmission once there is room is taken."""
        self.counters["refused_queue_full"] += 1
        if self._full.fail(
            "full",
            logging.WARNING,
            "radius accounting: %d Accounting-Requests wait for the store; leaving new ones unanswered until it "
            "takes them (counted in refused_queue_full); last error: %s",
            self.waiting,
            self.last_error,
        ):
            self._refused_before = self.counters["refused_queue_full"] - 1

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None  # answers only follow a request, which needs the socket
        self.transport.sendto(data, addr)
        self.counters["answered"] += 1

    async def _write_loop(self, writer: _Writer) -> None:
        while True:
            await self._wake.wait()
            while self.waiting:
                self._take()
                try:
                    await asyncio.to_thread(self._store_batch, writer)
                except Exception as exc:
                    self._answer_stored()  # the parts stored before the refusal
                    if retryable(exc):
                        await self._retry_later(exc)
                    else:
                        self._give_up(exc)
                    continue
                self.counters["batches"] += 1
                self._commit_succeeded()
                self._answer_stored()
            self._wake.clear()
            self._idle.set()

    def _take(self) -> None:
        """Fill the batch first in line from the queue, keeping the order the requests came in."""
        while self._pending and len(self._batch) < MAX_BATCH:
            self._batch.append(self._pending.popleft())

    def _store_batch(self, writer: _Writer) -> None:
        """In a worker thread: the batch first in line into the store, a transaction at a time (a NAS reset's
        on its own), each part marked stored once committed. Raises when the store refused a part; then it
        and the rest stay first in line. Once a stop abandoned `writer`, no one awaits this any more: it takes
        no further part and reports the outcome itself."""
        batch = self._batch
        with self._state:
            if writer.abandoned:  # before it began: the stop counted the batch with the rest
                return
            self._committing = writer
        try:
            while True:
                with self._state:
                    if writer.abandoned or self._done >= len(batch):
                        break
                    start = end = self._done
                end += 1
                if not _resets(batch[start][0]):
                    while end < len(batch) and not _resets(batch[end][0]):
                        end += 1
                stored = self.commit([req for req, _ in batch[start:end]])
                with self._state:
                    self._stored += stored
                    self._done = end
        except Exception as exc:
            if not self._let_go(writer, exc):
                raise
            return
        self._let_go(writer, None)

    def _let_go(self, writer: _Writer, failure: Exception | None) -> bool:
        """The batch let go by `writer`'s thread; whether a stop had abandoned `writer`, the outcome then
        reported here: what the thread stored after the stop, and what it did not (failed, or left for the
        stop) counted in `stopped_unanswered`."""
        with self._state:
            self._committing = None
            abandoned = writer.abandoned
            unstored = len(self._batch) - self._done if abandoned else 0
            self.counters["stopped_unanswered"] += unstored
        if not abandoned:
            return False
        if writer.running > unstored:
            log.info(
                "radius accounting: %d Accounting-Requests of the commit still running at the stop were stored "
                "after all; unanswered, as the socket is closed: the NAS's retransmission to the next run is "
                "merged again and answered",
                writer.running - unstored,
            )
        if unstored:
            if failure is not None:
                self.last_error = f"radius accounting store: commit failed, got {type(failure).__name__}: {failure}"
                why = self.last_error
            else:
                why = "radius accounting: the stop came before their transaction"
            log.error(
                "%s; %d Accounting-Requests of the commit still running at the stop not stored, unanswered "
                "(counted in stopped_unanswered): the NAS sends them again to the next run if it still retries",
                why,
                unstored,
            )
        return True

    async def _retry_later(self, exc: Exception) -> None:
        self.counters["commit_retries"] += 1
        self.last_error = self._retry.refused(exc, self.waiting)
        await self._retry.pause()

    def _commit_succeeded(self) -> None:
        ended = self._retry.succeeded(self.counters["commit_retries"], self.waiting)
        if ended is not None and self.last_error == ended:
            self.last_error = None

    def _give_up(self, exc: Exception) -> None:
        """An error a retry cannot mend: the part of the batch not stored is dropped unanswered."""
        lost, self._batch = self._batch, []
        # unanswered, the NAS retransmits: forget the keys so the retransmission is queued anew
        for req, _ in lost:
            self._in_flight.discard(req.retransmission_key)
        self.counters["commit_failed"] += len(lost)
        self.last_error = f"radius accounting store: commit failed, got {type(exc).__name__}: {exc}"
        log.error("%s; %d requests left unanswered", self.last_error, len(lost))

    def _answer_stored(self) -> None:
        """Answer the requests of the batch first in line that are stored, and hand their events on."""
        done, stored = self._batch[: self._done], self._stored
        del self._batch[: self._done]
        self._done, self._stored = 0, []
        for req, secret in done:
            reply = build_accounting_response(req, secret)
            key = req.retransmission_key
            self._in_flight.discard(key)
            self._answered[key] = reply
            if len(self._answered) > self.answered_cache:
                self._answered.popitem(last=False)
            self._send(reply, req.source)
        # handed on once the NAS has its answers: a consumer that fails (the gateway's buffer
        # refusing a session event stops the adapter) must not leave them unsent
        if self.on_event is not None:
            for ev in stored:
                self.on_event(ev)

    def commit(self, requests: list[AccountingRequest]) -> list[SessionEvent]:
        """Store a batch in order (worker thread): session events together, a NAS reset between them.
        Returns the session events stored, for `on_event` once the batch is answered."""
        stored: list[SessionEvent] = []
        events: list[SessionEvent] = []
        missing = 0  # counted once stored: the writer tries a part the store refused again
        for req in requests:
            status = req.record.status
            if status in (AcctStatusType.ACCOUNTING_ON, AcctStatusType.ACCOUNTING_OFF):
                self.store.apply(events)
                stored += events
                events = []
                self.store.close_nas(req.session_key.nas, req.event_time, "NAS-Reboot")
                continue
            ev = session_event(req)
            if ev is None:
                missing += 1
                continue
            events.append(ev)
        self.store.apply(events)
        stored += events
        self.counters["stored"] += len(stored)
        self.counters["no_session_id"] += missing
        return stored

    def diagnostics(self) -> dict[str, Any]:
        c = self.counters
        malformed = {k: c[k] for k in ("unknown_client", "bad_authenticator", "malformed") if c[k]}
        return {
            **c,
            "malformed": malformed,
            "last_error": self.last_error,
            "in_flight": len(self._in_flight),
            "waiting": self.waiting,
            "summary": f"answered {c['answered']}, stored {c['stored']}, retransmissions {c['retransmissions']}",
        }


def _resets(req: AccountingRequest) -> bool:
    """Accounting-On/Off: the NAS restarted, its open sessions closed in a transaction of their own."""
    return req.record.status in (AcctStatusType.ACCOUNTING_ON, AcctStatusType.ACCOUNTING_OFF)

"""What both Wi-Fi receivers share: the listen address rule, retention keys, the periodic loop (expire
past-retention periods, emit per-AP usage), and the keyed ids of a session: those that leave the box under its
period's key (erased with the period), the syslog receiver's own under a key of the box."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets as _random
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from itertools import islice
from typing import Any

from gateway.cancellation import event_set_within
from gateway.configbase import Field, Section
from gateway.errors import AdapterError
from gateway.logs import StateLog, component_logger
from gateway.processing.api import ProcessorContext
from gateway.processing.pseudonymize import PseudonymizeConfig
from gateway.records import Attribute, Emit, Reading, Source, TimeSource, emit_many
from gateway.secrets import SecretStore
from gateway.wifilog.sessions import SessionEvent
from gateway.wifilog.store import WifiLogStore
from gateway.wifilog.usage import UsageCounter

__all__ = [
    "PENDING_LIMIT",
    "SESSION_EVENT_ID",
    "SYSLOG_SESSION_ID",
    "SessionEventsOut",
    "WifiLogOptions",
    "check_listen",
    "event_sinks",
    "feeds",
    "keyed_digest",
    "listen_error",
    "periodic",
    "session_key",
]

log = component_logger(__name__, "wifilog")


# What a session key is for: each purpose gets a key of its own, so that no id made for one can be matched
# with an id made for another, nor with the store's lookup digests, which hash the same (NAS, session id).
SESSION_EVENT_ID = b"edgegw wifilog session event entity id"
SYSLOG_SESSION_ID = b"edgegw wifi syslog session id"
# The box's key of ids that never leave it in any form but inside the encrypted log (so that after a period's
# erasure no value is left on the box, or on the platform, to test a guessed MAC against with it)
SESSION_IDS_SECRET = "wifilog.session-ids"
BOX_ONLY = frozenset({SYSLOG_SESSION_ID})


def session_key(secrets: SecretStore, purpose: bytes) -> bytes:
    """The key for `purpose`, an id that stays on the box, derived from `secret:wifilog.session-ids`.

    The syslog receiver's session id is made from AP, client MAC and join time, which the platform sees in
    clear but for the MAC: a plain hash would let anyone confirm a MAC, or try a vendor's 16.7 million. The
    id is kept only inside the encrypted log, and the id of what leaves the box about the session is made from
    it under the session's period key (`WifiLogStore.session_keys`): so this key, never rotated nor erased,
    gives the same id after a restart (a join sent again merges with its session) and, once the period is
    erased, finds nothing left to test a guess against. Ids that leave the box must never use it.
    Blocking (the secret store): call it from a thread, or once when a component is built.
    """
    if purpose not in BOX_ONLY:
        raise ValueError(
            f"session_key: only for ids kept on the box, got {purpose.decode()!r}; an id that leaves the box is "
            "keyed by its session's period (WifiLogStore.session_keys), so that the period's erasure takes its key"
        )
    text = secrets.get_or_create(SESSION_IDS_SECRET, lambda: base64.b64encode(_random.token_bytes(32)).decode())
    return hmac.new(base64.b64decode(text), purpose, hashlib.sha256).digest()


def keyed_digest(key: bytes, *parts: str) -> str:
    """96 bits of HMAC-SHA-256 under `key` of `parts`, in hex (as JSON: unambiguous whatever they hold)."""
    return hmac.new(key, json.dumps(parts).encode(), hashlib.sha256).hexdigest()[:24]


def check_listen(v: str) -> str:
    """A receiver binds one configured address: the Wi-Fi's own network, never every interface."""
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"must be an IP address of this box, got {v!r}") from None
    if addr.is_unspecified:
        raise ValueError(f"must be one address of this box (the Wi-Fi network's), not every address, got {v!r}")
    return str(addr)


# SQLite's primary result codes a later attempt may get past: another connection's lock (BUSY, LOCKED, and
# PROTOCOL, a lock race SQLite gave up on), the disk (IOERR, FULL) and a file not openable for now (CANTOPEN).
# SQLITE_ERROR is one too, but means a missing table or bad SQL: a damaged schema or a bug, never mended by
# waiting, and retried it would stop every event or request behind it for good.
_RETRYABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def retryable(exc: Exception) -> bool:
    """Whether a later attempt may succeed: SQLite's busy, locked, I/O, full-disk and cannot-open errors and
    the system's, not a closed store, a damaged file or schema or a bug (each would stop every event or request
    behind it for good): the syslog and RADIUS receivers' rule for a commit kept and tried again."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # absent from errors the sqlite3 module raises itself
        return code is not None and (code & 0xFF) in _RETRYABLE_CODES  # extended codes carry it in the low byte
    return isinstance(exc, OSError)


RETRY_FIRST_S = 0.5  # a lock held a little past the busy timeout is waited out at once
RETRY_MAX_S = 30.0  # a store back after a long failure takes events or requests again within half a minute


class CommitRetry:
    """A receiver's commits the store refuses for a while (`retryable`): the wait before the next attempt,
    RETRY_FIRST_S doubling to RETRY_MAX_S and cut short by `hurry` (a stop), and the spell logged once at its
    start (WARNING) and once at its end (INFO), each attempt between at DEBUG.

    `what` names the store in the messages, `kept` what a refusal keeps (`events`, `Accounting-Requests
    unanswered`), `items` what waits (`events`, `requests`), `waiting` the same in the end's line."""

    def __init__(
        self, log: logging.Logger | logging.LoggerAdapter[Any], *, what: str, kept: str, items: str, waiting: str
    ) -> None:
        self._log = log
        self._what, self._kept, self._items, self._waiting = what, kept, items, waiting
        self._delay = self._next = RETRY_FIRST_S
        self._spell = StateLog(log)
        self.error: str | None = None  # the refusal of the spell under way
        self.hurry = asyncio.Event()

    def refused(self, exc: Exception, waiting: int) -> str:
        """A refused commit, with `waiting` items kept: logged as the spell says, the next delay set; its error
        (for last_error). `pause` then waits that delay."""
        self.error = error = f"{self._what}: commit failed, got {type(exc).__name__}: {exc}"
        self._next, self._delay = self._delay, min(self._delay * 2, RETRY_MAX_S)
        if not self._spell.fail(
            "failing",
            logging.WARNING,
            "%s; keeping %d %s and retrying, first in %g s, then at most every %g s",
            error,
            waiting,
            self._kept,
            self._next,
            RETRY_MAX_S,
        ):
            self._log.debug("%s; retrying in %g s, %d %s waiting", error, self._next, waiting, self._items)
        return error

    async def pause(self) -> None:
        """The delay `refused` set, or until `hurry` is set (a stop: the next attempt now)."""
        await event_set_within(self.hurry, self._next)
        self.hurry.clear()

    def succeeded(self, retries: int, waiting: int) -> str | None:
        """After a commit the store took: the delay back to its first; the error of a spell that just ended."""
        self._delay = RETRY_FIRST_S
        ended = self.error
        if not self._spell.ok(
            "%s: the store takes %s again (%d retries so far); %d %s waiting",
            self._what,
            self._items,
            retries,
            waiting,
            self._waiting,
        ):
            return None
        self.error = None
        return ended


async def shut_down(close_receiver: Callable[[], Awaitable[None]], store: WifiLogStore) -> None:
    """A receiver's adapter ending: the receiver closed first (its sockets, and what they received into the
    store, bounded), then the store (its close waits for a commit still running in a worker thread)."""
    try:
        await close_receiver()
        await asyncio.sleep(0)  # the closed sockets' connection_lost callbacks run before the store goes
    except BaseException:
        # stopped again while the receiver stored what it had: the run ends now, and the store still closes,
        # in a thread, once the commit running there is done
        asyncio.get_running_loop().run_in_executor(None, store.close)
        raise
    # in a thread, as the wait for that commit would stall every adapter and uplink on the loop; shielded,
    # so that a second cancellation ends the run without keeping the close from running
    await asyncio.shield(asyncio.to_thread(store.close))


def listen_error(exc: OSError, what: str, host: str, port: int) -> AdapterError:
    """A receiver's socket that cannot be bound, with what a technician does about it."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        fix = (
            "a port below 1024 needs CAP_NET_BIND_SERVICE: edgegw.service grants it; under supervisord or by "
            "hand use a port of 1024 or more (and set the APs to send there)"
        )
    elif exc.errno == errno.EADDRINUSE:
        fix = "another program has the port (rsyslog, another receiver): stop it or choose another port"
    elif exc.errno == errno.EADDRNOTAVAIL:
        fix = "listen must be an address of this box (ip -br addr)"
    else:
        fix = "check listen and the port"
    return AdapterError(f"{what}: cannot listen on {host}:{port}, got {exc.strerror or exc}; {fix}", port=port)


class WifiLogOptions(Section):
    """Keys of both receivers about the log store (the same store whichever receiver writes)."""

    retention_months: int = Field(
        default=12, ge=1, le=120, description="full months a period is kept after it ends; then it is crypto-erased"
    )
    usage_interval_min: float = Field(default=10.0, gt=0, le=1440, description="per-AP usage sent every N minutes")
    session_events: bool = Field(
        default=False, description="also send each session event, MAC and user name pseudonymized (pz1 tokens)"
    )


async def periodic(
    store: WifiLogStore, usage: UsageCounter, emit: Emit, *, interval_s: float, clock: Callable[[], datetime]
) -> None:
    """Until cancelled: every `interval_s`, erase expired periods, then emit one usage reading per AP."""
    # the signing key is made here, by the gateway, not by the web UI or the CLI on their first export: the
    # secret store is rewritten whole on each change, so two processes adding entries at once could lose one
    await asyncio.to_thread(store.publish_public_key)
    while True:
        certificates = await asyncio.to_thread(store.expire, clock())
        for cert in certificates:
            log.info("wifilog: erasure certificate for %s issued (%d records)", cert["period"], cert["records"])
        readings = usage.readings(clock(), interval_s)
        if readings:  # one burst, committed together: one at a time, a thousand APs took minutes
            await emit_many(emit, readings)
        await asyncio.sleep(interval_s)


SESSION_ENTITY_TYPE = "WifiSessionEvent"
PSEUDONYMIZED = ("clientMac", "userName")


# events waiting for the buffer while it refuses them (caps reached, a failing disk); past this the oldest
# go: each is kept in the Wi-Fi log store whatever happens to its copy for the platform
PENDING_LIMIT = 10_000
ID_BATCH = 256  # events whose id keys are read from the store in one trip to a worker thread


class SessionEventsOut:
    """Optional session events for the platform, MAC and user name already pseudonymized.

    Uses the processing stage's own `pseudonymize` (same `pz1:` tokens, same key ring in the secret
    store), applied here before `emit`, so nothing personal can leave even if no `[[processing]]`
    entry matches these readings (one that does passes the tokens as they are). The entity id is keyed
    too, as a session id may be made from the client MAC: under the key of the period holding the
    session (`WifiLogStore.session_keys`), which its erasure destroys. Events come from a
    store's commit thread (syslog) or the loop once the NAS is answered (RADIUS), always after the store
    took them: `record` is thread-safe and hands them to the loop.

    The adapter keeps one for its lifetime: an event stays first in line until `emit` took it, so a
    buffer that refuses it fails the adapter's run (the supervisor logs it and restarts the adapter)
    and the event goes out after the restart. At most `limit` wait; beyond that the oldest are
    dropped, counted in `dropped` and logged once a spell. An event whose session the log does not hold
    (a late event of an erased period) has no key for its id left: it is not sent, counted in `forgotten`.
    """

    def __init__(self, adapter: str, context: ProcessorContext, *, limit: int = PENDING_LIMIT) -> None:
        cfg = PseudonymizeConfig.model_validate(
            {
                "type": "pseudonymize",
                "attributes": list(PSEUDONYMIZED),
                "kinds": {"clientMac": "mac"},
            }
        )
        self.adapter = adapter
        self.pseudonymizer = cfg.build(context)
        self.limit = limit
        self.dropped = 0
        self.forgotten = 0
        self._dropping = False
        self._forgetting = StateLog(log)
        self._pending: deque[SessionEvent] = deque()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def diagnostics(self) -> dict[str, int]:
        """For the adapter's status: waiting for the buffer, dropped for room, not sent as their period was erased."""
        return {"pending": self.pending, "dropped": self.dropped, "forgotten": self.forgotten}

    def record(self, ev: SessionEvent) -> None:
        self._loop.call_soon_threadsafe(self._add, ev)

    def _add(self, ev: SessionEvent) -> None:
        if len(self._pending) >= self.limit:
            self._pending.popleft()
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "wifilog: %d session events wait for the buffer; dropping the oldest for the platform "
                    "(they stay in the Wi-Fi log store)",
                    self.limit,
                )
        self._pending.append(ev)
        self._wake.set()

    def reading(self, ev: SessionEvent, now: datetime, id_key: bytes) -> Reading:
        """The event for the platform; `id_key`: its session's key from `WifiLogStore.session_keys`."""
        digest = keyed_digest(id_key, ev.nas, ev.session_id)
        attrs: dict[str, Attribute] = {"eventType": Attribute(value=ev.kind.value, type="Text")}
        for name, value in (
            ("clientMac", ev.client_mac),
            ("userName", ev.user_name),
            ("accessPoint", ev.ap_mac or ev.nas),
            ("ssid", ev.ssid),
            ("inputOctets", ev.input_octets),
            ("outputOctets", ev.output_octets),
        ):
            if value is not None:
                attrs[name] = Attribute(value=value)
        raw = Reading(
            entity_id=f"urn:ngsi-ld:{SESSION_ENTITY_TYPE}:{digest}",
            entity_type=SESSION_ENTITY_TYPE,
            attributes=attrs,
            observed_at=ev.time,
            time_source=TimeSource.DEVICE,
            source=Source(adapter=self.adapter, device=ev.nas),
        )
        [out] = self.pseudonymizer.process(raw, now)
        return out

    async def run(self, emit: Emit, clock: Callable[[], datetime], store: WifiLogStore) -> None:
        """Until cancelled, or until `emit` fails: then the event it refused is still first in line. `store`
        holds the events' sessions (the adapter's, which stored them)."""
        self._wake.set()  # events left by an earlier run
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(islice(self._pending, ID_BATCH))
                sessions = [(ev.nas, ev.session_id) for ev in batch]
                keys = await asyncio.to_thread(store.session_keys, SESSION_EVENT_ID, sessions)
                for ev, key in zip(batch, keys, strict=True):
                    # room is made at the front only: an event of the batch no longer first was dropped
                    if not self._pending or self._pending[0] is not ev:
                        continue
                    if key is None:
                        self._pending.popleft()
                        self._forget(ev)
                        continue
                    await emit(self.reading(ev, clock(), key))
                    if self._pending and self._pending[0] is ev:  # not dropped for room meanwhile
                        self._pending.popleft()
                    self._forgetting.ok()
                    if self._dropping:
                        self._dropping = False
                        log.info("wifilog: session events reach the buffer again (%d dropped so far)", self.dropped)

    def _forget(self, ev: SessionEvent) -> None:
        self.forgotten += 1
        if not self._forgetting.fail(
            "forgetting",
            logging.WARNING,
            "wifilog: a session event from NAS %s is not sent: the Wi-Fi log no longer holds its session (its "
            "period was erased), and its id's key went with it (%d such events so far)",
            ev.nas,
            self.forgotten,
        ):
            log.debug("wifilog: a session event from NAS %s is not sent: its session's period was erased", ev.nas)


def event_sinks(
    options: WifiLogOptions,
    adapter: str,
    context: ProcessorContext,
    usage: UsageCounter,
    events: SessionEventsOut | None,
) -> tuple[Callable[[SessionEvent], None], SessionEventsOut | None]:
    """What a receiver calls for each stored event (the usage counter, plus the session events when
    configured), and the session events' queue: `events`, the adapter's from an earlier run, or a new one."""
    if not options.session_events:
        return usage.record, None
    out = events if events is not None else SessionEventsOut(adapter, context)

    def both(ev: SessionEvent) -> None:
        usage.record(ev)
        out.record(ev)

    return both, out


async def feeds(
    store: WifiLogStore,
    usage: UsageCounter,
    events: SessionEventsOut | None,
    emit: Emit,
    *,
    interval_s: float,
    clock: Callable[[], datetime],
) -> None:
    """`periodic` and the session events together, until cancelled or one fails: its error is raised as
    it is (the adapter's run fails with it), and the other is stopped."""
    tasks = [asyncio.ensure_future(periodic(store, usage, emit, interval_s=interval_s, clock=clock))]
    if events is not None:
        tasks.append(asyncio.ensure_future(events.run(emit, clock, store)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

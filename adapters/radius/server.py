"""RADIUS accounting receiver: verified requests committed in batches, answered only once durable.

Theory of operation. `datagram_received` verifies each datagram against its NAS's shared secret
(unknown source address or bad authenticator: dropped and counted, never answered) and queues it.
One writer task takes everything queued, converts it to session events, and commits them in one
transaction in a worker thread (`WifiLogStore.apply`: one fsync for the batch); only then are the
Accounting-Responses sent. A NAS that gets no answer retransmits, so nothing is lost across a
kill -9: a request stored before the kill is merged again idempotently and answered.

Retransmissions (same source, identifier and authenticator, RFC 5080 2.2.2) of a request already
answered get the same response again from a bounded cache; those of a request still being
committed are counted and dropped (the pending commit answers the source).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from adapters.radius.attributes import AcctStatusType
from adapters.radius.codec import AccountingRequest, RetransmissionKey, build_accounting_response, decode_request
from adapters.radius.errors import RadiusAuthenticatorError, RadiusError
from gateway.logs import component_logger
from gateway.wifilog.runner import listen_error
from gateway.wifilog.sessions import EventKind, SessionEvent
from gateway.wifilog.store import WifiLogStore

__all__ = ["RadiusAccountingServer", "session_event"]

log = component_logger(__name__, "radius")

ANSWERED_CACHE = 4096
MAX_BATCH = 2048
_KINDS = {
    AcctStatusType.START: EventKind.START,
    AcctStatusType.INTERIM_UPDATE: EventKind.INTERIM,
    AcctStatusType.STOP: EventKind.STOP,
}


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
    """One UDP socket; `secrets` maps a NAS source address to its shared secret."""

    def __init__(
        self,
        store: WifiLogStore,
        secrets: Mapping[str, bytes],
        *,
        clock: Callable[[], datetime],
        on_event: Callable[[SessionEvent], None] | None = None,
        answered_cache: int = ANSWERED_CACHE,
    ) -> None:
        self.answered_cache = answered_cache
        self.store = store
        self.secrets = dict(secrets)
        self.clock = clock
        self.on_event = on_event
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: deque[tuple[AccountingRequest, bytes]] = deque()
        self._in_flight: set[RetransmissionKey] = set()
        self._answered: OrderedDict[RetransmissionKey, bytes] = OrderedDict()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.counters: dict[str, int] = {
            "answered": 0,
            "stored": 0,
            "retransmissions": 0,
            "unknown_client": 0,
            "bad_authenticator": 0,
            "malformed": 0,
            "no_session_id": 0,
            "batches": 0,
        }

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        except OSError as exc:
            raise listen_error(exc, "radius accounting", host, port) from None
        self._writer = asyncio.create_task(self._write_loop(), name="radius-writer")
        sockname = transport.get_extra_info("sockname")
        log.info("radius accounting: listening on %s:%d (%d NAS clients)", sockname[0], sockname[1], len(self.secrets))
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport in 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = (str(addr[0]), int(addr[1]))
        secret = self.secrets.get(source[0])
        if secret is None:
            self.counters["unknown_client"] += 1
            return
        try:
            req = decode_request(data, secret=secret, now=self.clock(), source=source)
        except RadiusAuthenticatorError:
            self.counters["bad_authenticator"] += 1
            return
        except RadiusError:
            self.counters["malformed"] += 1
            return
        key = req.retransmission_key
        cached = self._answered.get(key)
        if cached is not None:
            self.counters["retransmissions"] += 1
            self._send(cached, source)
            return
        if key in self._in_flight:
            self.counters["retransmissions"] += 1
            return
        self._in_flight.add(key)
        self._pending.append((req, secret))
        self._wake.set()

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None  # answers only follow a request, which needs the socket
        self.transport.sendto(data, addr)
        self.counters["answered"] += 1

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
                try:
                    stored = await asyncio.to_thread(self.commit, [req for req, _ in batch])
                except Exception as exc:
                    # unanswered, the NAS retransmits: forget the keys so the retransmission is queued anew
                    self.counters["commit_failed"] = self.counters.get("commit_failed", 0) + len(batch)
                    self.last_error = f"radius accounting store: commit failed, got {type(exc).__name__}: {exc}"
                    log.error("%s; %d requests left unanswered", self.last_error, len(batch))
                    for req, _ in batch:
                        self._in_flight.discard(req.retransmission_key)
                    continue
                self.counters["batches"] += 1
                for req, secret in batch:
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
                self.counters["no_session_id"] += 1
                continue
            events.append(ev)
        self.store.apply(events)
        self.counters["stored"] += len(events)
        return stored + events

    def diagnostics(self) -> dict[str, Any]:
        c = self.counters
        malformed = {k: c[k] for k in ("unknown_client", "bad_authenticator", "malformed") if c[k]}
        return {
            **c,
            "malformed": malformed,
            "last_error": self.last_error,
            "in_flight": len(self._in_flight),
            "summary": f"answered {c['answered']}, stored {c['stored']}, retransmissions {c['retransmissions']}",
        }

"""Syslog receiver for Wi-Fi association events: UDP datagrams and TCP streams (RFC 6587), stored as sessions.

Theory of operation. Every datagram, or every frame a TCP connection's `FrameSplitter` yields
(octet counting or LF, chosen per frame), is parsed and matched against the vendor patterns
(`patterns.toml`). Lines that are not association events are counted and dropped; a TCP stream
that loses framing sync is closed (RFC 6587 gives no way to resynchronise). Events are queued and
committed in batches by one writer task, like the RADIUS receiver; syslog has no acknowledgement,
so a batch is as durable as the sender's own retries.

Syslog has no session id: a `connected` line opens a session on its AP (the AP's MAC when the line
names it, else the sending host) and the next `disconnected` line of the same station on the same
AP closes it. The session id is a hash of AP, station and join time, never the MAC in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapters.wifi_syslog.codec import decode_wifi_event
from adapters.wifi_syslog.errors import SyslogError
from adapters.wifi_syslog.framing import FrameSplitter
from adapters.wifi_syslog.patterns import AssociationKind, PatternSet, WifiEvent, load_patterns
from gateway.logs import component_logger
from gateway.wifilog.runner import listen_error
from gateway.wifilog.sessions import EventKind, SessionEvent
from gateway.wifilog.store import WifiLogStore

__all__ = ["SyslogReceiver"]

log = component_logger(__name__, "wifi_syslog")

MAX_BATCH = 4096


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.receiver.line(data, str(addr[0]))


class SyslogReceiver:
    """UDP and/or TCP listeners feeding one writer; `allowed` limits which senders are heard (None: any)."""

    def __init__(
        self,
        store: WifiLogStore,
        *,
        clock: Callable[[], datetime],
        patterns: PatternSet | None = None,
        allowed: frozenset[str] | None = None,
        on_event: Callable[[SessionEvent], None] | None = None,
    ) -> None:
        self.on_event = on_event
        self.store = store
        self.clock = clock
        self.patterns = patterns or load_patterns()
        self.allowed = allowed
        self._pending: deque[tuple[WifiEvent, str]] = deque()
        self._open: dict[tuple[str, str], str] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error: str | None = None
        self.counters: dict[str, int] = {
            "lines": 0,
            "events": 0,
            "stored": 0,
            "ignored": 0,
            "unparsable": 0,
            "framing_errors": 0,
            "refused_sender": 0,
        }

    async def start_udp(self, host: str, port: int) -> tuple[str, int]:
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
        try:
            server = await asyncio.start_server(self._stream, host, port)
        except OSError as exc:
            raise listen_error(exc, "wifi syslog tcp", host, port) from None
        self._servers.append(server)
        self._start_writer()
        name = server.sockets[0].getsockname()
        log.info("wifi syslog: listening on tcp %s:%d", name[0], name[1])
        return str(name[0]), int(name[1])

    @property
    def listeners(self) -> int:
        """Sockets open (UDP and TCP)."""
        return len(self._transports) + len(self._servers)

    def _start_writer(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._write_loop(), name="wifi-syslog-writer"))

    async def close(self) -> None:
        for t in self._transports:
            t.close()
        for s in self._servers:
            s.close()
            await s.wait_closed()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def flush(self) -> None:
        """Wait until everything received so far is committed (tests, shutdown)."""
        await self._idle.wait()

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        splitter = FrameSplitter()
        try:
            while data := await reader.read(65536):
                splitter.feed(data)
                while (frame := splitter.next()) is not None:
                    self.line(frame, peer)
            for frame in splitter.close():
                self.line(frame, peer)
        except SyslogError as exc:
            self.counters["framing_errors"] += 1
            self.last_error = str(exc)
            log.warning("wifi syslog: closing the tcp stream from %s (%s)", peer, exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def line(self, data: bytes, sender: str) -> None:
        """One syslog message from `sender`: parsed, matched, queued if it is an association event."""
        if self.allowed is not None and sender not in self.allowed:
            self.counters["refused_sender"] += 1
            return
        self.counters["lines"] += 1
        try:
            event = decode_wifi_event(data, now=self.clock(), patterns=self.patterns)
        except SyslogError:
            self.counters["unparsable"] += 1
            return
        if event is None:
            self.counters["ignored"] += 1
            return
        self.counters["events"] += 1
        self._pending.append((event, sender))
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
                try:
                    await asyncio.to_thread(self._commit, batch)
                except Exception as exc:
                    self.last_error = f"wifi syslog store: commit failed, got {type(exc).__name__}: {exc}"
                    log.error("%s; %d events lost", self.last_error, len(batch))
            self._wake.clear()
            self._idle.set()

    def _commit(self, batch: list[tuple[WifiEvent, str]]) -> None:
        events = [self.session_event(ev, sender) for ev, sender in batch]
        self.store.apply(events)
        self.counters["stored"] += len(events)
        if self.on_event is not None:
            for ev in events:
                self.on_event(ev)

    def session_event(self, ev: WifiEvent, sender: str) -> SessionEvent:
        """The session event of an association line (pairs a leave with its join on the same AP)."""
        mac = ev.client_mac.value
        nas = f"syslog:{ev.ap_mac.value if ev.ap_mac is not None else ev.hostname or sender}"
        key = (nas, mac)
        sid = self._open.get(key)
        if ev.kind is AssociationKind.CONNECTED:
            if sid is None:
                sid = "assoc-" + hashlib.sha256(f"{nas}|{mac}|{ev.time.isoformat()}".encode()).hexdigest()[:24]
                self._open[key] = sid
            kind = EventKind.START
        else:
            sid = self._open.pop(key, None) or self.store.open_session_id(nas, mac)
            if sid is None:  # a leave without its join (the gateway started meanwhile)
                sid = "assoc-" + hashlib.sha256(f"{nas}|{mac}|{ev.time.isoformat()}".encode()).hexdigest()[:24]
            kind = EventKind.STOP
        return SessionEvent(
            nas=nas,
            session_id=sid,
            kind=kind,
            time=ev.time,
            source="syslog",
            client_mac=mac,
            ap_mac=ev.ap_mac.value if ev.ap_mac is not None else None,
            ssid=ev.ssid,
        )

    def diagnostics(self) -> dict[str, Any]:
        c = self.counters
        return {
            **c,
            "malformed": {k: c[k] for k in ("unparsable", "framing_errors", "refused_sender") if c[k]},
            "last_error": self.last_error,
            "summary": f"lines {c['lines']}, association events stored {c['stored']}",
        }

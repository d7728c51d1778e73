"""Subscribes to a local MQTT broker (QoS 1, persistent session) and acks each message only after its commit."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from adapters.mqtt.config import MqttAdapterConfig, MqttProtocol
from adapters.mqtt.malformed import MalformedTopics
from adapters.mqtt.mapping import MalformedReason, Mapper, MappingError
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.errors import AdapterError, ReadingError
from gateway.logs import component_logger
from gateway.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    SUBACK,
    ConnAck,
    Disconnect,
    MqttWireError,
    Packet,
    PacketReader,
    Publish,
    SubAck,
    encode_connect,
    encode_subscribe,
    reason_text,
)
from gateway.records import Emit, Reading, utc_now
from gateway.secrets import resolve
from gateway.tls import client_context

_CONNECT_TIMEOUT_S = 10.0
_SUBSCRIBE_ID = 1  # one SUBSCRIBE per connection: its packet id never collides


@dataclass(slots=True, eq=False)
class _Slot:
    """One received message waiting for its readings' commits before its PUBACK."""

    packet_id: int
    qos: int
    remaining: int = 0
    done: bool = False
    owned: list[asyncio.Future[Any]] | None = None  # tasks we created for coroutine emits


class _Refused(Exception):
    """The broker answered CONNECT with a failure reason."""


class _Link(asyncio.Protocol):
    """One TCP (or TLS) connection to the broker: feeds its bytes to the adapter, says when it closes."""

    def __init__(self, adapter: MqttAdapter, loop: asyncio.AbstractEventLoop, v5: bool) -> None:
        self.adapter = adapter
        self.reader = PacketReader(v5=v5)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[ConnAck] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.accepted = False  # CONNACK said success
        self.paused = False
        self.last_rx = time.monotonic()
        self.goodbye = ""  # the broker's DISCONNECT reason, if it sent one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.reader.feed(data)
        self.adapter._pump(self)

    def connection_lost(self, exc: Exception | None) -> None:
        why = self.goodbye or (str(exc) if exc else "the broker closed the connection")
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(why))
        if not self.closed.done():
            self.closed.set_result(why)
        self.adapter._link_lost(self)

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class MqttAdapter:
    """Maps broker messages to Readings; see README.md for configuration and troubleshooting."""

    config_model: ClassVar[type[AdapterConfig]] = MqttAdapterConfig

    def __init__(
        self, config: AdapterConfig, context: AdapterContext, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(config, MqttAdapterConfig):
            raise TypeError(f"MqttAdapter needs an MqttAdapterConfig, got {type(config).__name__}")
        self.config = config
        self.context = context
        self.client_id = config.effective_client_id(context.gateway_id)
        self.received = 0
        self.emitted = 0
        self.malformed: Counter[str] = Counter()
        self.connected = False  # connected to the broker and subscribed
        self._log = component_logger(__name__, config.name)
        self._mapper = Mapper(config.subscriptions, adapter=config.name)
        self._v5 = config.protocol is MqttProtocol.V5
        # Messages in arrival order; only those of the current connection (packet ids belong to it).
        self._slots: deque[_Slot] = deque()
        self._link: _Link | None = None
        self._emit: Emit | None = None
        self._ever_connected = False
        self._outage_logged = False
        self._bad_topics = MalformedTopics(self._log, clock=clock)
        self._running = False
        self._failure: asyncio.Future[BaseException] | None = None
        # readings waiting for each commit future (the outbox shares one future per commit group)
        self._waiting: dict[asyncio.Future[Any], list[tuple[_Slot, Reading]]] = {}

    @property
    def in_flight(self) -> int:
        """Messages received and not yet acknowledged to the broker."""
        return len(self._slots)

    def diagnostics(self) -> dict[str, Any]:
        """Counters and the topics with the most malformed messages, for status.json (README "State and counters")."""
        return {
            "connected": self.connected,
            "received": self.received,
            "emitted": self.emitted,
            "in_flight": self.in_flight,
            "malformed": dict(self.malformed),
            "malformed_topics": self._bad_topics.top(),
        }

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        tls = self._tls_context()
        password = resolve(self.config.password, self.context.data_dir) if self.config.password is not None else None
        self._emit = emit
        self._failure = loop.create_future()
        self._running = True
        self._log.info("connecting to mqtt://%s:%d as %s", self.config.host, self.config.port, self.client_id)
        session = asyncio.create_task(self._session(loop, tls, password))
        try:
            await asyncio.wait((self._failure, session), return_when=asyncio.FIRST_COMPLETED)
            if session.done():
                session.result()  # the session loop only ends by raising
            raise self._failure.result()
        finally:
            self._running = False
            self.connected = False
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
            link = self._link
            if link is not None:
                # Unacknowledged messages stay in the broker's session and come back on the next connect;
                # acks already written (their readings are committed) are flushed by close().
                link.write(DISCONNECT_PACKET)
                if link.transport is not None:
                    link.transport.close()
            self._link = None
            for slot in self._slots:
                for fut in slot.owned or ():
                    fut.cancel()
            self._slots.clear()
            self._waiting.clear()

    # --- the connection ---------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        if not tls.checks_peer:
            self._log.warning("TLS certificate checks are off for mqtt://%s:%d; use ca_file instead",
                              self.config.host, self.config.port)
        return client_context(tls, f"adapters.{self.config.name}")

    async def _session(self, loop: asyncio.AbstractEventLoop, tls: ssl.SSLContext | None, password: str | None) -> None:
        cfg = self.config
        delay = cfg.reconnect_min_s
        while True:
            try:
                link = await self._connect(loop, tls, password)
            except _Refused as exc:
                if not self._outage_logged:
                    self._log.warning(
                        "broker mqtt://%s:%d refused the connection: %s; retrying with backoff", cfg.host, cfg.port, exc
                    )
                    self._outage_logged = True
            except (OSError, TimeoutError, MqttWireError) as exc:
                why = str(exc) or f"no answer within {_CONNECT_TIMEOUT_S:.0f} s"
                self._log.debug("connecting failed: %s", why)
                if not self._outage_logged:
                    self._log.warning(
                        "cannot reach the broker at mqtt://%s:%d, got %s; retrying with backoff", cfg.host, cfg.port, why
                    )
                    self._outage_logged = True
            else:
                delay = cfg.reconnect_min_s
                why = await self._keep_alive(link)
                if not self._outage_logged:
                    self._log.warning("lost the broker connection: %s; reconnecting with backoff", why)
                    self._outage_logged = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.reconnect_max_s)

    async def _connect(self, loop: asyncio.AbstractEventLoop, tls: ssl.SSLContext | None, password: str | None) -> _Link:
        cfg = self.config
        link = _Link(self, loop, self._v5)
        self._link = link
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await loop.create_connection(
                    lambda: link, cfg.host, cfg.port, ssl=tls, server_hostname=cfg.host if tls else None
                )
                link.write(
                    encode_connect(
                        client_id=self.client_id,
                        keepalive_s=cfg.keepalive_s,
                        v5=self._v5,
                        session_expiry_s=cfg.session_expiry_s,
                        receive_maximum=cfg.max_inflight,
                        username=cfg.username,
                        password=password,
                    )
                )
                connack = await link.connack
        except BaseException:
            link.abort()
            self._link = None
            raise
        if connack.reason:
            link.abort()
            self._link = None
            raise _Refused(reason_text(CONNACK, connack.reason))
        return link

    async def _keep_alive(self, link: _Link) -> str:
        """Pings the broker while the connection lasts; returns why it ended."""
        interval = self.config.keepalive_s
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(link.closed), interval / 2)
            except TimeoutError:
                # Paused reading means the buffer is slow, not the broker: its PINGRESP just waits unread.
                if not link.paused and time.monotonic() - link.last_rx > 1.5 * interval:
                    link.abort()
                    return f"no answer from the broker for {1.5 * interval:.0f} s"
                link.write(PINGREQ_PACKET)

    def _link_lost(self, link: _Link) -> None:
        if link is self._link:
            self.connected = False
            self._link = None
            self._drop_connection()

    def _drop_connection(self) -> None:
        # Packet ids belong to one connection: acks for its messages are never sent on another (the broker
        # redelivers those, and their readings are then stored twice: at-least-once). Their commits go
        # on and settle slots that are no longer listed.
        self._slots.clear()

    # --- packets ----------------------------------------------------------------------------------------

    def _pump(self, link: _Link) -> None:
        """Handles the packets received so far, as long as the in-flight window has room."""
        if link is not self._link:
            return  # a pump scheduled before its connection closed
        reader, slots, limit = link.reader, self._slots, self.config.max_inflight
        try:
            while len(slots) < limit:
                packet = reader.next()
                if packet is None:
                    break
                if type(packet) is Publish:
                    if link.accepted and self._running:
                        self._on_publish(packet)
                else:
                    self._on_control(link, packet)
                if link is not self._link:
                    return  # closed while handling (refused, or the adapter is stopping)
            else:
                # Full window: stop reading so TCP pushes back on the broker, whatever its Receive
                # Maximum handling (mosquitto 2.0.11 overshoots it after the first acks).
                if not link.paused and link.transport is not None:
                    link.paused = True
                    link.transport.pause_reading()
        except MqttWireError as exc:
            # before CONNACK the connect loop reports it, once per outage
            (self._log.error if link.accepted else self._log.debug)("closing the connection: %s", exc)
            link.goodbye = str(exc)
            link.abort()

    def _on_control(self, link: _Link, packet: Packet) -> None:
        if type(packet) is ConnAck:
            if not packet.reason:
                link.accepted = True
                self._on_connected(link, packet.session_present)
            if not link.connack.done():
                link.connack.set_result(packet)
        elif type(packet) is SubAck:
            self.connected = self._running  # ready to receive: a fresh session has no subscriptions before this
            for sub, code in zip(self.config.subscriptions, packet.reasons):
                if code >= 0x80:
                    self._log.error(
                        "broker refused the subscription to %s: %s; check the broker's ACL",
                        sub.topic, reason_text(SUBACK, code),
                    )
        elif type(packet) is Disconnect:
            link.goodbye = reason_text(DISCONNECT, packet.reason)

    def _on_connected(self, link: _Link, session_present: bool) -> None:
        # Runs before any PUBLISH that came in the same read, so none of those lands on an old slot list.
        self._drop_connection()
        # Subscribing again with a kept session is harmless and covers a broker that lost it.
        link.write(encode_subscribe(_SUBSCRIBE_ID, [s.topic for s in self.config.subscriptions], v5=self._v5))
        if self._outage_logged or self._ever_connected:
            self._log.info("reconnected to the broker (session kept: %s)", session_present)
        else:
            self._log.info("connected to the broker (session kept: %s)", session_present)
        self._ever_connected = True
        self._outage_logged = False

    def _on_publish(self, msg: Publish) -> None:
        self.received += 1
        slot = _Slot(packet_id=msg.packet_id, qos=msg.qos)
        self._slots.append(slot)
        try:
            topic = msg.topic.decode("utf-8")
        except UnicodeDecodeError:
            self._drop(slot, "(not UTF-8)", MalformedReason.BAD_TOPIC.value, "topic is not valid UTF-8")
            return
        try:
            readings = self._mapper.map(topic, msg.payload, utc_now())
        except MappingError as exc:
            self._drop(slot, topic, exc.reason.value, str(exc))
            return
        if self._bad_topics.open and topic in self._bad_topics.open:
            self._bad_topics.good(topic)
        slot.remaining = len(readings)
        emit = cast(Emit, self._emit)
        for reading in readings:
            self._emit_one(emit, slot, reading)

    # --- commits and acks -------------------------------------------------------------------------------

    def _emit_one(self, emit: Emit, slot: _Slot, reading: Reading) -> None:
        try:
            awaitable: Awaitable[None] = emit(reading)
        except ReadingError as exc:
            self._count_rejected(slot, reading, exc)
            self._ack_ready()
            return
        except Exception as exc:  # noqa: BLE001 - any other emit failure stops the adapter, unacked
            self._fail(exc)
            return
        if isinstance(awaitable, asyncio.Future):
            fut: asyncio.Future[Any] = awaitable
        else:
            fut = asyncio.ensure_future(awaitable)
            if asyncio.iscoroutine(awaitable):  # a task of ours: cancelled when the adapter stops
                if slot.owned is None:
                    slot.owned = []
                slot.owned.append(fut)
        # The outbox returns one future per commit group: one callback settles every reading of it.
        waiting = self._waiting.get(fut)
        if waiting is None:
            self._waiting[fut] = [(slot, reading)]
            fut.add_done_callback(self._committed)
        else:
            waiting.append((slot, reading))

    def _committed(self, fut: asyncio.Future[Any]) -> None:
        waiting = self._waiting.pop(fut, [])
        if not self._running:
            return
        if fut.cancelled():
            self._fail(AdapterError(f"{self.config.name}: a buffer commit was cancelled", adapter=self.config.name))
            return
        exc = fut.exception()
        if exc is not None and not isinstance(exc, ReadingError):
            self._fail(exc)
            return
        for slot, reading in waiting:
            if isinstance(exc, ReadingError):
                self._count_rejected(slot, reading, exc)
            else:
                self.emitted += 1
                slot.remaining -= 1
                if slot.remaining <= 0:
                    slot.done = True
        self._ack_ready()

    def _count_rejected(self, slot: _Slot, reading: Reading, exc: ReadingError) -> None:
        # The buffer refused the reading as invalid: redelivery would be refused the same way.
        self.malformed["rejected"] += 1
        self._bad_topics.bad(reading.source.device, "rejected", str(exc))
        slot.remaining -= 1
        if slot.remaining <= 0:
            slot.done = True

    def _drop(self, slot: _Slot, topic: str, reason: str, message: str) -> None:
        self.malformed[reason] += 1
        self._bad_topics.bad(topic, reason, message)
        slot.done = True
        self._ack_ready()

    def _ack_ready(self) -> None:
        # MQTT wants PUBACKs in the order the PUBLISHes came: ack the done prefix, in one write.
        slots = self._slots
        if not slots or not slots[0].done:
            return
        acks = bytearray()
        while slots and slots[0].done:
            slot = slots.popleft()
            if slot.qos:
                pid = slot.packet_id
                acks += bytes((0x40, 2, pid >> 8, pid & 0xFF))
        link = self._link
        if link is None or not self._running:
            return
        if acks:
            link.write(acks)
        if link.paused and len(slots) < self.config.max_inflight:
            link.paused = False
            if link.transport is not None:
                link.transport.resume_reading()
            # packets already read but left in the reader while the window was full
            asyncio.get_running_loop().call_soon(self._pump, link)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is not None and not self._failure.done():
            self._log.error("stopping: emit failed (%s); unacknowledged messages stay with the broker", exc)
            self._failure.set_result(exc)

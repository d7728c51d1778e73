"""Subscribes to a local MQTT broker (QoS 1, persistent session) and acks each message only after its commit.

Theory of operation: one `gateway.mqtt.client.MqttClient` per connection, in subscriber mode. Each
PUBLISH becomes a slot in arrival order; its readings go to `emit`, and when the commits of every
reading of a slot are done the slot is done. The done prefix of the slots is acknowledged in one write
(MQTT wants PUBACKs in arrival order), so nothing is acknowledged before it is on disk. At
`max_inflight` slots the client's reading is paused (TCP then holds the broker back) and resumed when
acks free the window. Packet ids belong to one connection: when it goes, its slots are forgotten and
their messages come back from the broker's session on the next connection (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from adapters.jsonmap.ahead import AheadKeeper
from adapters.jsonmap.timestamps import MAX_AHEAD
from adapters.mqtt.config import MqttAdapterConfig, MqttProtocol, RetainedMessages
from adapters.mqtt.malformed import MalformedTopics
from adapters.mqtt.mapping import MalformedReason, Mapper, MappingError, topic_matches
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.cancellation import cancel_and_wait
from gateway.device_clock import ClockWords, SyncSource
from gateway.errors import AdapterError, ReadingError
from gateway.host import clock_synced as kernel_clock_synced
from gateway.logs import StateLog, component_logger
from gateway.mqtt.client import ClientSettings, ConnectFailed, ConnectionLost, ConnectRefused, MqttClient
from gateway.mqtt.packets import (
    CONNACK,
    RETAIN_IF_NEW,
    RETAIN_NEVER,
    SUBACK,
    PacketTooLarge,
    Publish,
    TooLarge,
    reason_text,
)
from gateway.records import Emit, EmitFlush, EmitMany, Reading, utc_now
from gateway.secrets import resolve
from gateway.tls import client_context

_CONNECT_TIMEOUT_S = 10.0
_OUTAGE = "outage"
_CLOCK_WORDS = ClockWords(
    where="mqtt",
    sender="entity ",
    dated="observed at",
    kept="the device's time",
    otherwise=f"device times more than {MAX_AHEAD.seconds // 60} min ahead of it are refused",
)


@dataclass(slots=True, eq=False)
class _Slot:
    """One received message waiting for its readings' commits before its PUBACK."""

    packet_id: int
    qos: int
    remaining: int = 0
    done: bool = False
    owned: list[asyncio.Future[Any]] | None = None  # tasks we created for coroutine emits


class MqttAdapter:
    """Maps broker messages to Readings; see README.md for configuration and troubleshooting."""

    config_model: ClassVar[type[AdapterConfig]] = MqttAdapterConfig

    def __init__(
        self,
        config: AdapterConfig,
        context: AdapterContext,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        clock_synced: SyncSource = kernel_clock_synced,
        not_before: datetime | None = None,
    ) -> None:
        if not isinstance(config, MqttAdapterConfig):
            raise TypeError(f"MqttAdapter needs an MqttAdapterConfig, got {type(config).__name__}")
        self.config = config
        self.context = context
        self.client_id = config.effective_client_id(context.gateway_id)
        self.received = 0
        self.emitted = 0
        self.retained_skipped = 0  # retained copies replayed at subscribe, acknowledged without a reading
        self.malformed: Counter[str] = Counter()
        self.connected = False  # connected to the broker and subscribed
        self._rng = random.Random()  # the jitter of the reconnect probe
        self._log = component_logger(__name__, config.name)
        self._wall_clock = wall_clock  # the gateway's clock, read once per socket read (see _on_publish)
        # whether a device time ahead of the gateway's clock may be kept (adapters.jsonmap.ahead, as http_poll and the
        # Wi-Fi receivers): while the kernel says that clock is not synchronised, it may be the wrong one
        self._ahead = AheadKeeper(self._log, clock_synced, words=_CLOCK_WORDS, not_before=not_before)
        self._mapper = Mapper(config.subscriptions, adapter=config.name, keeps_ahead=self._ahead)
        # A retained message maps by the subscriptions that take them only (README "What it guarantees").
        taking = [s for s in config.subscriptions if s.retained is RetainedMessages.TAKE]
        self._taking = [tuple(s.topic.split("/")) for s in taking]
        self._retained_mapper = Mapper(taking, adapter=config.name, keeps_ahead=self._ahead) if taking else None
        # v5 brokers are told not to replay retained messages to the skipping subscriptions at all
        self._retain_handling = [
            RETAIN_NEVER if s.retained is RetainedMessages.SKIP else RETAIN_IF_NEW for s in config.subscriptions
        ]
        # Messages in arrival order; only those of the current connection (packet ids belong to it).
        self._slots: deque[_Slot] = deque()
        self._client: MqttClient | None = None
        self._emit: Emit | None = None
        self._many: EmitMany | None = None
        self._seal: EmitFlush | None = None
        self._burst: list[tuple[_Slot, Reading]] = []  # readings of the socket read being handled
        self._arrived: datetime | None = None  # when the socket read being handled came in (see _on_publish)
        self._ever_connected = False
        # one outage, one WARNING: refused, unreachable and lost are the same spell until connected again
        self._link = StateLog(self._log)
        self._bad_topics = MalformedTopics(self._log, clock=clock)
        self._running = False
        self._failure: asyncio.Future[BaseException] | None = None
        # readings waiting for each commit future (the outbox shares one future per commit group)
        self._waiting: dict[asyncio.Future[Any], list[tuple[_Slot, Reading]]] = {}

    @property
    def in_flight(self) -> int:
        """Messages received and not yet acknowledged to the broker."""
        return len(self._slots)

    @property
    def gateway_clock_unsynced(self) -> int:
        """Device times ahead kept as the gateway's clock is not synchronised (a counter)."""
        return self._ahead.kept

    def diagnostics(self) -> dict[str, Any]:
        """Counters and the topics with the most malformed messages, for status.json (README "State and counters")."""
        return {
            "connected": self.connected,
            "received": self.received,
            "emitted": self.emitted,
            "retained_skipped": self.retained_skipped,
            "gateway_clock_unsynced": self._ahead.kept,
            "in_flight": self.in_flight,
            "malformed": dict(self.malformed),
            "malformed_topics": self._bad_topics.top(),
        }

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        tls = self._tls_context()
        password = resolve(self.config.password, self.context.data_dir) if self.config.password is not None else None
        self._emit = emit
        self._many = getattr(emit, "many", None)  # the gateway's emit takes bursts (gateway.records.emit_many)
        self._seal = getattr(emit, "flush", None)  # and commits at once when asked (gateway.records.EmitFlush)
        self._failure = loop.create_future()
        self._running = True
        self._log.info("connecting to mqtt://%s:%d as %s", self.config.host, self.config.port, self.client_id)
        session = asyncio.create_task(self._session(self._settings(tls, password)))
        try:
            await asyncio.wait((self._failure, session), return_when=asyncio.FIRST_COMPLETED)
            if session.done():
                session.result()  # the session loop only ends by raising
            raise self._failure.result()
        finally:
            self._running = False
            self.connected = False
            await cancel_and_wait(session)
            client, self._client = self._client, None
            if client is not None:
                # Unacknowledged messages stay in the broker's session and come back on the next connect;
                # acks already written (their readings are committed) go out before the socket closes.
                client.close()
            for slot in self._slots:
                for fut in slot.owned or ():
                    fut.cancel()
            self._slots.clear()
            self._waiting.clear()
            self._burst.clear()
            self._arrived = None

    # --- the connection ---------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        if not tls.checks_peer:
            self._log.warning(
                "TLS certificate checks are off for mqtt://%s:%d; use ca_file instead",
                self.config.host,
                self.config.port,
            )
        return client_context(tls, f"adapters.{self.config.name}")

    def _settings(self, tls: ssl.SSLContext | None, password: str | None) -> ClientSettings:
        cfg = self.config
        return ClientSettings(
            host=cfg.host,
            port=cfg.port,
            client_id=self.client_id,
            v5=cfg.protocol is MqttProtocol.V5,
            keepalive_s=cfg.keepalive_s,
            username=cfg.username,
            password=password,
            tls=tls,
            session_expiry_s=cfg.session_expiry_s,
            receive_maximum=cfg.max_inflight,
            max_packet_bytes=cfg.max_message_bytes,
            connect_timeout_s=_CONNECT_TIMEOUT_S,
        )

    async def _session(self, settings: ClientSettings) -> None:
        cfg = self.config
        delay = cfg.reconnect_min_s
        while True:
            # Packet ids belong to one connection: acks for an old one's messages are never sent on
            # another (the broker redelivers those, and their readings are then stored twice:
            # at-least-once). Their commits go on and settle slots that are no longer listed.
            self._slots.clear()
            client = MqttClient(
                settings, on_publish=self._on_publish, on_handed_out=self._flush, on_too_large=self._on_too_large
            )
            # set before connect(): PUBLISHes the broker sends right behind CONNACK are handed out at once
            self._client = client
            try:
                connack = await client.connect()
            except ConnectRefused as exc:
                self._client = None
                self._link.fail(
                    _OUTAGE,
                    logging.WARNING,
                    "broker mqtt://%s:%d refused the connection: %s; retrying with backoff",
                    cfg.host,
                    cfg.port,
                    reason_text(CONNACK, exc.code),
                )
            except ConnectFailed as exc:
                self._client = None
                self._log.debug("connecting failed: %s", exc.reason)
                self._link.fail(
                    _OUTAGE,
                    logging.WARNING,
                    "cannot reach the broker at mqtt://%s:%d, got %s; trying again every %g s",
                    cfg.host,
                    cfg.port,
                    exc.reason,
                    min(cfg.reconnect_max_s, cfg.probe_s),
                )
                # No connection at all: a probe costs the broker nothing, so keep the delay short
                # (delivery resumes within seconds of the broker coming back, issue 18); the
                # doubling up to reconnect_max_s is for a broker that answers and refuses us.
                await asyncio.sleep(min(delay, cfg.probe_s) * self._rng.uniform(0.5, 1.0))
                delay = min(delay * 2, cfg.reconnect_max_s)
                continue
            else:
                delay = cfg.reconnect_min_s
                self._on_connected(connack.session_present)
                why = await self._subscribed(client)
                self.connected = False
                if isinstance(client.wire_error, PacketTooLarge):
                    # a v5 broker that sent what it was told not to: the message that cost the connection
                    self.malformed[MalformedReason.TOO_LARGE.value] += 1
                if self._client is client:
                    self._client = None
                    self._slots.clear()
                self._link.fail(
                    _OUTAGE, logging.WARNING, "lost the broker connection: %s; reconnecting with backoff", why
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.reconnect_max_s)

    def _on_connected(self, session_present: bool) -> None:
        again = self._link.state is _OUTAGE or self._ever_connected
        self._link.ok()
        self._log.info("%s to the broker (session kept: %s)", "reconnected" if again else "connected", session_present)
        self._ever_connected = True

    async def _subscribed(self, client: MqttClient) -> str:
        """Subscribes (again: harmless with a kept session, and it covers a broker that lost it), then
        waits for the connection to end; returns why it ended."""
        try:
            # No timeout: with a kept session the SUBACK may queue behind a full window of messages,
            # and the client's keepalive notices a broker that went silent.
            codes = await client.subscribe(
                [s.topic for s in self.config.subscriptions], timeout=None, retain_handling=self._retain_handling
            )
        except ConnectionLost:
            pass
        else:
            self.connected = self._running  # ready to receive: a fresh session has no subscriptions before this
            for sub, code in zip(self.config.subscriptions, codes, strict=False):
                if code >= 0x80:
                    self._log.error(
                        "broker refused the subscription to %s: %s; check the broker's ACL",
                        sub.topic,
                        reason_text(SUBACK, code),
                    )
        return await asyncio.shield(client.lost)  # cancelling us must not cancel the client's future

    # --- packets ----------------------------------------------------------------------------------------

    def _on_publish(self, msg: Publish) -> None:
        if not self._running:
            return  # stopping: left unacknowledged, the broker redelivers it
        self.received += 1
        slot = _Slot(msg.packet_id, msg.qos)  # positional: keywords cost ~0.2 µs a message
        slots = self._slots
        slots.append(slot)
        if len(slots) >= self.config.max_inflight:
            # Full window: stop reading so TCP pushes back on the broker, whatever its Receive
            # Maximum handling (mosquitto 2.0.11 overshoots it after the first acks).
            cast(MqttClient, self._client).pause_reading()
        try:
            topic = msg.topic.decode("utf-8")
        except UnicodeDecodeError:
            self._drop(slot, "(not UTF-8)", MalformedReason.BAD_TOPIC.value, "topic is not valid UTF-8")
            return
        mapper = self._mapper
        if msg.retain:  # a stored copy replayed because we subscribed, not live data (see _retained)
            retained = self._retained(slot, topic)
            if retained is None:
                return
            mapper = retained
        # The messages of one socket read came in together: they share its arrival time, taken at
        # the first of them. A time a message made the work of the ones before it in the read
        # (up to ~2,000 of them draining a backlog) part of its "arrival", and cost each reading
        # its own conversions downstream (epoch, ISO text, the check), where one shared datetime
        # is converted once.
        now = self._arrived
        if now is None:
            now = self._arrived = self._wall_clock()
            self._ahead.check()
        try:
            readings = mapper.map(topic, msg.payload, now)
        except MappingError as exc:
            self._drop(slot, topic, exc.reason.value, str(exc))
            return
        if self._bad_topics.open and topic in self._bad_topics.open:
            self._bad_topics.good(topic)
        slot.remaining = len(readings)
        if self._many is None:
            emit = cast(Emit, self._emit)
            for reading in readings:
                self._emit_one(emit, slot, reading)
            self._seal_if_blocked()
            return
        # The messages of one socket read arrive in one go: their readings go to the buffer as one
        # burst, emitted once the client has handed the read out (one call and one commit future
        # instead of one each; the client calls _flush then, without a loop turn of its own).
        if len(readings) == 1:
            self._burst.append((slot, readings[0]))  # the usual message: no generator to resume
        else:
            self._burst.extend((slot, reading) for reading in readings)

    def _retained(self, slot: _Slot, topic: str) -> Mapper | None:
        """The mapper for a retained message, or None when no subscription of its topic takes them: then
        it is skipped, counted and acknowledged in its turn (left unacknowledged it would come back)."""
        if self._retained_mapper is not None and any(topic_matches(f, topic) for f in self._taking):
            return self._retained_mapper
        self.retained_skipped += 1
        # the topic only: a replayed payload is no more the log's business than a live one
        self._log.debug("%s: skipped a retained message (an old value replayed at subscribe)", topic)
        slot.done = True
        self._ack_ready()
        return None

    def _on_too_large(self, msg: TooLarge) -> None:
        # An MQTT 3.1.1 broker's message over max_message_bytes, skipped unread by the client: dropped,
        # counted and acknowledged in its turn like a malformed one, or it would come back after every
        # reconnect (a v5 broker is told the limit and drops such messages itself).
        if not self._running:
            return
        self.received += 1
        slot = _Slot(msg.packet_id, msg.qos)
        self._slots.append(slot)
        if len(self._slots) >= self.config.max_inflight:
            cast(MqttClient, self._client).pause_reading()
        topic = msg.topic.decode("utf-8", "replace")
        self._drop(slot, topic, MalformedReason.TOO_LARGE.value, f"{msg}; raise max_message_bytes to take them")

    def _flush(self) -> None:
        self._arrived = None  # the next read is a new arrival
        burst, self._burst = self._burst, []
        if not burst or not self._running:
            return  # stopping: their messages stay unacknowledged and the broker redelivers them
        try:
            readings = [burst[0][1]] if len(burst) == 1 else [reading for _, reading in burst]
            awaitable = cast(EmitMany, self._many)(readings)
        except ReadingError:
            # an emit that refuses a burst for one reading (the gateway's never does: it counts and
            # drops invalid readings itself): each reading on its own, so only the bad one is refused
            emit = cast(Emit, self._emit)
            for slot, reading in burst:
                self._emit_one(emit, slot, reading)
            return
        except Exception as exc:  # an emit failure stops the adapter, unacked
            self._fail(exc)
            return
        self._await_commit(awaitable, burst)
        self._seal_if_blocked()

    def _seal_if_blocked(self) -> None:
        # A full window: the broker sends nothing more until PUBACKs, and they wait for this commit;
        # the buffer's group would otherwise wait out its quiet time for readings that cannot come
        # (bench/mqtt_ingest_bench.py: 82-100 % of paho's rate without this, 109-134 % with it).
        client = self._client
        if self._seal is not None and client is not None and client.reading_paused:
            self._seal()

    # --- commits and acks -------------------------------------------------------------------------------

    def _emit_one(self, emit: Emit, slot: _Slot, reading: Reading) -> None:
        try:
            awaitable: Awaitable[None] = emit(reading)
        except ReadingError as exc:
            self._count_rejected(slot, reading, exc)
            self._ack_ready()
            return
        except Exception as exc:  # any other emit failure stops the adapter, unacked
            self._fail(exc)
            return
        self._await_commit(awaitable, [(slot, reading)])

    def _await_commit(self, awaitable: Awaitable[None], pending: list[tuple[_Slot, Reading]]) -> None:
        if isinstance(awaitable, asyncio.Future):
            fut: asyncio.Future[Any] = awaitable
        else:
            fut = asyncio.ensure_future(awaitable)
            if asyncio.iscoroutine(awaitable):  # a task of ours: cancelled when the adapter stops
                slot = pending[-1][0]
                if slot.owned is None:
                    slot.owned = []
                slot.owned.append(fut)
        # The outbox returns one future per commit group: one callback settles every reading of it.
        waiting = self._waiting.get(fut)
        if waiting is None:
            self._waiting[fut] = pending
            fut.add_done_callback(self._committed)
        else:
            waiting.extend(pending)

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
        acks: list[int] = []
        while slots and slots[0].done:
            slot = slots.popleft()
            if slot.qos:
                acks.append(slot.packet_id)
        client = self._client
        if client is None or not self._running:
            return
        client.ack(acks)
        if client.reading_paused and len(slots) < self.config.max_inflight:
            client.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is not None and not self._failure.done():
            self._log.error("stopping: emit failed (%s); unacknowledged messages stay with the broker", exc)
            self._failure.set_result(exc)

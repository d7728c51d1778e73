"""Subscribes to a local MQTT broker (QoS 1, persistent session) and acks each message only after its commit."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt.config import MqttAdapterConfig, MqttProtocol
from adapters.mqtt.mapping import MalformedReason, Mapper, MappingError
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.errors import AdapterError, ReadingError
from gateway.logs import component_logger
from gateway.records import Emit, Reading, utc_now
from gateway.secrets import resolve

# Topics remembered as "in a malformed episode"; bounded because a wildcard can match unbounded topics.
_EPISODE_TOPICS = 1024


@dataclass(slots=True, eq=False)
class _Slot:
    """One received message waiting for its readings' commits before its PUBACK."""

    mid: int
    qos: int
    generation: int
    remaining: int = 0
    done: bool = False
    owned: list[asyncio.Future[Any]] = field(default_factory=list)


class MqttAdapter:
    """Maps broker messages to Readings; see README.md for configuration and troubleshooting."""

    config_model: ClassVar[type[AdapterConfig]] = MqttAdapterConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
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
        self._slots: deque[_Slot] = deque()
        self._generation = 0
        self._ever_connected = False
        self._outage_logged = False
        self._bad_topics: OrderedDict[str, None] = OrderedDict()
        self._client: paho.Client | None = None
        self._running = False
        self._failure: asyncio.Future[BaseException] | None = None
        # One permit per message between paho's thread and its ack. Receive Maximum asks the broker for
        # the same bound, but mosquitto 2.0.11 overshoots it after the first acks; holding paho's thread
        # here pushes back through TCP instead, whatever the broker or protocol version.
        self._window = threading.Semaphore(config.max_inflight)
        self._stopping = threading.Event()
        self._inbox: deque[Callable[[], None]] = deque()
        self._drain_scheduled = False
        # readings waiting for each commit future (the outbox shares one future per commit group)
        self._waiting: dict[asyncio.Future[Any], list[tuple[_Slot, Reading]]] = {}

    @property
    def in_flight(self) -> int:
        """Messages received and not yet acknowledged to the broker."""
        return len(self._slots)

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        client = self._build_client(loop, emit)
        self._client = client
        self._running = True
        self._stopping.clear()
        self._window = threading.Semaphore(self.config.max_inflight)  # fresh permits for every run
        cfg = self.config
        if cfg.protocol is MqttProtocol.V5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = cfg.max_inflight
            client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
        else:
            client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
        self._log.info("connecting to mqtt://%s:%d as %s", cfg.host, cfg.port, self.client_id)
        client.loop_start()
        try:
            raise await self._failure
        finally:
            self._running = False
            self._stopping.set()
            self.connected = False
            # Unacknowledged messages stay in the broker's session and come back on the next connect.
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            for slot in self._slots:
                for fut in slot.owned:
                    fut.cancel()
            self._release(len(self._slots))
            self._slots.clear()
            self._waiting.clear()
            self._inbox.clear()
            self._client = None

    # --- building the paho client --------------------------------------------------------------------

    def _build_client(self, loop: asyncio.AbstractEventLoop, emit: Emit) -> paho.Client:
        cfg = self.config
        v5 = cfg.protocol is MqttProtocol.V5
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if cfg.username is not None:
            password = resolve(cfg.password, self.context.data_dir) if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            try:
                client.tls_set(
                    ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                    certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                    keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise AdapterError(
                    f"{cfg.name}.tls: cannot load the certificate files, got {exc}; check the paths and permissions",
                    adapter=cfg.name,
                ) from None
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        # Callbacks run in paho's network thread: hand everything to the event loop, touch no state there.
        def on_connect(c: paho.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
            self._paho_connect(loop, c, rc, flags.session_present)

        def on_connect_fail(c: paho.Client, u: Any) -> None:
            self._to_loop(loop, self._on_connect_fail)

        def on_disconnect(c: paho.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
            self._to_loop(loop, partial(self._on_disconnect, rc))

        def on_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
            self._paho_message(loop, emit, msg)

        def on_subscribe(c: paho.Client, u: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
            self._to_loop(loop, partial(self._on_subscribe, rcs))

        # Callbacks run in paho's network thread: they hand everything to the event loop and touch no state.
        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        return client

    def _paho_connect(self, loop: asyncio.AbstractEventLoop, client: paho.Client, rc: ReasonCode, present: bool) -> None:
        if not rc.is_failure:
            # Subscribing again with a kept session is harmless and covers a broker that lost it.
            if self.config.protocol is MqttProtocol.V5:
                opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
                client.subscribe([(s.topic, opts) for s in self.config.subscriptions])
            else:
                client.subscribe([(s.topic, 1) for s in self.config.subscriptions])
        self._to_loop(loop, partial(self._on_connect, rc, present))

    def _paho_message(self, loop: asyncio.AbstractEventLoop, emit: Emit, msg: paho.MQTTMessage) -> None:
        while not self._window.acquire(timeout=0.1):
            if self._stopping.is_set():
                return  # never acknowledged: the broker keeps it for the next session
        self._to_loop(loop, partial(self._on_message, emit, msg))

    def _to_loop(self, loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
        # One queue for messages and connection events keeps their order (an ack must never reach a
        # newer connection); one wake-up per burst instead of one per message keeps the loop cheap.
        self._inbox.append(call)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            loop.call_soon_threadsafe(self._drain)

    # --- event-loop side ------------------------------------------------------------------------------

    def _drain(self) -> None:
        self._drain_scheduled = False  # before popping: a call appended from now on schedules its own drain
        inbox = self._inbox
        while inbox:
            inbox.popleft()()

    def _new_generation(self) -> None:
        # Packet ids belong to one connection; acks for messages of an earlier one are never sent
        # (the broker redelivers those, and their readings are then stored twice: at-least-once).
        self._generation += 1
        self._release(len(self._slots))
        self._slots.clear()

    def _on_connect(self, rc: ReasonCode, session_present: bool) -> None:
        if not self._running:
            return
        if rc.is_failure:
            if not self._outage_logged:
                self._log.warning(
                    "broker mqtt://%s:%d refused the connection: %s; retrying with backoff",
                    self.config.host, self.config.port, rc,
                )
                self._outage_logged = True
            return
        self._new_generation()
        if self._outage_logged or self._ever_connected:
            self._log.info("reconnected to the broker (session kept: %s)", session_present)
        else:
            self._log.info("connected to the broker (session kept: %s)", session_present)
        self._ever_connected = True
        self._outage_logged = False

    def _on_connect_fail(self) -> None:
        if self._running and not self._outage_logged:
            self._log.warning(
                "cannot reach the broker at mqtt://%s:%d; retrying with backoff", self.config.host, self.config.port
            )
            self._outage_logged = True

    def _on_disconnect(self, rc: ReasonCode) -> None:
        was = self.connected
        self.connected = False
        self._new_generation()
        if self._running and was and not self._outage_logged:
            self._log.warning("lost the broker connection: %s; reconnecting with backoff", rc)
            self._outage_logged = True

    def _on_subscribe(self, reason_codes: list[ReasonCode]) -> None:
        # "connected" means ready to receive: a fresh session has no subscriptions before this
        self.connected = self._running
        for sub, rc in zip(self.config.subscriptions, reason_codes):
            if rc.is_failure:
                self._log.error("broker refused the subscription to %s: %s; check the broker's ACL", sub.topic, rc)

    def _release(self, n: int) -> None:
        if n:
            self._window.release(n)

    def _on_message(self, emit: Emit, msg: paho.MQTTMessage) -> None:
        if not self._running:
            self._release(1)
            return
        self.received += 1
        slot = _Slot(mid=msg.mid, qos=msg.qos, generation=self._generation)
        self._slots.append(slot)
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self._drop(slot, "(not UTF-8)", MalformedReason.BAD_TOPIC.value, "topic is not valid UTF-8")
            return
        try:
            readings = self._mapper.map(topic, bytes(msg.payload), utc_now())
        except MappingError as exc:
            self._drop(slot, topic, exc.reason.value, str(exc))
            return
        if topic in self._bad_topics:
            del self._bad_topics[topic]
            self._log.info("%s: payloads map again", topic)
        slot.remaining = len(readings)
        for reading in readings:
            self._emit_one(emit, slot, reading)

    def _emit_one(self, emit: Emit, slot: _Slot, reading: Reading) -> None:
        try:
            awaitable: Awaitable[None] = emit(reading)
        except ReadingError as exc:
            self._count_rejected(slot, reading, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any other emit failure stops the adapter, unacked
            self._fail(exc)
            return
        owned = asyncio.iscoroutine(awaitable)
        fut = asyncio.ensure_future(awaitable)
        if owned:
            slot.owned.append(fut)
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
                self._settle(slot)

    def _count_rejected(self, slot: _Slot, reading: Reading, exc: ReadingError) -> None:
        # The buffer refused the reading as invalid: redelivery would be refused the same way.
        self.malformed["rejected"] += 1
        self._note_bad(reading.source.device, "rejected", str(exc))
        self._settle(slot)

    def _settle(self, slot: _Slot) -> None:
        slot.remaining -= 1
        if slot.remaining <= 0:
            slot.done = True
            self._ack_ready()

    def _drop(self, slot: _Slot, topic: str, reason: str, message: str) -> None:
        self.malformed[reason] += 1
        self._note_bad(topic, reason, message)
        slot.done = True
        self._ack_ready()

    def _note_bad(self, topic: str, reason: str, message: str) -> None:
        self._log.debug("dropped a message (%s): %s", reason, message)
        if topic in self._bad_topics:
            return
        self._bad_topics[topic] = None
        if len(self._bad_topics) > _EPISODE_TOPICS:
            self._bad_topics.popitem(last=False)
        self._log.warning("%s: dropping malformed messages (%s), e.g. %s; counted per reason", topic, reason, message)

    def _ack_ready(self) -> None:
        # MQTT wants PUBACKs in the order the PUBLISHes came: ack the done prefix only.
        client = self._client
        while self._slots and self._slots[0].done:
            slot = self._slots.popleft()
            self._release(1)
            if client is not None and self._running and slot.generation == self._generation:
                client.ack(slot.mid, slot.qos)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is not None and not self._failure.done():
            self._log.error("stopping: emit failed (%s); unacknowledged messages stay with the broker", exc)
            self._failure.set_result(exc)

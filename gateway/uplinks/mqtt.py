"""MQTT uplink: Readings as IoT Agent JSON / UltraLight 2.0 measures or NGSI v2 envelopes, QoS 1 over aiomqtt.

A record is DELIVERED only once the broker's PUBACK for its message came back; messages of a batch
are pipelined (bounded in flight). A lost connection turns every unacknowledged record into RETRY and
the next `deliver` reconnects (the delivery loop spaces the calls with its backoff). The session is
persistent (fixed client id, clean start off), and the gateway's state is a retained JSON document on
the status topic: `online` at connect, `offline` on a clean close or, through the last will, on a crash.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import aiomqtt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers, writeUTF
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationInfo, field_validator, model_validator

from gateway.adapter_api import AdapterContext
from gateway.configbase import Field, Section
from gateway.errors import ConfigError, ReadingError
from gateway.logs import component_logger
from gateway.ngsi import iota
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Reading, utc_now, iso_utc
from gateway.secrets import SecretRef, resolve
from gateway.uplinks.api import DELIVERED, Outcome, Status, UplinkConfig

__all__ = ["MqttUplink", "MqttUplinkConfig", "MqttTls", "MqttCounters", "MqttFormat", "MqttProtocol", "TopicStyle",
           "CommandMode"]


class MqttProtocol(enum.Enum):
    V5 = "5"
    V311 = "3.1.1"


class MqttFormat(enum.Enum):
    IOTA_JSON = "iota-json"
    IOTA_UL = "iota-ul"
    NGSI_V2 = "ngsi-v2"


class TopicStyle(enum.Enum):
    PLAIN = "plain"  # /<apikey>/<device_id>/attrs
    PROTOCOL = "protocol"  # /json/<apikey>/<device_id>/attrs or /ul/<apikey>/<device_id>/attrs


class CommandMode(enum.Enum):
    OFF = "off"
    ON = "on"  # IoT Agent commands on /<apikey>/<device_id>/cmd, see gateway/uplinks/mqtt_commands.py


TOPIC_FIELDS = ("gateway_id", "entity_type", "entity_id", "adapter", "device")


class MqttTls(Section):
    """`tls` table: server verification (ca_file, else the system store) and an optional client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mTLS needs both), got only one of them")
        return self


def _check_template(value: str, allowed: Sequence[str]) -> str:
    unknown = iota.template_fields(value) - set(allowed)
    if unknown:
        valid = ", ".join("{" + f + "}" for f in allowed)
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; valid: {valid}")
    return value


def _check_topic_text(value: str) -> str:
    if not value or any(c in value for c in "+#\x00"):
        raise ValueError("must be a non-empty MQTT topic without the wildcards + and #")
    return value


class MqttUplinkConfig(UplinkConfig):
    """An `[[uplinks]]` entry of type `mqtt`."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="default 1883, or 8883 with tls")
    protocol: MqttProtocol = MqttProtocol.V5
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    username: str | None = Field(default=None, min_length=1)
    password: SecretRef | None = None
    keepalive_s: int = Field(default=60, ge=5, le=65535)
    session_expiry_s: int = Field(default=86_400, ge=0, le=4_294_967_295, description="MQTT 5 only")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    ack_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_inflight: int = Field(default=100, ge=1, le=65_535, description="keep at or below the broker's receive maximum")
    max_message_bytes: int = Field(default=262_144, ge=512, le=268_435_455)
    tls: MqttTls | None = None
    format: MqttFormat = MqttFormat.IOTA_JSON
    apikey: str | None = None
    topic_style: TopicStyle = TopicStyle.PLAIN
    device_id: str = "{entity_id}"
    topic: str = "edgegw/{gateway_id}/entities/{entity_type}"
    status_topic: str | None = None
    value_encoding: ValueEncoding = ValueEncoding.PERCENT
    commands: CommandMode = CommandMode.OFF

    @field_validator("password")
    @classmethod
    def _password_needs_user(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("username") is None and "username" in info.data:
            raise ValueError("needs a username (MQTT sends no password without one)")
        return v

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, v: str | None, info: ValidationInfo) -> str | None:
        fmt = info.data.get("format")
        if v is None:
            if fmt in (MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL):
                raise ValueError(f"required when format is {fmt.value} (the IoT Agent service's API key)")
            return v
        if not v or any(c in v for c in "/+#\x00"):
            raise ValueError("must be one MQTT topic level (not empty, no '/', '+', '#')")
        return v

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: CommandMode, info: ValidationInfo) -> CommandMode:
        fmt = info.data.get("format")
        if v is CommandMode.ON and fmt is MqttFormat.NGSI_V2:
            raise ValueError('must be "off" with format ngsi-v2 (commands come from an IoT Agent: format iota-json or '
                             'iota-ul)')
        return v

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        return _check_template(v, iota.DEVICE_ID_FIELDS)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return _check_template(_check_topic_text(v), TOPIC_FIELDS)

    @field_validator("status_topic")
    @classmethod
    def _status_topic(cls, v: str | None) -> str | None:
        return None if v is None else _check_template(_check_topic_text(v), ("gateway_id",))


@dataclass(slots=True)
class MqttCounters:
    """Running totals for metrics: messages published / acknowledged, payload bytes acknowledged, reconnects."""

    published: int = 0
    acked: int = 0
    bytes: int = 0
    reconnects: int = 0
    rejected: int = 0
    retried: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Message:
    topic: str
    payload: bytes
    indices: tuple[int, ...]  # positions in the batch
    seqs: tuple[int, ...]


# One rendered record: (observed_at, index in the batch, seq, serialized part). A plain tuple, not a
# dataclass: one is built per reading, and sorting tuples by (observed_at, index) needs no key
# function (indexes are unique, so the comparison never reaches the bytes).
_Part = tuple[datetime, int, "int | None", bytes]  # indexed with literals below: [1] index, [2] seq, [3] body

# Rendered topics by the reading fields their template uses; a gateway has a bounded set of
# devices, and a template rendering plus topic check per reading cost ~1.5 µs (measured).
_TOPIC_CACHE_MAX = 10_000


# PUBACK codes that condemn the message itself; others (quota, not authorized, unspecified) are the
# broker's state or configuration and clear up without touching the record, so they retry.
_PERMANENT_CODES = {0x90, 0x95, 0x99}  # topic name invalid, packet too large, payload format invalid


def seq_ranges(seqs: Sequence[int]) -> str:
    """`101-105,108,110-111`: the set of sequence numbers in a message, runs collapsed."""
    runs: list[list[int]] = []
    for s in sorted(set(seqs)):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _check_topic(where: str, topic: str) -> str:
    if not topic or any(c in topic for c in "+#\x00") or len(topic.encode()) > 65_535:
        raise ReadingError(
            f"{where}: rendered MQTT topic is empty, too long or holds a wildcard (+ #), got {topic!r}; "
            "change the topic template or the entity id",
            value=topic,
        )
    return topic


def _pack(
    parts: list[_Part], *, limit: int, size: Callable[[int, int], int], weight: Callable[[_Part], int]
) -> tuple[list[list[_Part]], list[tuple[_Part, int]]]:
    """Greedy split of ordered parts into chunks whose payload `size(count, sum of weights)` fits the limit."""
    weights = [weight(p) for p in parts]
    if size(len(parts), sum(weights)) <= limit and all(size(1, w) <= limit for w in weights):
        # the usual case, a topic's share of a batch fits one message: no per-part size arithmetic
        return ([parts] if parts else []), []
    chunks: list[list[_Part]] = []
    too_big: list[tuple[_Part, int]] = []
    current: list[_Part] = []
    total = 0
    for part, w in zip(parts, weights):
        alone = size(1, w)
        if alone > limit:
            too_big.append((part, alone))
            continue
        if current and size(len(current) + 1, total + w) > limit:
            chunks.append(current)
            current, total = [], 0
        current.append(part)
        total += w
    if current:
        chunks.append(current)
    return chunks, too_big


class _Session:
    """One live connection: the aiomqtt client, PUBACK futures by message id, and a watch for its loss."""

    def __init__(self, client: aiomqtt.Client, on_lost: Callable[[str], None]) -> None:
        self.client = client
        self._on_lost = on_lost
        self._closing = False
        # aiomqtt's publish() drops the MQTT 5 PUBACK reason code, and a broker refusing a message (ACL,
        # quota, size) still answers PUBACK; so we publish through its paho client and keep the codes.
        self._paho: paho.Client = client._client  # noqa: SLF001
        self._paho.on_publish = self._on_publish
        self._acks: dict[int, asyncio.Future[ReasonCode]] = {}
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._watch = asyncio.create_task(self._watch_loss())

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason_code: ReasonCode, _p: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(reason_code)

    async def _watch_loss(self) -> None:
        # We subscribe to nothing: the message iterator only ends when the connection does.
        reason = "connection closed"
        try:
            async for _ in self.client.messages:
                pass
        except aiomqtt.MqttError as exc:
            reason = str(exc.__cause__ or exc)
        if not self.lost.done():
            self.lost.set_result(reason)
            if not self._closing:
                self._on_lost(reason)
        for fut in list(self._acks.values()):
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self._acks.clear()

    def start_publish(
        self, topic: str, payload: bytes, *, retain: bool, properties: Properties | None
    ) -> tuple[int, asyncio.Future[ReasonCode]]:
        """Publish at QoS 1 now; (message id, future of its PUBACK). ConnectionError if it cannot go out."""
        if self.lost.done():
            raise ConnectionError(self.lost.result())
        info = self._paho.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(paho.error_string(info.rc))
        fut: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        return info.mid, fut

    def forget(self, mid: int) -> None:
        """Stop waiting for a message's PUBACK (timed out or abandoned)."""
        self._acks.pop(mid, None)

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool, properties: Properties | None, timeout: float
    ) -> ReasonCode:
        """Publish at QoS 1 and wait for the PUBACK; ConnectionError or TimeoutError otherwise."""
        mid, fut = self.start_publish(topic, payload, retain=retain, properties=properties)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self.forget(mid)

    async def close(self) -> None:
        """Disconnect (a DISCONNECT if the link still works, so the broker drops the will) and stop watching."""
        self._closing = True
        try:
            await self.client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass
        # The watch ends by itself once aiomqtt saw the disconnect; letting it run (rather than
        # cancelling it) is what consumes aiomqtt's disconnect future and its exception.
        try:
            async with asyncio.timeout(1.0):
                await self._watch
        except TimeoutError:
            pass


class _PackedProperties(Properties):
    """PUBLISH properties serialized once, with paho's own encoders and in paho's order.

    paho's Properties builds two dicts in __init__, checks every attribute against its name table
    and packs by probing all 27 property names: with messages of ~30 readings that was ~7 % of the
    gateway's CPU at 45,000 readings/s (py-spy). paho calls nothing but pack() on the properties of
    an outgoing PUBLISH (also when it resends one after a reconnect), so this holds the bytes only.
    """

    _packed: bytes

    def __init__(self, packed: bytes) -> None:  # no super().__init__: its tables are never used
        # Properties.__setattr__ only admits property names, hence object.__setattr__
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "_packed", packed)

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:
        return f"<PUBLISH properties, {len(self._packed)} bytes packed>"

    __repr__ = __str__


_CONTENT_TYPE, _USER_PROPERTY = VariableByteIntegers.encode(3), VariableByteIntegers.encode(38)  # type: ignore[no-untyped-call]


def packed_publish_properties(content_type: str, user: Sequence[tuple[str, str]]) -> bytes:
    """What paho's Properties.pack() gives for a PUBLISH with ContentType and UserProperty (in that order)."""
    body = _CONTENT_TYPE + writeUTF(content_type)  # type: ignore[no-untyped-call]
    for key, value in user:
        body += _USER_PROPERTY + writeUTF(key) + writeUTF(value)  # type: ignore[no-untyped-call]
    return VariableByteIntegers.encode(len(body)) + body  # type: ignore[no-any-return, no-untyped-call]


def tls_context(config: MqttUplinkConfig) -> ssl.SSLContext | None:
    """The client TLS context a `tls` table asks for (None without one); unreadable files are ConfigErrors."""
    tls = config.tls
    if tls is None:
        return None
    where = f"uplinks.{config.name}"
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{where}.tls.ca_file: cannot load a CA certificate, got {tls.ca_file!r} ({exc})"]) from None
    if tls.cert_file and tls.key_file:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"{where}.tls.cert_file: cannot load the client certificate and key, got "
                               f"{tls.cert_file!r} / {tls.key_file!r} ({exc})"]) from None
    return ctx


class MqttUplink:
    """Delivers batches to an MQTT broker; see the module docstring and MQTT.md."""

    config_model: ClassVar[type[UplinkConfig]] = MqttUplinkConfig

    def __init__(self, config: UplinkConfig, context: AdapterContext) -> None:
        if not isinstance(config, MqttUplinkConfig):
            raise TypeError(f"MqttUplink needs an MqttUplinkConfig, got {type(config).__name__}")
        self.config = config
        self.name = config.name
        self._context = context
        self._log = component_logger(__name__, config.name)
        self.client_id = config.client_id or f"edgegw-{context.gateway_id}-{config.name}"
        self.status_topic = (config.status_topic or "edgegw/{gateway_id}/status").format(gateway_id=context.gateway_id)
        self.port = config.port or (8883 if config.tls else 1883)
        self.counters = MqttCounters()
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._prepared = False
        self._session: _Session | None = None
        self._ever_connected = False
        self._up: bool | None = None
        self._last_error = "not connected yet"
        self._lock = asyncio.Lock()
        self._topics: dict[object, str] = {}
        used = iota.template_fields(config.topic if config.format is MqttFormat.NGSI_V2 else config.device_id)
        # the default templates use the entity id alone: key the topic cache by it, no tuple per reading
        self._topic_by_id = used <= {"entity_id", "gateway_id"}

    # -- lifecycle ---------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Resolve the password and load TLS material: configuration errors surface here, at start."""
        if self._prepared:
            return
        if self.config.password is not None:
            self._password = resolve(self.config.password, self._context.data_dir)
        self._tls = tls_context(self.config)
        self._prepared = True

    async def start(self) -> None:
        """Check secrets and TLS files (ConfigError), then try to connect once; a dead broker is not an error."""
        self._prepare()
        async with self._lock:
            if self._session is None:
                self._session = await self._connect()

    async def close(self) -> None:
        """Publish `offline` (retained) and disconnect cleanly, so the broker drops the last will."""
        async with self._lock:
            session, self._session = self._session, None
            if session is None:
                return
            if not session.lost.done():
                try:
                    await session.publish(self.status_topic, self._status("offline", "closed"), retain=True,
                                          properties=None, timeout=min(self.config.ack_timeout_s, 5.0))
                except (ConnectionError, TimeoutError):
                    pass
            await session.close()
            self._log.info("disconnected from %s:%d", self.config.host, self.port)

    # -- connection --------------------------------------------------------------------------------

    def _status(self, state: str, reason: str = "") -> bytes:
        doc: dict[str, Any] = {"gateway": self._context.gateway_id, "state": state, "time": iso_utc(utc_now())}
        if reason:
            doc["reason"] = reason
        return orjson.dumps(doc)

    def _mark_up(self) -> None:
        if self._up is not True:
            self._log.info("connected to %s:%d as %s", self.config.host, self.port, self.client_id)
        self._up = True

    def _mark_down(self, reason: str) -> None:
        self._last_error = reason
        if self._up is not False:
            self._log.warning("broker %s:%d unreachable, readings stay buffered: %s", self.config.host, self.port, reason)
        else:
            self._log.debug("broker %s:%d still unreachable: %s", self.config.host, self.port, reason)
        self._up = False

    async def _connect(self) -> _Session | None:
        cfg = self.config
        v5 = cfg.protocol is MqttProtocol.V5
        connect_props = None
        if v5:
            connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_props.SessionExpiryInterval = cfg.session_expiry_s
        client = aiomqtt.Client(
            cfg.host,
            self.port,
            username=cfg.username,
            password=self._password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.status_topic, self._status("offline", "connection lost"), qos=1, retain=True),
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=cfg.keepalive_s,
            max_inflight_messages=cfg.max_inflight,
            properties=connect_props,
            tls_context=self._tls,
            timeout=cfg.connect_timeout_s,
            # paho leaves Nagle on: small PUBLISHes would then wait for the ACK of earlier ones
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            self._mark_down(str(exc))
            return None
        session = _Session(client, self._mark_down)
        try:
            code = await session.publish(self.status_topic, self._status("online"), retain=True, properties=None,
                                         timeout=cfg.ack_timeout_s)
        except (ConnectionError, TimeoutError) as exc:
            await session.close()
            self._mark_down(f"status publish failed: {exc or 'no PUBACK'}")
            return None
        if code.is_failure:
            self._log.warning("broker refused the status message on %s: %s", self.status_topic, code)
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self._mark_up()
        return session

    # -- planning (pure) ---------------------------------------------------------------------------

    def _iota_topic(self, device: str) -> str:
        prefix = ""
        if self.config.topic_style is TopicStyle.PROTOCOL:
            prefix = "/json" if self.config.format is MqttFormat.IOTA_JSON else "/ul"
        return f"{prefix}/{self.config.apikey}/{device}/attrs"

    def _make_topic(self, reading: Reading) -> str:
        cfg = self.config
        if cfg.format is MqttFormat.NGSI_V2:
            topic = cfg.topic.format(
                gateway_id=self._context.gateway_id,
                entity_type=reading.entity_type,
                entity_id=reading.entity_id,
                adapter=reading.source.adapter,
                device=reading.source.device,
            )
            return _check_topic(f"{reading.entity_id}: topic", topic)
        return self._iota_topic(iota.device_id(reading, cfg.device_id))

    def _topic(self, reading: Reading) -> str:
        """The reading's topic, from the cache when its template fields were seen before."""
        key: object = (reading.entity_id if self._topic_by_id else
                       (reading.entity_id, reading.entity_type, reading.source.adapter, reading.source.device))
        topic = self._topics.get(key)
        if topic is None:
            topic = self._make_topic(reading)  # a ReadingError is raised each time, never cached
            if len(self._topics) >= _TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[key] = topic
        return topic

    def _render(self, reading: Reading) -> tuple[str, bytes]:
        """(topic, serialized part) of one reading; ReadingError if it cannot be sent in this format."""
        cfg = self.config
        enc = cfg.value_encoding
        if cfg.format is MqttFormat.NGSI_V2:
            topic = self._topic(reading)
            return topic, orjson.dumps(to_v2_entity(reading, encoding=enc))
        topic = self._topic(reading)
        if cfg.format is MqttFormat.IOTA_JSON:
            return topic, iota.json_measure_bytes(reading, encoding=enc)
        return topic, iota.ul_group(reading, encoding=enc).encode()

    def _plan(self, batch: Sequence[Reading]) -> tuple[list[_Message], dict[int, str]]:
        """Messages for a batch (one per topic, split by size) and the records that cannot be sent."""
        cfg = self.config
        rejected: dict[int, str] = {}
        by_topic: dict[str, list[_Part]] = {}
        render = self._render
        for i, reading in enumerate(batch):
            try:
                topic, body = render(reading)
            except ReadingError as exc:
                rejected[i] = str(exc)
                continue
            items = by_topic.get(topic)
            if items is None:
                items = by_topic[topic] = []
            items.append((reading.observed_at, i, reading.seq, body))

        gw = orjson.dumps(self._context.gateway_id)
        if cfg.format is MqttFormat.IOTA_JSON:
            def size(n: int, total: int) -> int:
                return total if n == 1 else total + n + 1  # [a,b,c]
        elif cfg.format is MqttFormat.IOTA_UL:
            def size(n: int, total: int) -> int:
                return total + n - 1  # a#b#c
        else:
            head = len(b'{"gateway":' + gw + b',"seq":[],"entities":[]}')

            def size(n: int, total: int) -> int:
                return head + total + 2 * (n - 1)  # commas in both the seq and the entities list

        def weight(part: _Part) -> int:
            seq = part[2]
            if cfg.format is MqttFormat.NGSI_V2 and seq is not None:
                return len(part[3]) + len(str(seq))  # the envelope also lists the part's seq
            return len(part[3])

        messages: list[_Message] = []
        for topic, items in by_topic.items():
            if cfg.format is not MqttFormat.NGSI_V2:
                # The agents apply a multi-measure in array order; Orion keeps the last one as current.
                # Sorted by (observed_at, index): the index is unique, so the bytes are never compared.
                items.sort()
            chunks, too_big = _pack(items, limit=cfg.max_message_bytes, size=size, weight=weight)
            for part, n in too_big:
                index = part[1]
                rejected[index] = (
                    f"{batch[index].entity_id}: message of {n} bytes exceeds max_message_bytes "
                    f"{cfg.max_message_bytes}, got one reading too large to send; raise max_message_bytes "
                    "(within the broker's limit) or split the reading at the source"
                )
            messages.extend(self._message(topic, chunk, gw) for chunk in chunks)
        return messages, rejected

    def _message(self, topic: str, parts: list[_Part], gw: bytes) -> _Message:
        seqs = tuple(p[2] for p in parts if p[2] is not None)
        bodies = [p[3] for p in parts]
        if self.config.format is MqttFormat.IOTA_JSON:
            payload = iota.json_payload(bodies)
        elif self.config.format is MqttFormat.IOTA_UL:
            payload = b"#".join(bodies)
        else:
            payload = (b'{"gateway":' + gw + b',"seq":' + orjson.dumps(list(seqs)) + b',"entities":['
                       + b",".join(bodies) + b"]}")
        return _Message(topic=topic, payload=payload, indices=tuple(p[1] for p in parts), seqs=seqs)

    def _properties(self, message: _Message) -> Properties | None:
        if self.config.protocol is not MqttProtocol.V5:
            return None
        user = [("gateway", self._context.gateway_id)]
        if message.seqs:
            user.append(("seq", seq_ranges(message.seqs)))
        content_type = "text/plain" if self.config.format is MqttFormat.IOTA_UL else "application/json"
        return _PackedProperties(packed_publish_properties(content_type, user))

    # -- delivery ----------------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        """One Outcome per record, in order; DELIVERED only after the broker's PUBACK. Never raises for delivery."""
        async with self._lock:
            outcomes: list[Outcome | None] = [None] * len(batch)
            messages, rejected = self._plan(batch)
            for i, reason in rejected.items():
                outcomes[i] = Outcome(Status.REJECTED, reason)
            self.counters.rejected += len(rejected)
            if messages:
                if self._session is not None and self._session.lost.done():
                    # dropped while idle (already logged by the watch): reconnect now rather than fail a batch
                    await self._session.close()
                    self._session = None
                if self._session is None:
                    self._prepare()
                    self._session = await self._connect()
                if self._session is None:
                    retry = Outcome(Status.RETRY, f"broker {self.config.host}:{self.port} unreachable: {self._last_error}")
                    for m in messages:
                        for i in m.indices:
                            outcomes[i] = retry
                else:
                    await self._send_all(self._session, messages, outcomes)
            final = [o if o is not None else Outcome(Status.RETRY, "not sent") for o in outcomes]
            self.counters.retried += sum(1 for o in final if o.status is Status.RETRY)
            return final

    def _count(self, size: int, fut: asyncio.Future[ReasonCode]) -> None:
        # counted as PUBACKs arrive, so metrics move during a long batch
        if fut.cancelled() or fut.exception() is not None:
            return
        self.counters.published += 1
        if not fut.result().is_failure:
            self.counters.acked += 1
            self.counters.bytes += size

    async def _send_window(self, session: _Session, messages: list[_Message]) -> list[object]:
        """Every message published at once (they fit the in-flight window), then one wait for the PUBACKs.

        The same outcomes as one task per message, each with its own timeout: those cost ~40 µs a
        message (a task, a semaphore, a timer), and a message carries ~30 readings at full speed.
        All messages go out in the same instant, so one deadline is each message's own deadline.
        """
        cfg = self.config
        results: list[object] = [None] * len(messages)
        waiting: dict[asyncio.Future[ReasonCode], tuple[int, int]] = {}  # future -> (position, mid)
        try:
            for k, message in enumerate(messages):
                try:
                    mid, fut = session.start_publish(message.topic, message.payload, retain=False,
                                                     properties=self._properties(message))
                except ConnectionError as exc:
                    results[k] = exc
                    continue
                fut.add_done_callback(functools.partial(self._count, len(message.payload)))
                waiting[fut] = (k, mid)
            if waiting:
                await asyncio.wait(waiting, timeout=cfg.ack_timeout_s)
        finally:
            for fut, (k, mid) in waiting.items():
                if fut.cancelled():
                    results[k] = asyncio.CancelledError()
                elif fut.done():
                    results[k] = fut.exception() if fut.exception() is not None else fut.result()
                else:
                    session.forget(mid)
                    fut.cancel()
                    results[k] = TimeoutError()
        return results

    async def _send_all(self, session: _Session, messages: list[_Message], outcomes: list[Outcome | None]) -> None:
        cfg = self.config
        if len(messages) <= cfg.max_inflight:
            await self._settle(session, messages, await self._send_window(session, messages), outcomes)
            return
        gate = asyncio.Semaphore(cfg.max_inflight)

        async def send(message: _Message) -> ReasonCode:
            async with gate:
                code = await session.publish(message.topic, message.payload, retain=False,
                                             properties=self._properties(message), timeout=cfg.ack_timeout_s)
            # counted as PUBACKs arrive, so metrics move during a long batch
            self.counters.published += 1
            if not code.is_failure:
                self.counters.acked += 1
                self.counters.bytes += len(message.payload)
            return code

        tasks = [asyncio.create_task(send(m)) for m in messages]
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for t in tasks:
                t.cancel()
        await self._settle(session, messages, list(results), outcomes)

    async def _settle(self, session: _Session, messages: list[_Message], results: list[object],
                      outcomes: list[Outcome | None]) -> None:
        """Outcomes from each message's result (a PUBACK reason code or the exception that ended the wait)."""
        cfg = self.config
        stale = False
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, ReasonCode):
                if not result.is_failure:
                    outcome = DELIVERED
                elif result.value in _PERMANENT_CODES:
                    outcome = Outcome(Status.REJECTED, f"{message.topic}: broker refused the message, got PUBACK "
                                                       f"{result.value:#04x} {result}")
                    self.counters.rejected += len(message.indices)
                else:
                    self._log.debug("broker answered PUBACK %s on %s", result, message.topic)
                    outcome = Outcome(Status.RETRY, f"{message.topic}: broker refused the message for now, got "
                                                    f"PUBACK {result.value:#04x} {result}")
            elif isinstance(result, TimeoutError):
                stale = True
                outcome = Outcome(Status.RETRY, f"no PUBACK within {cfg.ack_timeout_s} s")
            elif isinstance(result, (ConnectionError, aiomqtt.MqttError, OSError)):
                outcome = Outcome(Status.RETRY, f"connection lost before PUBACK: {result}")
            elif isinstance(result, asyncio.CancelledError):
                outcome = Outcome(Status.RETRY, "cancelled before PUBACK")
            else:
                assert isinstance(result, BaseException), result
                raise result  # a bug, not a delivery failure
            for i in message.indices:
                outcomes[i] = outcome
        if session.lost.done() or stale:
            self._session = None
            await session.close()
            if stale:
                self._mark_down(f"no PUBACK within {cfg.ack_timeout_s} s, connection dropped")

"""MQTT uplink: Readings as IoT Agent JSON / UltraLight 2.0 measures or NGSI v2 envelopes, QoS 1 over aiomqtt.

A record is DELIVERED only once the broker's PUBACK for its message came back; messages of a batch
are pipelined (bounded in flight). A lost connection turns every unacknowledged record into RETRY and
the next `deliver` reconnects (the delivery loop spaces the calls with its backoff). The session is
persistent (fixed client id, clean start off), and the gateway's state is a retained JSON document on
the status topic: `online` at connect, `offline` on a clean close or, through the last will, on a crash.

For the IoT Agent formats a message is also sized for what the agent makes of it: one Orion request
per message, which must stay under Orion's limit (gateway/ngsi/agent_request.py); and with
`[uplinks.confirm]` a record is DELIVERED only once Orion shows its entity arrived
(gateway/uplinks/mqtt_confirm.py), one message per entity at a time.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import operator
import re
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

import aiomqtt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers, writeUTF
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationInfo, field_validator, model_validator

from gateway.adapter_api import AdapterContext
from gateway.configbase import Field, Section
from gateway.errors import ReadingError
from gateway.logs import component_logger
from gateway.ngsi import agent_request, identifiers, iota
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Reading, iso_utc, utc_now
from gateway.secrets import SecretRef, resolve
from gateway.tls import TlsSection, client_context
from gateway.uplinks.api import DELIVERED, Fault, Outcome, Status, UplinkConfig
from gateway.uplinks.mqtt_confirm import ConfirmConfig, OrionConfirmer
from gateway.uplinks.seqs import seq_ranges

__all__ = [
    "DEFAULT_SEQUENCE_ATTRIBUTE",
    "DEFAULT_STATUS_TOPIC",
    "ApikeyRule",
    "CommandMode",
    "MqttCounters",
    "MqttFormat",
    "MqttProtocol",
    "MqttUplink",
    "MqttUplinkConfig",
    "TopicStyle",
]

DEFAULT_SEQUENCE_ATTRIBUTE = "edgegwSeq"
DEFAULT_STATUS_TOPIC = "edgegw/{gateway_id}/{uplink}/status"


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
STATUS_TOPIC_FIELDS = ("gateway_id", "uplink")


def _check_template(value: str, allowed: Sequence[str]) -> str:
    unknown = iota.template_fields(value) - set(allowed)
    if unknown:
        valid = ", ".join("{" + f + "}" for f in allowed)
        raise ValueError(f"unknown placeholder {{{min(unknown)}}}; valid: {valid}")
    return value


def _check_topic_text(value: str) -> str:
    if not value or any(c in value for c in "+#\x00"):
        raise ValueError("must be a non-empty MQTT topic without the wildcards + and #")
    return value


def _check_apikey(v: str) -> str:
    if not v or any(c in v for c in "/+#\x00"):
        raise ValueError("must be one MQTT topic level (not empty, no '/', '+', '#')")
    return v


class ApikeyRule(Section):
    """One `[[uplinks.apikeys]]` entry: the API key of the agent's config group for some entities."""

    apikey: str
    entity_type: str | None = None
    entity_id_pattern: str | None = Field(default=None, description="a regular expression the whole entity id matches")

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, v: str) -> str:
        return _check_apikey(v)

    @field_validator("entity_id_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"must be a regular expression, {exc}") from None
        return v

    @model_validator(mode="after")
    def _selects(self) -> ApikeyRule:
        if self.entity_type is None and self.entity_id_pattern is None:
            raise ValueError("needs entity_type or entity_id_pattern (or both), got neither; without them use the "
                             "uplink's apikey")
        return self


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
    tls: TlsSection | None = None
    format: MqttFormat = MqttFormat.IOTA_JSON
    apikeys: tuple[ApikeyRule, ...] = ()
    apikey: str | None = None
    topic_style: TopicStyle = TopicStyle.PLAIN
    device_id: str = "{entity_id}"
    topic: str = "edgegw/{gateway_id}/entities/{entity_type}"
    status_topic: str = DEFAULT_STATUS_TOPIC
    value_encoding: ValueEncoding = ValueEncoding.PERCENT
    commands: CommandMode = CommandMode.OFF
    orion_max_request_bytes: int = Field(default=1_048_576, ge=4096, le=268_435_455,
                                         description="the request limit of the Orion behind the IoT Agent")
    agent_attribute_bytes: int = Field(default=48, ge=0, le=65_536,
                                       description="what the agent's provisioning adds to each attribute")
    agent_entity_bytes: int = Field(default=128, ge=0, le=1_048_576,
                                    description="what the agent's provisioning adds to each entity")
    sequence_attribute: str | None = None
    confirm: ConfirmConfig | None = None

    @field_validator("password")
    @classmethod
    def _password_needs_user(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("username") is None and "username" in info.data:
            raise ValueError("needs a username (MQTT sends no password without one)")
        return v

    @field_validator("apikeys")
    @classmethod
    def _apikeys(cls, v: tuple[ApikeyRule, ...], info: ValidationInfo) -> tuple[ApikeyRule, ...]:
        if v and info.data.get("format") is MqttFormat.NGSI_V2:
            raise ValueError("must be empty with format ngsi-v2 (API keys are for the IoT Agent formats)")
        return v

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, v: str | None, info: ValidationInfo) -> str | None:
        fmt = info.data.get("format")
        if v is None:
            if fmt in (MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL) and not info.data.get("apikeys"):
                raise ValueError(f"required when format is {fmt.value} (the IoT Agent service's API key)")
            return v
        return _check_apikey(v)

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
    def _status_topic(cls, v: str) -> str:
        return _check_template(_check_topic_text(v), STATUS_TOPIC_FIELDS)

    @field_validator("sequence_attribute")
    @classmethod
    def _sequence_attribute(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("format") is MqttFormat.NGSI_V2:
            raise ValueError("must be unset with format ngsi-v2 (its envelope carries the sequence numbers)")
        identifiers.check_attribute_name(v)
        if v in (iota.TIME_INSTANT, "id", "type") or "@" in v:
            raise ValueError("must be a measure name the IoT Agents pass on (not TimeInstant, id or type, no '@')")
        return v

    @model_validator(mode="after")
    def _confirmation(self) -> MqttUplinkConfig:
        if self.confirm is not None and self.format is MqttFormat.NGSI_V2:
            raise ValueError("confirm needs format iota-json or iota-ul (it reads what an IoT Agent wrote to "
                             "Orion), got ngsi-v2; drop [uplinks.confirm]")
        return self

    @property
    def sequence_measure(self) -> str | None:
        """The measure carrying each reading's seq: `sequence_attribute`, or edgegwSeq when confirmation needs one."""
        if self.sequence_attribute is None and self.confirm is not None:
            return DEFAULT_SEQUENCE_ATTRIBUTE
        return self.sequence_attribute

    def broker_key(self) -> tuple[str, int]:
        """(host, port) of the broker, to tell uplinks that share one."""
        return self.host.lower(), self.port or (8883 if self.tls else 1883)

    def render_status_topic(self, gateway_id: str) -> str:
        return self.status_topic.format(gateway_id=gateway_id, uplink=self.name)

    @classmethod
    def check_together(cls, sections: Sequence[tuple[int, UplinkConfig]], gateway_id: str) -> list[str]:
        """Errors between `mqtt` uplinks: two on one broker must not share a retained status topic."""
        seen: dict[tuple[tuple[str, int], str], int] = {}
        errors: list[str] = []
        for i, section in sections:
            if not isinstance(section, MqttUplinkConfig):
                continue
            key = (section.broker_key(), section.render_status_topic(gateway_id))
            if key in seen:
                errors.append(
                    f"uplinks[{i}].status_topic: must differ from uplinks[{seen[key]}].status_topic on the same "
                    f"broker (one's last will would overwrite the other's online), got {key[1]!r} for both; "
                    "put {uplink} in the template"
                )
            seen.setdefault(key, i)
        return errors


@dataclass(slots=True)
class MqttCounters:
    """Running totals for metrics: messages published / acknowledged, payload bytes acknowledged, reconnects."""

    published: int = 0
    acked: int = 0
    bytes: int = 0
    reconnects: int = 0
    rejected: int = 0
    retried: int = 0
    confirmed: int = 0  # [uplinks.confirm]: records Orion showed arrived
    republished: int = 0  # [uplinks.confirm]: records acknowledged by the broker but not seen in Orion in time
    confirm_errors: int = 0  # [uplinks.confirm]: queries to Orion that failed


@dataclass(frozen=True, slots=True, kw_only=True)
class _Message:
    topic: str
    payload: bytes
    indices: tuple[int, ...]  # positions in the batch
    seqs: tuple[int, ...]


# One rendered record: (observed_at, index in the batch, seq, serialized part, what the IoT Agent adds
# per entity to its Orion request, 0 for ngsi-v2). A plain tuple, not a dataclass: one is built per
# reading, and sorting tuples by (observed_at, index) needs no key function (indexes are unique, so the
# comparison never reaches the bytes).
_Part = tuple[datetime, int, "int | None", bytes, int]  # indexed with literals: [1] index, [2] seq, [3] body, [4] entity
_ENTITY_BYTES = operator.itemgetter(4)

# Rendered topics by the reading fields their template uses; a gateway has a bounded set of
# devices, and a template rendering plus topic check per reading cost ~1.5 µs (measured).
_TOPIC_CACHE_MAX = 10_000


# PUBACK codes that condemn the message itself; others (quota, not authorized, unspecified) are the
# broker's state or configuration and clear up without touching the record, so they retry.
_PERMANENT_CODES = {0x90, 0x95, 0x99}  # topic name invalid, packet too large, payload format invalid
# CONNACK codes (MQTT 3.1.1 return codes, MQTT 5 reason codes) and a PUBACK's "not authorized": the
# broker refuses this gateway's settings (protocol, client id, credentials, ACL). Nothing gets through
# until someone fixes them, so the uplink says `refused`, at ERROR, not "unreachable".
_REFUSED_CONNECT = {1, 2, 4, 5, 0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C}
_NOT_AUTHORIZED = 0x87


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


class _AgentLimit:
    """Orion's request limit behind an IoT Agent, for the parts of one batch (gateway/ngsi/agent_request.py)."""

    __slots__ = ("_batch", "_extra", "_sizing", "_ul", "limit")

    def __init__(self, sizing: agent_request.AgentSizing, batch: Sequence[Reading], *, ul: bool,
                 sequence: bool) -> None:
        self.limit = sizing.limit
        self._sizing = sizing
        self._batch = batch
        self._ul = ul
        self._extra = int(sequence)  # the sequence measure is one more attribute

    def fits(self, parts: list[_Part], measure_bytes: int) -> bool:
        """True when the parts surely fit one request, judged by their totals alone (the usual message)."""
        entities = sum(map(_ENTITY_BYTES, parts))
        return agent_request.coarse_bound(measure_bytes, len(parts), entities, self._sizing, ul=self._ul) <= self.limit

    def bound(self, part: _Part) -> int:
        """What the part adds to the agent's request at most."""
        attributes = len(self._batch[part[1]].attributes) + self._extra
        if self._ul:
            return agent_request.ul_group_bound(part[3], attributes, part[4], self._sizing)
        return agent_request.json_measure_bound(part[3], attributes, part[4], self._sizing)


def _pack(
    parts: list[_Part], *, limit: int, size: Callable[[int, int], int], weight: Callable[[_Part], int],
    agent: _AgentLimit | None,
) -> tuple[list[list[_Part]], list[tuple[_Part, str, int]]]:
    """Greedy split of ordered parts into chunks whose payload `size(count, sum of weights)` fits `limit` and,
    for the IoT Agent formats, whose agent request fits Orion's limit.

    Returns the chunks and the parts too big to send alone, each with the limit it breaks
    (`max_message_bytes` or `orion_max_request_bytes`) and its size against that limit.
    """
    weights = [weight(p) for p in parts]
    total_weight = sum(weights)
    if ((agent is None or agent.fits(parts, total_weight)) and size(len(parts), total_weight) <= limit
            and all(size(1, w) <= limit for w in weights)):
        # the usual case, a topic's share of a batch fits one message: no per-part size arithmetic
        return ([parts] if parts else []), []
    request = agent_request.REQUEST
    bounds = [agent.bound(p) for p in parts] if agent is not None else [0] * len(parts)
    agent_limit = agent.limit if agent is not None else None
    chunks: list[list[_Part]] = []
    too_big: list[tuple[_Part, str, int]] = []
    current: list[_Part] = []
    total = 0
    requested = request
    for part, w, bound in zip(parts, weights, bounds):
        alone = size(1, w)
        if alone > limit:
            too_big.append((part, "max_message_bytes", alone))
            continue
        if agent_limit is not None and request + bound > agent_limit:
            too_big.append((part, "orion_max_request_bytes", request + bound))
            continue
        if current and (size(len(current) + 1, total + w) > limit
                        or (agent_limit is not None and requested + bound > agent_limit)):
            chunks.append(current)
            current, total, requested = [], 0, request
        current.append(part)
        total += w
        requested += bound
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
        self._paho: paho.Client = client._client
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
    return None if config.tls is None else client_context(config.tls, f"uplinks.{config.name}")


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
        self._client_log = component_logger(f"{__name__}.client", config.name)  # aiomqtt's and paho's lines
        self.client_id = config.client_id or f"edgegw-{context.gateway_id}-{config.name}"
        self.status_topic = config.render_status_topic(context.gateway_id)
        self.port = config.port or (8883 if config.tls else 1883)
        self.counters = MqttCounters()
        iota_format = config.format is not MqttFormat.NGSI_V2
        self._apikeys = [(rule, re.compile(rule.entity_id_pattern) if rule.entity_id_pattern else None)
                         for rule in config.apikeys]
        self._sequence = config.sequence_measure if iota_format else None
        self._sizing = agent_request.sizing(limit=config.orion_max_request_bytes,
                                            attribute_allowance=config.agent_attribute_bytes,
                                            entity_allowance=config.agent_entity_bytes) if iota_format else None
        self._confirmer = None
        if config.confirm is not None and self._sequence is not None:
            self._confirmer = OrionConfirmer(config.confirm, attribute=self._sequence, uplink=config.name,
                                             data_dir=str(context.data_dir), log=self._log)
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._prepared = False
        self._session: _Session | None = None
        self._ever_connected = False
        self._up: bool | None = None
        self._last_error = "not connected yet"
        self._refused = False  # the broker's last CONNACK refused our settings (credentials, client id)
        self._lock = asyncio.Lock()
        # (topic, what the agent adds per entity to its Orion request) by the reading fields that decide them
        self._topics: dict[object, tuple[str, int]] = {}
        used = iota.template_fields(config.topic if config.format is MqttFormat.NGSI_V2 else config.device_id)
        if config.confirm is not None:  # the Orion entity id sizes the agent's request too
            used |= iota.template_fields(config.confirm.entity_id) - {"device_id"}
        # the default templates use the entity id alone: key the topic cache by it, no tuple per reading
        self._topic_by_id = used <= {"entity_id", "gateway_id"} and not any(r.entity_type for r in config.apikeys)

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
        if self._confirmer is not None:
            await self._confirmer.start()
        async with self._lock:
            if self._session is None:
                self._session = await self._connect()

    def diagnostics(self) -> dict[str, Any]:
        """The counters, for status.json: what the broker took, and with confirmation what reached Orion."""
        out: dict[str, Any] = asdict(self.counters)
        if self._confirmer is None:
            for key in ("confirmed", "republished", "confirm_errors"):
                del out[key]
        return out

    async def close(self) -> None:
        """Publish `offline` (retained) and disconnect cleanly, so the broker drops the last will."""
        async with self._lock:
            if self._confirmer is not None:
                await self._confirmer.close()
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
        verb = "refused the connection" if self._refused else "unreachable"
        if self._up is not False:
            self._log.warning("broker %s:%d %s, readings stay buffered: %s", self.config.host, self.port, verb, reason)
        else:
            self._log.debug("broker %s:%d still %s: %s", self.config.host, self.port, verb, reason)
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
            # aiomqtt and paho call nothing but the logging methods, which the adapter has: their
            # lines then carry the uplink's component like ours
            logger=cast(logging.Logger, self._client_log),
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            code = getattr(exc, "rc", None)
            self._refused = getattr(code, "value", code) in _REFUSED_CONNECT
            self._mark_down(f"{exc}; check username, password and client_id against the broker's settings"
                            if self._refused else str(exc))
            return None
        self._refused = False
        session = _Session(client, self._mark_down)
        try:
            code = await session.publish(self.status_topic, self._status("online"), retain=True, properties=None,
                                         timeout=cfg.ack_timeout_s)
        except (ConnectionError, TimeoutError) as exc:
            await session.close()
            # str(TimeoutError()) is empty: say what timed out
            self._mark_down(f"status publish failed: {str(exc) or f'no PUBACK within {cfg.ack_timeout_s:g} s'}")
            return None
        if code.is_failure:
            self._log.warning("broker refused the status message on %s: %s", self.status_topic, code)
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self._mark_up()
        return session

    # -- planning (pure) ---------------------------------------------------------------------------

    def _apikey(self, reading: Reading) -> str:
        """The API key of the agent's config group for this reading: the first matching rule, else `apikey`."""
        for rule, pattern in self._apikeys:
            if ((rule.entity_type is None or rule.entity_type == reading.entity_type)
                    and (pattern is None or pattern.fullmatch(reading.entity_id))):
                return rule.apikey
        if self.config.apikey is None:
            raise ReadingError(
                f"{reading.entity_id}: no apikey for entity type {reading.entity_type!r}, got no [[uplinks.apikeys]] "
                "rule that matches it and no apikey; add a rule or set apikey",
                entity_id=reading.entity_id,
            )
        return self.config.apikey

    def _iota_topic(self, apikey: str, device: str) -> str:
        prefix = ""
        if self.config.topic_style is TopicStyle.PROTOCOL:
            prefix = "/json" if self.config.format is MqttFormat.IOTA_JSON else "/ul"
        return f"{prefix}/{apikey}/{device}/attrs"

    def orion_entity_id(self, reading: Reading) -> str:
        """The id of the Orion entity the agent writes this reading to (`confirm.entity_id`, default the entity id)."""
        confirm = self.config.confirm
        if confirm is None or confirm.entity_id == "{entity_id}":
            return reading.entity_id
        device = iota.device_id(reading, self.config.device_id) if "{device_id}" in confirm.entity_id else ""
        return confirm.entity_id.format(entity_id=reading.entity_id, entity_type=reading.entity_type,
                                        adapter=reading.source.adapter, device=reading.source.device,
                                        device_id=device)

    def _make_topic(self, reading: Reading) -> tuple[str, int]:
        cfg = self.config
        if cfg.format is MqttFormat.NGSI_V2:
            topic = cfg.topic.format(
                gateway_id=self._context.gateway_id,
                entity_type=reading.entity_type,
                entity_id=reading.entity_id,
                adapter=reading.source.adapter,
                device=reading.source.device,
            )
            return _check_topic(f"{reading.entity_id}: topic", topic), 0
        assert self._sizing is not None
        topic = self._iota_topic(self._apikey(reading), iota.device_id(reading, cfg.device_id))
        return topic, self._sizing.entity(self.orion_entity_id(reading), reading.entity_type)

    def _topic(self, reading: Reading) -> tuple[str, int]:
        """The reading's topic and per-entity agent bytes, from the cache when its template fields were seen before."""
        key: object = (reading.entity_id if self._topic_by_id else
                       (reading.entity_id, reading.entity_type, reading.source.adapter, reading.source.device))
        found = self._topics.get(key)
        if found is None:
            found = self._make_topic(reading)  # a ReadingError is raised each time, never cached
            if len(self._topics) >= _TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[key] = found
        return found

    def _render(self, reading: Reading) -> tuple[str, bytes, int]:
        """(topic, serialized part, per-entity agent bytes) of one reading; ReadingError if it cannot be sent so."""
        cfg = self.config
        enc = cfg.value_encoding
        topic, entity = self._topic(reading)
        if cfg.format is MqttFormat.NGSI_V2:
            return topic, orjson.dumps(to_v2_entity(reading, encoding=enc)), 0
        if cfg.format is MqttFormat.IOTA_JSON:
            return topic, iota.json_measure_bytes(reading, encoding=enc, sequence=self._sequence), entity
        return topic, iota.ul_group(reading, encoding=enc, sequence=self._sequence).encode(), entity

    def _plan(self, batch: Sequence[Reading]) -> tuple[list[_Message], dict[int, str]]:
        """Messages for a batch (one per topic, split by size) and the records that cannot be sent."""
        cfg = self.config
        rejected: dict[int, str] = {}
        by_topic: dict[str, list[_Part]] = {}
        render = self._render
        for i, reading in enumerate(batch):
            try:
                topic, body, entity = render(reading)
            except ReadingError as exc:
                rejected[i] = str(exc)
                continue
            items = by_topic.get(topic)
            if items is None:
                items = by_topic[topic] = []
            items.append((reading.observed_at, i, reading.seq, body, entity))

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

        agent = None if self._sizing is None else _AgentLimit(self._sizing, batch, ul=cfg.format is MqttFormat.IOTA_UL,
                                                              sequence=self._sequence is not None)
        messages: list[_Message] = []
        for topic, items in by_topic.items():
            if cfg.format is not MqttFormat.NGSI_V2:
                # The agents apply a multi-measure in array order; Orion keeps the last one as current.
                # Sorted by (observed_at, index): the index is unique, so the bytes are never compared.
                items.sort()
            chunks, too_big = _pack(items, limit=cfg.max_message_bytes, size=size, weight=weight, agent=agent)
            for part, key, n in too_big:
                index = part[1]
                entity_id = batch[index].entity_id
                if key == "max_message_bytes":
                    rejected[index] = (
                        f"{entity_id}: message of {n} bytes exceeds max_message_bytes {cfg.max_message_bytes}, "
                        "got one reading too large to send; raise max_message_bytes (within the broker's limit) "
                        "or split the reading at the source"
                    )
                else:
                    rejected[index] = (
                        f"{entity_id}: the IoT Agent would send Orion a request of up to {n} bytes for this one "
                        f"reading, over orion_max_request_bytes {cfg.orion_max_request_bytes}, got one reading too "
                        "large for Orion; raise orion_max_request_bytes to the Orion's -inReqPayloadMaxSize or "
                        "split the reading at the source"
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
                    verb = "refused the connection" if self._refused else "unreachable"
                    retry = Outcome(Status.RETRY, f"broker {self.config.host}:{self.port} {verb}: {self._last_error}",
                                    Fault.CONFIGURATION if self._refused else Fault.TRANSIENT)
                    for m in messages:
                        for i in m.indices:
                            outcomes[i] = retry
                elif self._confirmer is None:
                    await self._send_all(self._session, messages, outcomes)
                else:
                    await self._send_confirmed(self._confirmer, self._session, messages, outcomes, batch)
            final = [o if o is not None else Outcome(Status.RETRY, "not sent") for o in outcomes]
            self.counters.retried += sum(1 for o in final if o.status is Status.RETRY)
            return final

    async def _send_confirmed(self, confirmer: OrionConfirmer, session: _Session, messages: list[_Message],
                              outcomes: list[Outcome | None], batch: Sequence[Reading]) -> None:
        """Rounds of one message per Orion entity: publish, then wait until Orion shows each entity at its last seq.

        A message of an entity goes out only once the entity's previous message is confirmed: a newer
        message arriving would otherwise also "confirm" an older one that was lost. Records of an
        entity not confirmed in time, and its later messages, are RETRY.
        """
        queues: dict[str, deque[_Message]] = {}
        for message in messages:
            # the agent applies the message's elements in time order: its last element's seq is what stays
            queues.setdefault(self.orion_entity_id(batch[message.indices[-1]]), deque()).append(message)
        while queues:
            current = {entity_id: queue.popleft() for entity_id, queue in queues.items()}
            await self._send_all(session, list(current.values()), outcomes)
            targets: dict[str, int] = {}
            for entity_id, message in current.items():
                seq = batch[message.indices[-1]].seq
                if outcomes[message.indices[0]] is DELIVERED and seq is not None:
                    targets[entity_id] = seq
            confirmation = await confirmer.wait(targets) if targets else None
            self.counters.confirm_errors = confirmer.errors
            for entity_id, message in current.items():
                queue = queues[entity_id]
                if confirmation is not None and entity_id in confirmation.confirmed:
                    self.counters.confirmed += len(message.indices)
                    if not queue:
                        del queues[entity_id]
                    continue
                if entity_id in targets:  # the broker has it, Orion does not show it
                    assert confirmation is not None
                    late = Outcome(Status.RETRY, confirmation.reason)
                    self.counters.republished += len(message.indices)
                    for i in message.indices:
                        outcomes[i] = late
                waiting = Outcome(Status.RETRY, f"{entity_id}: not sent, an earlier message of the entity is not "
                                                "confirmed in Orion")
                for later in queue:
                    for i in later.indices:
                        outcomes[i] = waiting
                del queues[entity_id]
            if self._session is not session:
                return  # the connection is gone: what is left was never sent and stays RETRY

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
                    fault = Fault.CONFIGURATION if result.value == _NOT_AUTHORIZED else Fault.TRANSIENT
                    outcome = Outcome(Status.RETRY, f"{message.topic}: broker refused the message for now, got "
                                                    f"PUBACK {result.value:#04x} {result}", fault)
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

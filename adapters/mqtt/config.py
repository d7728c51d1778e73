"""The `[[adapters]] type = "mqtt"` section: broker, session, TLS and topic → Reading mappings, checked offline."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import AfterValidator, ValidationInfo, field_validator, model_validator

from adapters.jsonmap.config import MappingSection, at_least_one
from adapters.jsonmap.templates import FieldRef, check_literals, field_ref
from adapters.jsonmap.templates import parse_template as parse_placeholders
from gateway.adapter_api import AdapterConfig
from gateway.configbase import BrokerClient, Field, Host
from gateway.ngsi.identifiers import check_entity_type
from gateway.secrets import SecretRef
from gateway.tls import TlsSection

# --- templates ------------------------------------------------------------------------------------------
# Parsed here (config validation) and rendered by mapping.py, so both agree on one grammar; the path and
# brace grammar is the one every JSON-mapping adapter shares (adapters.jsonmap).

_TOPIC_REF_RE = re.compile(r"^topic\[(-?\d+)\]$", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicRef:
    """`{topic[N]}`: the N-th level of the message's topic (negative counts from the end)."""

    index: int


TemplatePart = str | TopicRef | FieldRef  # FieldRef: `{payload.a.b[0]}`, a field of the JSON payload

PLACEHOLDER_HELP = "placeholders are {topic[N]} or {payload.<field>[.<field>|[i]]...}"


def _placeholder(inner: str) -> TopicRef | FieldRef:
    m = _TOPIC_REF_RE.match(inner)
    if m:
        return TopicRef(index=int(m.group(1)))
    if not inner.startswith("payload."):
        raise ValueError(f"has an unknown placeholder {{{inner}}}; {PLACEHOLDER_HELP}")
    try:
        return field_ref(inner, "payload.")
    except ValueError:
        raise ValueError(f"has an invalid placeholder {{{inner}}}; {PLACEHOLDER_HELP}") from None


def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """Split `urn:ngsi-ld:Thing:{topic[1]}` into literal strings and placeholder references."""
    return parse_placeholders(text, _placeholder, PLACEHOLDER_HELP)


def parse_topic_filter(text: str) -> tuple[str, ...]:
    """Validate an MQTT topic filter (MQTT 3.1.1 §4.7) and split it into levels."""
    if not text:
        raise ValueError("must not be empty")
    if len(text.encode("utf-8")) > 65535 or "\x00" in text:
        raise ValueError("must be at most 65535 bytes of UTF-8 without NUL")
    levels = tuple(text.split("/"))
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError("may use '#' only as the whole last level (sensors/#)")
        if "+" in level and level != "+":
            raise ValueError("may use '+' only as a whole level (sensors/+/state)")
    return levels


def _template_has_refs(template: str) -> bool:
    return any(not isinstance(p, str) for p in parse_template(template))


def _check_literals(template: str) -> None:
    check_literals(parse_template(template))


def _check_topic_refs(template: str, info: ValidationInfo) -> None:
    topic = info.data.get("topic")
    if not isinstance(topic, str):
        return  # the topic itself is invalid and reported on its own key
    levels = topic.split("/")
    if levels[-1] == "#":
        return
    for part in parse_template(template):
        if isinstance(part, TopicRef) and not -len(levels) <= part.index < len(levels):
            raise ValueError(
                f"refers to {{topic[{part.index}]}} but the topic filter {topic!r} has {len(levels)} levels "
                f"(topic[0]..topic[{len(levels) - 1}])"
            )


# --- the section models ---------------------------------------------------------------------------------


class MqttProtocol(enum.Enum):
    V5 = "5"  # receive maximum bounds the messages in flight; session expiry keeps the queue across restarts
    V311 = "3.1.1"  # older brokers; in-flight bound is then the broker's max_inflight_messages


class RetainedMessages(enum.Enum):
    """What becomes of a message the broker flags retained: a stored copy it sends because we subscribed
    (at every connect with 3.1.1, at a new subscription with 5), not one published while we listen."""

    SKIP = "skip"  # acknowledged and counted, no reading: its value may be days old (a dead sensor's last)
    TAKE = "take"  # mapped like any message: for payloads that carry their own time (a `timestamp`)


def _check_topic(v: str) -> str:
    parse_topic_filter(v)
    return v


class Subscription(MappingSection):
    """One topic filter and how its JSON payloads become Readings (attributes, timestamp, lane: MappingSection)."""

    attributes_table: ClassVar[str] = "[[adapters.subscriptions.attributes]]"

    topic: Annotated[str, AfterValidator(_check_topic)] = Field(description="topic filter, + and # allowed")
    entity_id: str = Field(description="template, e.g. urn:ngsi-ld:WeatherObserved:{payload.deviceInfo.devEui}")
    entity_type: str = Field(description="literal or template, e.g. WeatherObserved")
    retained: RetainedMessages = Field(
        default=RetainedMessages.SKIP,
        description='"skip": retained copies the broker replays at subscribe make no reading; "take": they do',
    )

    @field_validator("entity_id")
    @classmethod
    def _entity_id(cls, v: str, info: ValidationInfo) -> str:
        _check_literals(v)
        _check_topic_refs(v, info)
        return v

    @field_validator("entity_type")
    @classmethod
    def _entity_type(cls, v: str, info: ValidationInfo) -> str:
        if _template_has_refs(v):
            _check_literals(v)
            _check_topic_refs(v, info)
        else:
            check_entity_type(v)
        return v


_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$", re.ASCII)


def _check_client_id(v: str | None) -> str | None:
    if v is not None and not _CLIENT_ID_RE.match(v):
        raise ValueError("must be 1-64 characters of A-Z a-z 0-9 . _ : - (stable: the broker keeps the session by it)")
    return v


class MqttAdapterConfig(AdapterConfig):
    host: Host = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: Annotated[str | None, AfterValidator(_check_client_id)] = Field(
        default=None, description="default edgegw-<gateway id>-<adapter name>"
    )
    username: str | None = None
    password: SecretRef | None = None
    tls: TlsSection | None = None
    protocol: MqttProtocol = MqttProtocol.V5
    keepalive_s: int = Field(default=60, ge=5, le=65535)
    session_expiry_s: int = Field(
        default=7 * 86_400, ge=60, le=0xFFFFFFFF, description="how long the broker queues for us while we are away"
    )
    max_inflight: int = Field(default=1000, ge=1, le=65535, description="unacknowledged messages at most")
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=4096,
        le=268_435_460,
        description="the largest message taken from the broker (the whole MQTT packet: payload, topic and "
        "~10 bytes); larger ones are dropped and counted as too_large",
    )
    reconnect_min_s: float = Field(default=1.0, ge=0.05, le=60)
    reconnect_max_s: float = Field(default=60.0, ge=0.05, le=3600)
    probe_s: float = Field(
        default=2.0,
        ge=0.05,
        le=60,
        description="while the broker cannot be reached at all, try again this often (with jitter)",
    )
    subscriptions: Annotated[tuple[Subscription, ...], at_least_one("[[adapters.subscriptions]]")]

    @model_validator(mode="after")
    def _consistent(self) -> MqttAdapterConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username; set username too")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"reconnect_max_s must be >= reconnect_min_s, got {self.reconnect_max_s} < {self.reconnect_min_s}"
            )
        return self

    def effective_client_id(self, gateway_id: str) -> str:
        return self.client_id or f"edgegw-{gateway_id}-{self.name}"[:64]

    def broker_clients(self, gateway_id: str) -> tuple[BrokerClient, ...]:
        """The adapter's one connection: no uplink or other adapter may share its client id on its broker."""
        return (BrokerClient((self.host.lower(), self.port), self.effective_client_id(gateway_id)),)


def template_text(parts: tuple[TemplatePart, ...]) -> str:
    """Back to the config spelling, for messages."""
    out = []
    for p in parts:
        if isinstance(p, TopicRef):
            out.append(f"{{topic[{p.index}]}}")
        elif isinstance(p, FieldRef):
            out.append(f"{{{p.text}}}")
        else:
            out.append(p)
    return "".join(out)

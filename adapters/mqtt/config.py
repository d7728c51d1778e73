"""The `[[adapters]] type = "mqtt"` section: broker, session, TLS and topic → Reading mappings, checked offline."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ValidationInfo, field_validator, model_validator

from gateway.adapter_api import AdapterConfig
from gateway.configbase import Field, Section
from gateway.ngsi.identifiers import check_attribute_name, check_entity_type, check_id_template
from gateway.records import Lane
from gateway.secrets import SecretRef

# --- templates and JSON paths -------------------------------------------------------------------------
# Parsed here (config validation) and rendered by mapping.py, so both agree on one grammar.

_KEY = r"[^.\[\]{}\s]+"
_PATH_RE = re.compile(rf"^{_KEY}(?:\.{_KEY}|\[\d+\])*$")
_PATH_PART_RE = re.compile(rf"\.?({_KEY})|\[(\d+)\]")
_TOPIC_REF_RE = re.compile(r"^topic\[(-?\d+)\]$", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicRef:
    """`{topic[N]}`: the N-th level of the message's topic (negative counts from the end)."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadRef:
    """`{payload.a.b[0]}`: a field of the JSON payload."""

    path: tuple[str | int, ...]
    text: str


TemplatePart = str | TopicRef | PayloadRef

PLACEHOLDER_HELP = "placeholders are {topic[N]} or {payload.<field>[.<field>|[i]]...}"


def parse_path(text: str) -> tuple[str | int, ...]:
    """`deviceInfo.devEui`, `rxInfo[0].rssi` → ("deviceInfo", "devEui"), ("rxInfo", 0, "rssi")."""
    if not _PATH_RE.match(text):
        raise ValueError(
            "must be a JSON path like object.temperature or rxInfo[0].rssi (keys separated by '.', "
            "list items as [i])"
        )
    return tuple(m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART_RE.finditer(text))


def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """Split `urn:ngsi-ld:Thing:{topic[1]}` into literal strings and placeholder references."""
    parts: list[TemplatePart] = []
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        end = text.find("}", pos)
        if start < 0:
            if end >= 0:
                raise ValueError(f"has a '}}' without its '{{'; {PLACEHOLDER_HELP}")
            parts.append(text[pos:])
            break
        if 0 <= end < start:
            raise ValueError(f"has a '}}' without its '{{'; {PLACEHOLDER_HELP}")
        close = text.find("}", start)
        if close < 0:
            raise ValueError(f"has a '{{' without its '}}'; {PLACEHOLDER_HELP}")
        if start > pos:
            parts.append(text[pos:start])
        inner = text[start + 1 : close]
        m = _TOPIC_REF_RE.match(inner)
        if m:
            parts.append(TopicRef(index=int(m.group(1))))
        elif inner.startswith("payload."):
            try:
                path = parse_path(inner[len("payload.") :])
            except ValueError:
                raise ValueError(f"has an invalid placeholder {{{inner}}}; {PLACEHOLDER_HELP}") from None
            parts.append(PayloadRef(path=path, text=inner))
        else:
            raise ValueError(f"has an unknown placeholder {{{inner}}}; {PLACEHOLDER_HELP}")
        pos = close + 1
    if not parts:
        raise ValueError("must not be empty")
    return tuple(parts)


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
    # The shared checker knows `{name}` placeholders only: hand it ours in that spelling.
    check_id_template("".join(p if isinstance(p, str) else "{x}" for p in parse_template(template)))


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


class TimeFormat(enum.Enum):
    ISO8601 = "iso8601"  # 2024-05-01T12:00:00+09:00; without an offset the `zone` applies
    EPOCH_S = "epoch_s"
    EPOCH_MS = "epoch_ms"


class WhenAttributeMissing(enum.Enum):
    REJECT = "reject"  # the whole message is malformed
    SKIP = "skip"  # the reading carries the attributes that are present


class WhenTimeMissing(enum.Enum):
    REJECT = "reject"
    ARRIVAL = "arrival"  # stamp the gateway's arrival time (time_source = gateway)


class NgsiType(enum.Enum):
    NUMBER = "Number"
    TEXT = "Text"
    BOOLEAN = "Boolean"
    DATETIME = "DateTime"
    STRUCTURED_VALUE = "StructuredValue"


class LaneName(enum.Enum):
    ALERT = "alert"
    NORMAL = "normal"
    BULK = "bulk"

    @property
    def lane(self) -> Lane:
        return Lane[self.name]


_UNIT_RE = re.compile(r"^[A-Z0-9]{2,3}$", re.ASCII)


def _check_unit(v: str | None) -> str | None:
    if v is not None and not _UNIT_RE.match(v):
        raise ValueError("must be a UN/CEFACT common code of 2-3 capitals/digits (CEL, MTR, P1, KWH)")
    return v


def _check_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name like Asia/Tokyo or UTC") from None
    return v


def _check_path(v: str) -> str:
    parse_path(v)
    return v


def _check_topic(v: str) -> str:
    parse_topic_filter(v)
    return v


JsonPath = Annotated[str, AfterValidator(_check_path)]


class TlsSection(Section):
    ca_file: Path | None = Field(default=None, description="CA bundle that signed the broker; system CAs if unset")
    cert_file: Path | None = Field(default=None, description="client certificate for mutual TLS")
    key_file: Path | None = Field(default=None, description="client private key for mutual TLS")

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together for mutual TLS; set both or neither")
        return self


class AttributeMapping(Section):
    path: JsonPath = Field(description="JSON path into the payload, e.g. object.temperature")
    name: str = Field(description="NGSI attribute name")
    type: NgsiType = NgsiType.NUMBER
    unit: Annotated[str | None, AfterValidator(_check_unit)] = None
    scale: float | None = Field(default=None, description="multiply Number values by this (0.1 for tenths)")
    missing: WhenAttributeMissing = WhenAttributeMissing.REJECT

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_attribute_name(v)
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v == 0):
            raise ValueError("must be a finite, non-zero number")
        return v

    @model_validator(mode="after")
    def _number_only(self) -> AttributeMapping:
        if self.scale is not None and self.type is not NgsiType.NUMBER:
            raise ValueError(f"scale applies to Number attributes only, got type {self.type.value!r}")
        return self


class TimestampSection(Section):
    path: JsonPath = Field(description="JSON path of the device's observation time, e.g. time")
    format: TimeFormat = TimeFormat.ISO8601
    zone: Annotated[str, AfterValidator(_check_zone)] = Field(
        default="Asia/Tokyo", description="zone of ISO 8601 times written without an offset"
    )
    missing: WhenTimeMissing = WhenTimeMissing.REJECT


class Subscription(Section):
    topic: Annotated[str, AfterValidator(_check_topic)] = Field(description="topic filter, + and # allowed")
    entity_id: str = Field(description="template, e.g. urn:ngsi-ld:WeatherObserved:{payload.deviceInfo.devEui}")
    entity_type: str = Field(description="literal or template, e.g. WeatherObserved")
    attributes: tuple[AttributeMapping, ...]
    timestamp: TimestampSection | None = Field(default=None, description="unset: the arrival time is used")
    lane: LaneName = LaneName.NORMAL

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

    @field_validator("attributes")
    @classmethod
    def _unique(cls, v: tuple[AttributeMapping, ...]) -> tuple[AttributeMapping, ...]:
        if not v:
            raise ValueError("must map at least one attribute ([[adapters.subscriptions.attributes]]), got none")
        seen: set[str] = set()
        for a in v:
            if a.name in seen:
                raise ValueError(f"must name each attribute once, got {a.name!r} twice")
            seen.add(a.name)
        return v


_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$", re.ASCII)


def _check_client_id(v: str | None) -> str | None:
    if v is not None and not _CLIENT_ID_RE.match(v):
        raise ValueError("must be 1-64 characters of A-Z a-z 0-9 . _ : - (stable: the broker keeps the session by it)")
    return v


class MqttAdapterConfig(AdapterConfig):
    host: str = Field(default="127.0.0.1", min_length=1)
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
    reconnect_min_s: float = Field(default=1.0, ge=0.05, le=60)
    reconnect_max_s: float = Field(default=60.0, ge=0.05, le=3600)
    subscriptions: tuple[Subscription, ...]

    @field_validator("subscriptions")
    @classmethod
    def _some(cls, v: tuple[Subscription, ...]) -> tuple[Subscription, ...]:
        # not Field(min_length=1): pydantic would also report "too short" when an item is merely invalid
        if not v:
            raise ValueError("must list at least one [[adapters.subscriptions]] entry, got none")
        return v

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


def template_text(parts: tuple[TemplatePart, ...]) -> str:
    """Back to the config spelling, for messages."""
    out = []
    for p in parts:
        if isinstance(p, TopicRef):
            out.append(f"{{topic[{p.index}]}}")
        elif isinstance(p, PayloadRef):
            out.append(f"{{{p.text}}}")
        else:
            out.append(p)
    return "".join(out)


def describe(value: Any, limit: int = 60) -> str:
    """A short rendering of a payload value for error messages (never the whole payload)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The `[[adapters]] type = "http_poll"` section: URL, headers, TLS, cadence and document → Reading mappings."""

from __future__ import annotations

import codecs
import enum
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, field_validator, model_validator

from gateway.adapter_api import AdapterConfig
from gateway.configbase import Field, HttpUrl, Section
from gateway.ngsi.identifiers import (
    check_attribute_name,
    check_attribute_type,
    check_entity_type,
    check_id_template,
)
from gateway.records import Lane

# --- paths and templates ----------------------------------------------------------------------------
# Parsed here (config validation) and used by mapping.py, so both agree on one grammar. Keys are any
# characters but `.`, `[`, `]`, `{`, `}` and blanks, so Japanese keys (`水位`, `観測時刻`) work as they are.

_KEY = r"[^.\[\]{}\s]+"
_PATH_RE = re.compile(rf"^(?:{_KEY}|\[\d+\])(?:\.{_KEY}|\[\d+\])*$")
_PATH_PART_RE = re.compile(rf"\.?({_KEY})|\[(\d+)\]")
PATH_HELP = "must be a JSON path like data.stations or 観測値[0].水位 (keys separated by '.', list items as [i])"
ROOT = "$"  # `items = "$"`: the document itself is the list of items

PathPart = str | int


def parse_path(text: str) -> tuple[PathPart, ...]:
    """`data.stations[0].水位` → ("data", "stations", 0, "水位")."""
    if not _PATH_RE.match(text):
        raise ValueError(PATH_HELP)
    return tuple(m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART_RE.finditer(text))


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRef:
    """`{stationCode}` in a template: a field of the item, by path."""

    path: tuple[PathPart, ...]
    text: str


TemplatePart = str | FieldRef


def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """Split `urn:ngsi-ld:WaterObserved:{stationCode}` into literal text and item field references."""
    parts: list[TemplatePart] = []
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        end = text.find("}", pos)
        if start < 0 or 0 <= end < start:
            if end >= 0:
                raise ValueError("has a '}' without its '{'; placeholders are {<path of an item field>}")
            parts.append(text[pos:])
            break
        close = text.find("}", start)
        if close < 0:
            raise ValueError("has a '{' without its '}'; placeholders are {<path of an item field>}")
        if start > pos:
            parts.append(text[pos:start])
        inner = text[start + 1 : close]
        try:
            parts.append(FieldRef(path=parse_path(inner), text=inner))
        except ValueError:
            raise ValueError(
                f"has an invalid placeholder {{{inner}}}; placeholders are item field paths like "
                "{stationCode} or {観測所.番号}"
            ) from None
        pos = close + 1
    if not parts:
        raise ValueError("must not be empty")
    return tuple(parts)


def _check_path(v: str) -> str:
    parse_path(v)
    return v


def _check_items(v: str | None) -> str | None:
    if v is not None and v != ROOT:
        parse_path(v)
    return v


def _check_entity_id_template(v: str) -> str:
    parts = parse_template(v)
    if not any(isinstance(p, FieldRef) for p in parts):
        raise ValueError("must contain at least one {field} placeholder, or every item gets the same entity id")
    # the shared checker knows ASCII `{name}` placeholders only: hand it ours in that spelling
    check_id_template("".join(p if isinstance(p, str) else "{x}" for p in parts))
    return v


JsonPath = Annotated[str, AfterValidator(_check_path)]

# --- choices ---------------------------------------------------------------------------------------------


class TimeFormat(enum.Enum):
    ISO8601 = "iso8601"  # 2026-07-01T09:10:00+09:00; without an offset the `zone` applies
    EPOCH_S = "epoch_s"
    EPOCH_MS = "epoch_ms"
    STRPTIME = "strptime"  # `pattern` such as "%Y%m%d%H%M"; without %z the `zone` applies
    LOCAL = "local"  # 2026/07/01 09:10, 2026-07-01 09:10:00, 2026年7月1日 9時10分 (24:00 = next day 0:00) in `zone`


class WhenAttributeMissing(enum.Enum):
    REJECT = "reject"  # the item is malformed
    SKIP = "skip"  # the reading carries the attributes that are present


class WhenTimeMissing(enum.Enum):
    REJECT = "reject"
    ARRIVAL = "arrival"  # stamp the poll time (time_source = gateway)


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


class TlsVerify(enum.Enum):
    FULL = "full"  # certificate chain and host name
    OFF = "off"  # self-signed appliances on a closed network only; logged at WARNING on every start


# --- validators ------------------------------------------------------------------------------------------

_UNIT_RE = re.compile(r"^[A-Z0-9]{2,3}$", re.ASCII)
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", re.ASCII)
_REF_RE = re.compile(r"^(secret|env):([A-Za-z_][A-Za-z0-9_.-]{0,127})$")
# Headers and query parameters that carry credentials: their values must be secret references.
_SENSITIVE = re.compile(r"authorization|cookie|api[-_]?key|token|secret|password|passwd|key$", re.IGNORECASE)
# The adapter owns these: conditional GET and the body framing.
_MANAGED_HEADERS = frozenset({"if-none-match", "if-modified-since", "host", "content-length", "transfer-encoding"})
_REF_HELP = 'use a secret reference: "secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"'


def is_secret_ref(value: str) -> bool:
    return value.startswith(("secret:", "env:"))


def _check_ref_or_text(what: str, name: str, value: str) -> None:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{what} {name!r} must be one line without control characters")
    if is_secret_ref(value):
        if not _REF_RE.match(value):
            raise ValueError(f"{what} {name!r} is not a valid secret reference; {_REF_HELP}")
    elif _SENSITIVE.search(name):
        raise ValueError(f"{what} {name!r} carries a credential and must not be written in clear; {_REF_HELP}")


def _check_unit(v: str | None) -> str | None:
    if v is not None and not _UNIT_RE.match(v):
        raise ValueError("must be a UN/CEFACT common code of 2-3 capitals/digits (MTR, CMT, CEL, MMT)")
    return v


def _check_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name like Asia/Tokyo or UTC") from None
    return v


def _check_encoding(v: str | None) -> str | None:
    if v is not None:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError("must be a text encoding Python knows, like utf-8, cp932 or euc_jp") from None
    return v


def _check_url(v: str) -> str:
    parts = urlsplit(v)
    if "@" in parts.netloc:
        raise ValueError(f"must not carry credentials (user:password@); put them in a header; {_REF_HELP}")
    if parts.query and any(_SENSITIVE.search(k.split("=")[0]) for k in parts.query.split("&")):
        raise ValueError(f"must not carry a credential in its query; move it to [adapters.params] and {_REF_HELP}")
    return v


# --- sections --------------------------------------------------------------------------------------------


class TlsSection(Section):
    verify: TlsVerify = TlsVerify.FULL
    ca_file: Path | None = Field(default=None, description="CA bundle that signed the server; system CAs if unset")
    cert_file: Path | None = Field(default=None, description="client certificate for mutual TLS")
    key_file: Path | None = Field(default=None, description="client private key for mutual TLS")

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together for mutual TLS; set both or neither")
        if self.verify is TlsVerify.OFF and self.ca_file is not None:
            raise ValueError('ca_file is unused with verify = "off"; remove one of them')
        return self


class AttributeMapping(Section):
    path: JsonPath = Field(description="JSON path inside the item, e.g. 水位 or level.value")
    name: str = Field(description="NGSI attribute name")
    type: NgsiType = NgsiType.NUMBER
    unit: Annotated[str | None, AfterValidator(_check_unit)] = None
    scale: float | None = Field(default=None, description="multiply Number values by this (0.01 for cm → m)")
    missing: WhenAttributeMissing = WhenAttributeMissing.REJECT

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_attribute_name(v)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v == 0):
            raise ValueError("must be a finite, non-zero number")
        return v

    @model_validator(mode="after")
    def _number_only(self) -> AttributeMapping:
        check_attribute_type(self.type.value)
        if self.scale is not None and self.type is not NgsiType.NUMBER:
            raise ValueError(f"scale applies to Number attributes only, got type {self.type.value!r}")
        return self


_SAMPLE_TIME = datetime(2026, 7, 1, 9, 10, 30, tzinfo=timezone.utc)


class TimestampSection(Section):
    path: JsonPath = Field(description="JSON path of the observation time inside the item, e.g. 観測時刻")
    format: TimeFormat = TimeFormat.ISO8601
    pattern: str | None = Field(default=None, description='strptime pattern for format = "strptime"')
    zone: Annotated[str, AfterValidator(_check_zone)] = Field(
        default="Asia/Tokyo", description="zone of local times written without an offset"
    )
    missing: WhenTimeMissing = WhenTimeMissing.REJECT

    @model_validator(mode="after")
    def _pattern(self) -> TimestampSection:
        if self.format is TimeFormat.STRPTIME:
            if not self.pattern:
                raise ValueError('format = "strptime" needs a pattern, e.g. pattern = "%Y%m%d%H%M"')
            try:
                datetime.strptime(_SAMPLE_TIME.strftime(self.pattern), self.pattern)
            except ValueError:
                raise ValueError(
                    f"pattern must be a strptime pattern that reads back what it writes, like %Y/%m/%d %H:%M, "
                    f"got {self.pattern!r}"
                ) from None
            if "%Y" not in self.pattern and "%y" not in self.pattern:
                raise ValueError(f"pattern must contain the year (%Y), got {self.pattern!r}")
        elif self.pattern is not None:
            raise ValueError(f'pattern applies to format = "strptime" only, got format {self.format.value!r}')
        return self


class ItemMapping(Section):
    items: Annotated[str | None, AfterValidator(_check_items)] = Field(
        default=None, description='path of the list of items; "$" if the document is the list; unset: one item'
    )
    entity_id: Annotated[str, AfterValidator(_check_entity_id_template)] = Field(
        description="template, e.g. urn:ngsi-ld:WaterObserved:{stationCode}"
    )
    entity_type: str
    attributes: tuple[AttributeMapping, ...]
    timestamp: TimestampSection | None = Field(default=None, description="unset: the poll time is used")
    null_values: tuple[str, ...] = Field(
        default=(), description='strings that mean "no value" (欠測, 閉局, -): treated like a missing field'
    )
    lane: LaneName = LaneName.NORMAL

    @field_validator("entity_type")
    @classmethod
    def _entity_type(cls, v: str) -> str:
        return check_entity_type(v)

    @field_validator("attributes")
    @classmethod
    def _unique(cls, v: tuple[AttributeMapping, ...]) -> tuple[AttributeMapping, ...]:
        if not v:
            raise ValueError("must map at least one attribute ([[adapters.mappings.attributes]]), got none")
        seen: set[str] = set()
        for a in v:
            if a.name in seen:
                raise ValueError(f"must name each attribute once, got {a.name!r} twice")
            seen.add(a.name)
        return v


class HttpPollConfig(AdapterConfig):
    type: Literal["http_poll"]
    url: Annotated[HttpUrl, AfterValidator(_check_url)]
    headers: dict[str, str] = Field(default_factory=dict, description='values may be "secret:<name>" / "env:<VAR>"')
    params: dict[str, str] = Field(default_factory=dict, description="query parameters; values may be secret refs")
    interval_s: float = Field(default=60.0, ge=0.05, le=86_400)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    encoding: Annotated[str | None, AfterValidator(_check_encoding)] = Field(
        default=None, description="unset: the charset of the Content-Type, else UTF-8"
    )
    tls: TlsSection | None = None
    mappings: tuple[ItemMapping, ...]

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _TOKEN_RE.match(name):
                raise ValueError(f"header name {name!r} must be an HTTP token (letters, digits, - and !#$%&'*+.^_`|~)")
            if name.lower() in _MANAGED_HEADERS:
                raise ValueError(f"header {name!r} is set by the adapter itself; remove it")
            _check_ref_or_text("header", name, value)
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            _check_ref_or_text("parameter", name, value)
        return v

    @field_validator("mappings")
    @classmethod
    def _some(cls, v: tuple[ItemMapping, ...]) -> tuple[ItemMapping, ...]:
        # not Field(min_length=1): pydantic would also report "too short" when an item is merely invalid
        if not v:
            raise ValueError("must list at least one [[adapters.mappings]] entry, got none")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> HttpPollConfig:
        if self.timeout_s > self.interval_s:
            raise ValueError(
                f"timeout_s must be at most interval_s so a poll ends before the next is due, "
                f"got {self.timeout_s} > {self.interval_s}"
            )
        if self.tls is not None and not self.url.startswith("https://"):
            raise ValueError("[adapters.tls] applies to https:// URLs only; remove it or use https")
        return self

    @property
    def display_url(self) -> str:
        """The URL without its query, for logs (a query may hold keys the technician did not move out)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

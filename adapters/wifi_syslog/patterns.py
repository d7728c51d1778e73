"""Vendor patterns as data: load and validate patterns.toml, match syslog messages into Wi-Fi events."""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import Enum
from importlib import resources
from typing import Any, NamedTuple

from pydantic import ValidationError, field_validator, model_validator

from adapters.radius.errors import MacAddressError
from adapters.radius.mac import MacAddress, normalize_mac, redact_macs
from adapters.wifi_syslog.errors import WifiEventError, quote
from adapters.wifi_syslog.message import SyslogMessage
from gateway.configbase import Field, Identifier, Section, format_validation_error, parse_toml
from gateway.errors import ConfigError

__all__ = ["AssociationKind", "PatternSet", "WifiEvent", "load_patterns"]


class AssociationKind(Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class FieldMap(Section):
    """Which field (named group or JSON key) holds each event value."""

    client_mac: str
    kind: str
    interface: str | None = None
    ap_mac: str | None = None
    ssid: str | None = None


class PatternSpec(Section):
    name: Identifier
    regex: str
    fields: FieldMap
    kinds: dict[str, AssociationKind] = Field(min_length=1)
    contains: str | None = None
    json_group: str | None = None
    params_group: str | None = None
    require: dict[str, str] = {}  # noqa: RUF012 - pydantic model: the default is copied for each instance

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression ({exc})") from None
        return v

    @model_validator(mode="after")
    def _groups_exist(self) -> PatternSpec:
        groups = set(re.compile(self.regex).groupindex)
        for key in ("json_group", "params_group"):
            group = getattr(self, key)
            if group is not None and group not in groups:
                raise ValueError(f"{key} {group!r} is not a named group of regex (groups: {sorted(groups)})")
        if self.json_group is None:
            for key in ("client_mac", "kind"):
                name = getattr(self.fields, key)
                if name not in groups:
                    raise ValueError(f"fields.{key} {name!r} is not a named group of regex and no json_group is set")
        return self


class VendorSpec(Section):
    source: str
    description: str = ""
    patterns: list[PatternSpec] = Field(min_length=1)


class PatternFile(Section):
    vendors: dict[Identifier, VendorSpec] = Field(min_length=1)


class WifiEvent(NamedTuple):
    """A station joined or left an AP; `time` is the syslog timestamp, or arrival when the line had none.

    Immutable; a NamedTuple for the same per-line hot-path reason as SyslogMessage. Build it with keywords.
    """

    kind: AssociationKind
    client_mac: MacAddress
    time: datetime
    vendor: str
    pattern: str
    hostname: str | None = None
    interface: str | None = None
    ap_mac: MacAddress | None = None
    ssid: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def ap(self) -> str:
        """The AP as logs can name it: its MAC when known, else `host/interface`."""
        if self.ap_mac is not None:
            return self.ap_mac.value
        return f"{self.hostname or '-'}/{self.interface or '-'}"

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True))
        return redact_macs(f"WifiEvent({inner})")


class _Compiled:
    """One pattern with everything the hot path needs precomputed."""

    __slots__ = (
        "ap_mac",
        "ap_mac_where",
        "client_mac",
        "client_mac_where",
        "contains",
        "interface",
        "json_group",
        "kind",
        "kinds",
        "name",
        "params_group",
        "regex",
        "require",
        "require_keys",
        "require_values",
        "ssid",
        "vendor",
        "where",
    )

    def __init__(self, vendor: str, spec: PatternSpec) -> None:
        self.vendor = vendor
        self.name = spec.name
        self.where = f"wifi syslog pattern {vendor}.{spec.name}"
        self.regex = re.compile(spec.regex)
        self.contains = spec.contains
        self.json_group = spec.json_group
        self.params_group = spec.params_group
        self.require = tuple(spec.require.items())
        # compared as one tuple built by map() in C rather than by a generator per line
        self.require_keys = tuple(spec.require)
        self.require_values = tuple(spec.require.values())
        self.kinds = dict(spec.kinds)
        self.client_mac = spec.fields.client_mac
        self.kind = spec.fields.kind
        self.interface = spec.fields.interface
        self.ap_mac = spec.fields.ap_mac
        self.ssid = spec.fields.ssid
        self.client_mac_where = f"{self.where} client_mac"
        self.ap_mac_where = f"{self.where} ap_mac"


class PatternSet:
    """Compiled vendor patterns, tried in file order; the first that matches decides."""

    def __init__(self, spec: PatternFile) -> None:
        self.spec = spec
        self._patterns = tuple(_Compiled(vendor, p) for vendor, v in spec.vendors.items() for p in v.patterns)

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(self.spec.vendors)

    def match(self, msg: SyslogMessage, *, now: datetime) -> WifiEvent | None:
        """The association event in `msg`, None if no pattern applies or the event word is not a join/leave."""
        subject = msg.subject
        for c in self._patterns:
            if c.contains is not None and c.contains not in subject:
                continue
            m = c.regex.search(subject)
            if m is None:
                continue
            values: dict[str, Any] = m.groupdict()
            if c.json_group is not None:
                found = _json_fields(values[c.json_group], c.where)
                for k, v in values.items():  # a plain loop: a generator costs a frame per line
                    if v is not None:
                        found[k] = v
                values = found
            if c.require and tuple(map(values.get, c.require_keys)) != c.require_values:
                continue
            return _event(c, values, msg, now)
        return None


_raw_decode = json.JSONDecoder().raw_decode
_ONLY_STR = frozenset({str})


def _json_fields(text: str, where: str) -> dict[str, Any]:
    try:
        # raw_decode skips json.loads' wrapper (BOM and whitespace checks, a second regex): when it
        # reads the whole text from its first character, json.loads would return the same object.
        obj, end = _raw_decode(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        end = -1
    if end != len(text):
        # whitespace around the object, extra data or an error: json.loads decides as before
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
    if not isinstance(obj, dict):
        raise WifiEventError(
            where=where,
            what="json_group does not hold a JSON object",
            got=quote(text),
            fix="the firmware changed its format; update patterns.toml",
        )
    if _ONLY_STR.issuperset(map(type, obj.values())):
        # the usual flat object of strings, fresh from the decoder: the type scan runs in C, the
        # comprehension below in Python at twice the cost
        return obj
    # JSON object keys are always str already
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}


def _event(c: _Compiled, values: dict[str, Any], msg: SyslogMessage, now: datetime) -> WifiEvent | None:
    word = values.get(c.kind)
    kind = c.kinds.get(word) if isinstance(word, str) else None
    if kind is None:
        return None
    raw_mac = values.get(c.client_mac)
    if raw_mac is None:
        raise WifiEventError(where=c.where, what=f"field {c.client_mac!r} (client_mac) is missing", got="none")
    try:
        client = _mac(raw_mac, c.client_mac_where)
        raw_ap = values.get(c.ap_mac) if c.ap_mac else None
        ap_mac = None if raw_ap is None else _mac(raw_ap, c.ap_mac_where)
    except MacAddressError as exc:
        raise WifiEventError(where=exc.where, what=exc.what, got=str(exc.got), fix=exc.fix) from None
    params: tuple[tuple[str, str], ...] = ()
    if c.params_group is not None:
        raw_params = values.get(c.params_group)
        if raw_params:
            pairs = []
            for item in raw_params.split():
                key, _, value = item.partition("=")
                pairs.append((key, value))
            params = tuple(pairs)
    # positional tuple.__new__: the NamedTuple keyword constructor costs half a microsecond per line
    return tuple.__new__(
        WifiEvent,
        (
            kind,
            client,
            msg.timestamp or now,
            c.vendor,
            c.name,
            msg.hostname,
            values.get(c.interface) if c.interface else None,
            ap_mac,
            values.get(c.ssid) if c.ssid else None,
            params,
        ),
    )


_MAC_MEMO_MAX = 4096
_macs: dict[str, MacAddress] = {}


def _mac(raw: str, where: str) -> MacAddress:
    """MacAddress of a MAC as the line spells it, remembered: an AP names its own MAC on every line and
    a client's joins, roams and leaves repeat it; parsing and building one costs a microsecond."""
    mac = _macs.get(raw)
    if mac is None:
        mac = MacAddress(normalize_mac(raw, where=where))
        if len(_macs) >= _MAC_MEMO_MAX:
            _macs.clear()  # bounded: a scan of spoofed MACs cannot grow it
        _macs[raw] = mac
    return mac


def load_patterns(text: str | None = None, *, source: str = "patterns.toml") -> PatternSet:
    """Validate vendor patterns (the packaged patterns.toml by default); errors name the key path."""
    if text is None:
        text = resources.files("adapters.wifi_syslog").joinpath("patterns.toml").read_text(encoding="utf-8")
    raw = parse_toml(text, source)
    try:
        spec = PatternFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, PatternFile), source=source) from None
    return PatternSet(spec)

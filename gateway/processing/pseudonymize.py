"""The `pseudonymize` processor: personal identifiers in readings replaced by keyed, recognisable tokens.

A configured attribute's value (a MAC address, a library card number, an e-mail address) becomes

    pz1:k<generation>:<digest>

`pz1` is the token scheme (this format, version 1), `k<generation>` the key it was made with (see
gateway.processing.pseudonym_keys: a new generation from each rotation date, so a platform can tell
two periods apart), and `<digest>` the first `digest_bytes` (default 16) bytes of
HMAC-SHA-256(key, kind + NUL + normalized value) in lowercase base32 without padding (26 characters
for 16 bytes). Base32 rather than hex: a fifth shorter on every record, one case only (safe for
case-folding systems and spreadsheets), and only `a-z 2-7`, which Orion accepts in values and ids
and NGSI-LD in URNs. The kind is hashed with the value so that a card number and a text attribute
that happen to read the same are not linked.

Values are normalized first, so that one person's several spellings give one token: `mac` takes every
vendor spelling to `aa:bb:cc:dd:ee:ff`; `email` trims and lowercases the domain (the local part is
case-sensitive by RFC 5321); `card` folds full-width characters (NFKC), removes blanks and hyphens
(including the Japanese ー and ‐ typed in their place) and uppercases; `text` trims and applies NFC.
Every kind refuses a string that is not Unicode text: a lone surrogate, which JSON can carry.

Personal data never leaves in clear: a configured attribute whose value is not text (`not_text`) or
not a valid value of its kind (`invalid`) is removed from the reading rather than passed on, counted,
and logged once per attribute and problem at WARNING with the value masked (`"ab***" (17 chars)`).
The processor is pure: the key ring is loaded once by `PseudonymizeConfig.build`, and the key for a
reading is chosen from its observation time and the `now` it is given.

A value that is a token already (the whole value matches `TOKEN_RE`: an adapter that makes its own,
the locker's `pickup.patron`, the scanner's `card_numbers`) is passed on as it is and counted in
`tokens_kept`: an entry written for the address it replaced must neither tokenise the token again
nor drop it as an invalid address. A token holds only `a-z 2-7` after its prefix, so nothing personal
can pass this way.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, model_validator

from gateway.configbase import ConfigProblems, Field
from gateway.errors import GatewayError
from gateway.logs import component_logger
from gateway.ngsi.identifiers import check_attribute_name
from gateway.processing.api import ProcessorConfig, ProcessorContext
from gateway.processing.pseudonym_keys import (
    DEFAULT_KEEP_OLD_DAYS,
    KeyRing,
    PseudonymKey,
    PseudonymKeyStore,
)
from gateway.records import Attribute, Reading, utc_now

__all__ = [
    "SCHEME",
    "IdentifierKind",
    "PseudonymValueError",
    "PseudonymizeConfig",
    "Pseudonymizer",
    "mask",
    "normalize",
]

log = component_logger(__name__, "pseudonymize")

SCHEME = "pz1"
TOKEN_RE = re.compile(r"pz1:k[1-9][0-9]*:[a-z2-7]{13,52}")
DEFAULT_DIGEST_BYTES = 16


class IdentifierKind(enum.StrEnum):
    """How a value is normalized before hashing; part of the hashed text, so changing it changes tokens."""

    MAC = "mac"
    EMAIL = "email"
    CARD = "card"
    TEXT = "text"


class PseudonymValueError(GatewayError, ValueError):
    """A value that is not a valid identifier of its kind; the message shows it masked only."""

    code = "pseudonym_value_invalid"


def mask(value: str) -> str:
    """A stand-in for a personal value in a message: at most two leading characters and the length."""
    shown = value[:2] if len(value) >= 8 else ""
    # a lone surrogate shown as is would make the line unwritable (the log handler drops it): escaped
    quoted = json.dumps(shown + "***", ensure_ascii=not _is_unicode(shown))
    return f"{quoted} ({len(value)} chars)"


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- normalization -----------------------------------------------------------------------------

# Spellings of one MAC address seen from NASes, access points and scanners: AA:BB:CC:DD:EE:FF,
# AA-BB-CC-DD-EE-FF, a:b:c:d:e:f (BSD prints no leading zeros), aabb.ccdd.eeff (Cisco),
# aabbcc-ddeeff (HPE/Aruba), aabbccddeeff.
_MAC_GROUPS = re.compile(r"([0-9a-f]{1,2})([:-])" + r"([0-9a-f]{1,2})\2" * 4 + r"([0-9a-f]{1,2})")
_MAC_DOTTED = re.compile(r"([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})")
_MAC_HALVES = re.compile(r"([0-9a-f]{6})[:-]([0-9a-f]{6})")
_HEX = frozenset("0123456789abcdef")
_MAC_BARE = re.compile(r"[0-9a-f]{12}")
# Hyphens people type into card numbers, and what a Japanese IME gives for one (ー, ‐, －, −).
_CARD_SEPARATORS = re.compile("[\\s\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d\uff70]+")


def _mac(value: str) -> str:
    s = value.strip().lower()
    if len(s) == 17 and s[2::3] in (":::::", "-----") and _HEX.issuperset(s[0::3] + s[1::3]):
        return s.replace("-", ":")  # the two common spellings, without the regexes
    m = _MAC_GROUPS.fullmatch(s)
    if m:
        return ":".join(g.zfill(2) for g in m.group(1, 3, 4, 5, 6, 7))
    m = _MAC_DOTTED.fullmatch(s) or _MAC_HALVES.fullmatch(s)
    hexes = "".join(m.groups()) if m else (s if _MAC_BARE.fullmatch(s) else "")
    if not hexes:
        raise ValueError("not a MAC address")
    return ":".join(hexes[i : i + 2] for i in range(0, 12, 2))


def _email(value: str) -> str:
    s = unicodedata.normalize("NFC", value.strip())
    local, at, domain = s.rpartition("@")
    if not at or not local or not domain or any(c.isspace() or not c.isprintable() for c in s):
        raise ValueError("not an e-mail address")
    return f"{local}@{domain.lower()}"


def _card(value: str) -> str:
    s = _CARD_SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).upper()
    if not s or not s.isprintable():
        raise ValueError("not a card number")
    return s


def _text(value: str) -> str:
    s = unicodedata.normalize("NFC", value.strip())
    if not s:
        raise ValueError("empty")
    return s


def _check_unicode(value: str) -> None:
    # JSON may carry a lone surrogate ("\ud800") that no UTF-8 holds: it cannot be hashed as text, by any kind
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not Unicode text (a lone surrogate at character {exc.start})") from None


_NORMALIZERS = {
    IdentifierKind.MAC: _mac,
    IdentifierKind.EMAIL: _email,
    IdentifierKind.CARD: _card,
    IdentifierKind.TEXT: _text,
}


def normalize(value: str, kind: IdentifierKind, *, where: str = "value") -> str:
    """The one spelling of `value` that is hashed; PseudonymValueError (value masked) if it is not of `kind`."""
    try:
        _check_unicode(value)
        return _NORMALIZERS[kind](value)
    except ValueError as exc:
        got = mask(value)
        raise PseudonymValueError(f"{where}: {exc}, got {got}", what=str(exc), kind=kind.value, got=got) from None


# --- configuration -----------------------------------------------------------------------------

AttributeName = Annotated[str, AfterValidator(check_attribute_name)]


class PseudonymizeConfig(ProcessorConfig):
    """`type = "pseudonymize"`: which attributes to replace by tokens, how to read them, how long old keys live."""

    type: Literal["pseudonymize"]
    attributes: tuple[AttributeName, ...] = Field(
        description="NGSI attribute names whose values are replaced by tokens"
    )
    kinds: dict[AttributeName, IdentifierKind] = Field(
        default_factory=dict, description="per attribute: mac, email, card or text (the default)"
    )
    digest_bytes: int = Field(
        default=DEFAULT_DIGEST_BYTES,
        ge=8,
        le=32,
        description="bytes of the HMAC kept in a token; 8 (64 bits) is still collision-free for any one box",
    )
    keep_old_days: int = Field(
        default=DEFAULT_KEEP_OLD_DAYS,
        ge=0,
        le=3650,
        description="days a rotated-out key is kept for readings observed before the rotation, then erased",
    )

    @model_validator(mode="after")
    def _attributes_and_kinds(self) -> PseudonymizeConfig:
        problems: list[tuple[str, str]] = []
        if not self.attributes:
            problems.append(("attributes", "must name at least one attribute, got []"))
        seen: set[str] = set()
        for i, name in enumerate(self.attributes):
            if name in seen:
                problems.append((f"attributes[{i}]", f"is listed twice, got {json.dumps(name)}; list it once"))
            seen.add(name)
        for name in self.kinds:
            if name not in seen:
                what = f"names an attribute that is not in attributes, got {json.dumps(name)}"
                problems.append((f"kinds.{name}", f"{what}; add it to attributes or remove it"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def kind_of(self, attribute: str) -> IdentifierKind:
        return self.kinds.get(attribute, IdentifierKind.TEXT)

    def build(self, context: ProcessorContext) -> Pseudonymizer:
        """Load the gateway's key ring (creating the first key, erasing expired ones) and make the processor."""
        keep = self.keep_old_days
        if "keep_old_days" not in self.model_fields_set and context.keep_old_days is not None:
            keep = context.keep_old_days  # an adapter's own pseudonymizer: the configured retention
        ring = PseudonymKeyStore(Path(context.data_dir)).load(utc_now(), keep)
        return Pseudonymizer(
            attributes={name: self.kind_of(name) for name in self.attributes},
            ring=ring,
            digest_bytes=self.digest_bytes,
        )


# --- the processor -----------------------------------------------------------------------------


_COUNTERS = ("pseudonymized", "missing", "not_text", "invalid", "tokens_kept")


class Pseudonymizer:
    """Replaces the configured attributes' values by `pz1:k<n>:<digest>` tokens; see the module's docstring."""

    def __init__(
        self, *, attributes: Mapping[str, IdentifierKind], ring: KeyRing, digest_bytes: int = DEFAULT_DIGEST_BYTES
    ) -> None:
        if not ring.keys:
            raise ValueError("pseudonymize: the key ring is empty, got no key; build it with PseudonymKeyStore.load")
        self._attributes = dict(attributes)
        self._ring = ring
        self._digest_bytes = digest_bytes
        # HMAC's keyed inner and outer states, computed once per key; each value costs a copy()
        self._macs = {key.generation: hmac.new(key.secret, digestmod=hashlib.sha256) for key in ring.keys}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._last_generation = 0
        self._warned: set[tuple[str, str]] = set()

    def token(self, value: str, kind: IdentifierKind, key: PseudonymKey, *, where: str = "value") -> str:
        """The token of `value` under `key`; PseudonymValueError (value masked) if it is not of `kind`."""
        mac = self._macs[key.generation].copy()
        mac.update(kind.value.encode() + b"\x00" + normalize(value, kind, where=where).encode("utf-8"))
        digest = base64.b32encode(mac.digest()[: self._digest_bytes]).decode("ascii").rstrip("=").lower()
        return f"{SCHEME}:{key.key_id}:{digest}"

    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]:
        attributes = reading.attributes
        changed: dict[str, Attribute | None] = {}
        key: PseudonymKey | None = None
        for name, kind in self._attributes.items():
            attribute = attributes.get(name)
            if attribute is None:
                self._counts["missing"] += 1
                continue
            value = attribute.value
            if not isinstance(value, str):
                self._counts["not_text"] += 1
                changed[name] = None
                self._warn_once(
                    reading,
                    name,
                    "not_text",
                    f"must be text to be pseudonymized, got {_kind_of(value)}",
                    "map it as text in the source",
                )
                continue
            if TOKEN_RE.fullmatch(value):
                self._counts["tokens_kept"] += 1
                continue
            if key is None:
                key = self._ring.select(reading.observed_at, now)
            try:
                token = self.token(value, kind, key, where=name)
            except PseudonymValueError as exc:
                self._counts["invalid"] += 1
                changed[name] = None
                self._warn_once(
                    reading,
                    name,
                    "invalid",
                    f"{exc.params['what']}, got {exc.params['got']}",
                    f'fix the source, or set kinds.{name} = "text"' if _text_takes(value, kind) else "fix the source",
                )
                continue
            changed[name] = Attribute(value=token, type="Text", metadata=attribute.metadata)
            self._counts["pseudonymized"] += 1
        if key is not None:
            self._last_generation = key.generation
        if not changed:
            return (reading,)
        kept: dict[str, Attribute] = {}
        for name, attribute in attributes.items():
            replacement = changed.get(name, attribute)  # None: dropped
            if replacement is not None:
                kept[name] = replacement
        return (replace(reading, attributes=kept),)

    def _warn_once(self, reading: Reading, name: str, problem: str, what: str, fix: str) -> None:
        # a device that sends one bad value usually sends it every time: say it once, count the rest
        level = logging.DEBUG if (name, problem) in self._warned else logging.WARNING
        self._warned.add((name, problem))
        log.log(
            level,
            "pseudonymize: %s %s.%s: %s; the attribute was dropped so it never leaves in clear; %s",
            reading.source.adapter,
            reading.entity_type,
            name,
            what,
            fix,
        )

    def diagnostics(self) -> dict[str, int]:
        """Counters, and `key_generation`: the generation of the last key used (0 before any)."""
        return {**self._counts, "key_generation": self._last_generation}


def _text_takes(value: str, kind: IdentifierKind) -> bool:
    """Whether kind `text` would take a value that `kind` refused: only then is it a fix to offer."""
    if kind is IdentifierKind.TEXT:
        return False
    try:
        normalize(value, IdentifierKind.TEXT)
    except PseudonymValueError:
        return False
    return True


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a Boolean"
    if isinstance(value, (int, float)):
        return "a Number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a StructuredValue"
    return f"a {type(value).__name__}"

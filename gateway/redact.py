"""The one redaction point: secrets and token-looking text become `***` in everything logged or stored.

Theory of operation. Two kinds of text are hidden:

- values registered at run time: every secret `gateway.secrets.resolve` hands out (from the store
  or the environment), in the spellings it travels in (as is, percent-encoded, JSON-escaped), and
  short-lived values such as OAuth access tokens (`ephemeral`, the newest few kept);
- patterns, for tokens nobody registered (a far side echoing a header it was sent, a token in a
  URL): `Bearer <tok>`, `Basic <b64>`, `Authorization: …`, `X-Auth-Token: …`, `access_token=…`,
  `"access_token": "…"` (and client_secret, password, api keys, in header, form, JSON and repr
  spellings), and the userinfo of any URL (`https://***@host/`).

Personal data that has a shape is hidden the same way, wherever it comes from (a malformed
message quoted in a log line, a device's own error text): e-mail addresses keep only their domain
(`***@example.jp`) and MAC addresses only their vendor prefix (`3C:22:FB:***`; a longer run of hex
groups that holds one keeps only its first groups, and an IPv6 address made from one its prefix and
the vendor's digits, `fe80::3e22:fbff:fe***`). Identifiers without a shape (library card numbers) are
pseudonymized by the processing stage before anything logs them.

Only the secret part is replaced, so a line stays readable: the header name, the auth scheme, the
URL's scheme and host are kept. The log handler (`gateway.logs`) and the status file pass through
`text()` / `scrub()`; nothing else has to remember to.
"""

from __future__ import annotations

import datetime
import enum
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urljoin

__all__ = ["EPHEMERAL_KEPT", "MASK", "MIN_CHARS", "Redactor", "clear", "register", "scrub", "text"]

MASK = "***"
# Shorter values are not registered: masking every "abc" in every line would make logs unreadable,
# and no credential worth the name is that short.
MIN_CHARS = 4
# Access tokens are replaced every few minutes; the newest ones are the ones a far side may echo.
EPHEMERAL_KEPT = 32

# Names whose value is a credential, in headers, forms, query strings, JSON and Python reprs.
_NAMES = (
    r"x[-_]auth[-_]token|(?:proxy[-_])?authorization|access[-_]token|refresh[-_]token|id[-_]token"
    r"|client[-_]secret|password|passwd|api[-_]?key"
)
_SCHEMES = r"bearer|basic|digest|token|apikey|negotiate"
# Three patterns, each run only when a cheap test of the lower-cased line says it could match:
# most lines have none of these words, and the regexes cost far more than the tests.
# The scheme is read from the start of its run only (a look-behind rather than `\b`), so a long
# `a.a.a.a…` run is read once, not once from each of its letters.
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z0-9+.\-]*://)[^\s/?#@\"'<>]+@")
# name: value, name=value, "name": "value", 'name': 'value', name = "value"
_NAMED = re.compile(
    rf"(\b(?:{_NAMES})\b[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:{_SCHEMES})[ \t]+)?)([^\s\"'&,;<>)}}\]]+)", re.IGNORECASE
)
_NAME_WORDS = ("token", "authorization", "secret", "passw", "api")
# a bare `Bearer <token>` / `Basic <credentials>`
_SCHEMED = re.compile(r"(\b(?:bearer|basic)[ \t]+)([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)


def _looks_like_token(word: str) -> bool:
    # "Basic authentication" is prose, "Basic dXNlcjpwdw==" is not: a token has a digit or a
    # symbol, or is too long to be a word. (Configured secrets are registered, so this guess
    # only decides for values nobody told us about.)
    return len(word) >= 20 or not word.isalpha()


# Personal data with a shape. These run on every log line, syslog text from anyone included, so
# each must cost time linear in the line: a repetition inside another only where a separator
# starts each round, and no unbounded run read again from each of its characters.
#
# An e-mail address: a local part of RFC 5321's usual characters or any non-ASCII character (RFC
# 6531), `@` or the full-width `＠` Japanese writers use, and a domain of one or more labels
# (`taro@mail` is an intranet address). "/" and "*" are left out of the local part:
# `scheme://***@host` is a URL already masked, not an address. The local part is at most 64
# characters (RFC 5321's limit): a longer run is read at most 64 characters from each start. The
# domain is taken whole (possessive) and must not run into another address (`x@taro@example.jp`
# masks taro), so a second pass finds nothing new.
_LOCAL = r'[^\s"(),*/:;<>@\[\\\]\x00-\x1f\x7f＠、。，．「」『』（）【】：；]'
_EMAIL = re.compile(rf"{_LOCAL}{{1,64}}+([@＠][\w-]++(?:\.[\w-]++)*+)(?![@＠](?:{_LOCAL}|\*))")
# A MAC address in every spelling `adapters.radius.mac` and `gateway.processing.pseudonymize` accept:
# colon or hyphen groups of one or two digits (3C:22:FB:12:9A:0E, 3c-22-…, a:b:c:d:e:f as BSD prints
# them), Cisco's 3c22.fb12.9a0e, 3c22-fb12-9a0e, HPE's 3c22fb-129a0e (or with `:`) and bare 3c22fb129a0e
# (RADIUS Calling-Station-Id); and the interface id SLAAC makes from one, the MAC with ff:fe in its
# middle (fe80::3e22:fbff:fe12:3456), whose address keeps its prefix and the vendor's digits.
# A spelling glued to more groups by a separator (cafe-3c22-fb12-9a0e, de:ad:3c:22:…, an EUI-64
# 00:12:4b:00:1c:a1:b2:c3, 012345-3c22fb-129a0e; quads and halves may change separator within a run,
# 0123-3c22.fb12.9a0e) is one run, read from its first group and masked after its first groups: which
# of its groups are the MAC cannot be told, and so every reading hides the part after the vendor
# prefix. The exceptions:
# - one- or two-digit groups glued to a letter or a digit: the first group ends a word or a name
#   (`mac:aa:…`, `eth0:aa:…`), so a run of more than six starts at its second group;
# - a UUID (8-4-4-4-12, its groups whole) is left alone: it names an entity, and even a version-1 UUID's
#   node is the generating host's address, not a resident's device;
# - hex glued to more hex, or bare hex glued to letters or digits, is another number, a digest or an
#   identifier (`sha256:…`, `g1a2b3c4d5e6f`), not a spelling of a MAC.
# The e-mail pattern runs first and masks only the last group of `aa:bb:cc:dd:ee:ff@realm` (a local part
# has no colons), so a masked group before an at-sign still ends a run. Look-behinds rather than `\b`,
# which fails after `_` and inside Japanese text. Starting with the first hex digit lets `re` skip every
# other position in C; the look-behinds after it test the character before that digit.
_H = "[0-9A-Fa-f]"
_UUID_HEAD = rf"(?<!{_H}){_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}"
_MASKED_LOCAL = rf"{re.escape(MASK)}(?=[@＠])"
_MAC = re.compile(
    rf"{_H}(?:"
    # grouped; right after a letter or digit exactly six groups, so that in `mac:aa:bb:…` the `ac` is not one
    rf"(?<![0-9A-Za-z]{_H}){_H}?([:-]){_H}{{1,2}}\1{_H}{{1,2}}(?:\1(?:{_H}{{1,2}}|{_MASKED_LOCAL})){{3,}}(?!{_H})"
    rf"|(?<!{_H}{_H}){_H}?([:-]){_H}{{1,2}}\2{_H}{{1,2}}(?:\2(?:{_H}{{1,2}}|{_MASKED_LOCAL})){{3}}(?!{_H}|\2{_H})"
    rf"|(?<!{_H}{_H})(?:{_H}{{3}}[.-]{_H}{{4}}(?:[.-]{_H}{{4}})+(?!(?<={_UUID_HEAD})-{_H}{{12}}(?!{_H}))"
    rf"|{_H}{{5}}[:-]{_H}{{6}}(?:[:-]{_H}{{6}})*)(?!{_H})"
    rf"|(?<![0-9A-Za-z]{_H}){_H}{{11}}(?![0-9A-Za-z])(?<!{_UUID_HEAD}-{_H}{{12}})"
    # SLAAC: xxff:fexx:xxxx ending an address; the captured digits are the device's
    rf"|(?<=:{_H}){_H}{{0,3}}(?<=[Ff]{{2}}):[Ff][Ee]({_H}{{2}}:{_H}{{1,4}})(?!{_H}|:[0-9A-Fa-f:])"
    ")"
)


# The MAC pattern costs twice the rest of `text()` on a line without one, so the line's shape is
# tested first, in C: the grouped spellings need five colons or hyphens; for the others, hex digits
# become `h`, separators `s` and anything else a space (non-ASCII is dropped, which can only join
# runs), and each of them holds `hhhhhh` (bare, halves) or `hhhhshhhh` (quads), or `ff:fe` (SLAAC).
_SHAPE = bytes(
    ord("h") if b in b"0123456789ABCDEFabcdef" else ord("s") if b in b":-." else ord(" ") for b in range(256)
)


def _may_hold_a_mac(s: str, low: str) -> bool:
    # `low` is the line before the other patterns masked parts of it: a mask never makes `ff:fe`
    if s.count(":") >= 5 or s.count("-") >= 5 or "ff:fe" in low:
        return True
    shape = s.encode("ascii", "ignore").translate(_SHAPE)
    return shape.find(b"hhhhhh") >= 0 or shape.find(b"hhhhshhhh") >= 0


def _mask_mac(m: re.Match[str]) -> str:
    mac = m.group(0)
    if m.group(3) is not None:  # SLAAC: up to ff:fe, the vendor's part of the interface id
        return mac[: m.start(3) - m.start()] + MASK
    sep = next((c for c in mac if c in ":-."), "")
    if not sep:
        return mac[:6] + MASK
    groups = mac.split(sep)
    # the vendor prefix: three octets, or the first group of the quads and halves; in a longer run
    # the first ones, so that whichever six octets are the MAC, its last three are hidden
    return sep.join(groups[:3] if len(groups[0]) <= 2 else groups[:1]) + sep + MASK


def _mask_value(m: re.Match[str]) -> str:
    # `uplinks[0].password: must reference …` is a message about the key, not a password
    return m.group(1) + MASK if _looks_like_token(m.group(2)) else m.group(0)


def _mask_patterns(s: str) -> str:
    low = s.lower()
    if "://" in s and "@" in s:
        s = _URL_USERINFO.sub(r"\1" + MASK + "@", s)
    if any(word in low for word in _NAME_WORDS):
        s = _NAMED.sub(_mask_value, s)
    if "bearer" in low or "basic" in low:
        s = _SCHEMED.sub(_mask_value, s)
    if "@" in s or "＠" in s:
        s = _EMAIL.sub(MASK + r"\1", s)
    if _may_hold_a_mac(s, low):
        s = _MAC.sub(_mask_mac, s)
    return s


def _spellings(value: str) -> set[str]:
    """The forms a secret takes on the wire and in the logs."""
    forms = {
        value,
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return {f for f in forms if len(f) >= MIN_CHARS}


class Redactor:
    """Registered values and the patterns; thread-safe (the buffer's writer and paho log from threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lasting: set[str] = set()
        self._ephemeral: OrderedDict[str, None] = OrderedDict()
        self._values: re.Pattern[str] | None = None  # rebuilt when a value is added; read without the lock

    def register(self, value: str, *, ephemeral: bool = False) -> None:
        """Hide `value` (and its encodings) from now on; `ephemeral` for short-lived tokens."""
        forms = _spellings(value)
        if not forms:
            return
        with self._lock:
            if ephemeral:
                known = value in self._ephemeral
                self._ephemeral[value] = None
                self._ephemeral.move_to_end(value)
                while len(self._ephemeral) > EPHEMERAL_KEPT:
                    self._ephemeral.popitem(last=False)
                if known:
                    return
            elif forms <= self._lasting:
                return
            else:
                self._lasting |= forms
            everything = set(self._lasting)
            for token in self._ephemeral:
                everything |= _spellings(token)
            # longest first, so a value that contains another is masked whole
            alternatives = sorted(everything, key=lambda s: (-len(s), s))
            self._values = re.compile("|".join(map(re.escape, alternatives)))

    def clear(self) -> None:
        """Forget every registered value (tests; a new process starts empty anyway)."""
        with self._lock:
            self._lasting.clear()
            self._ephemeral.clear()
            self._values = None

    def text(self, s: str) -> str:
        """`s` with registered values and token-looking parts replaced by `***`."""
        values = self._values
        if values is not None:
            s = values.sub(MASK, s)
        return _mask_patterns(s)

    def scrub(self, obj: Any) -> Any:
        """A JSON-like structure with every string (keys included) passed through `text()`.

        Numbers, booleans, enums and times are kept as they are (orjson writes them); dict keys become
        strings; any other object becomes its redacted `str()`.
        """
        if isinstance(obj, str):
            return self.text(obj)
        if obj is None or isinstance(obj, (bool, int, float, enum.Enum, datetime.datetime)):
            return obj
        if isinstance(obj, Mapping):
            return {self.text(str(k)): self.scrub(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple, set, frozenset)):
            return [self.scrub(v) for v in obj]
        return self.text(str(obj))


_REDACTOR = Redactor()
register = _REDACTOR.register
text = _REDACTOR.text
scrub = _REDACTOR.scrub
clear = _REDACTOR.clear


def redirect_target(location: str, url: str, max_chars: int = 200) -> str:
    """Where a redirect from `url` points, fit for a message: absolute, no userinfo, no query values.

    A Location may carry credentials (a login page's ticket, a signed URL, `user:pw@`): query values
    are masked whatever their names, the rest goes through the redactor before it is cut to `max_chars`
    (enough for a host and a path)."""
    location = " ".join(location.split())
    if not location:
        return "no Location"
    try:
        target = urljoin(url, location)
    except ValueError:  # not a URL (an unclosed `[`): shown as it came, still masked below
        target = location
    base, sep, query = target.partition("#")[0].partition("?")
    if sep:
        names = [part.partition("=")[0] if "=" in part else "" for part in query.split("&") if part]
        base += "?" + "&".join(f"{name}={MASK}" if name else MASK for name in names)
    shown = text(base)
    return shown if len(shown) <= max_chars else shown[: max_chars - 1] + "…"

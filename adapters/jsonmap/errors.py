"""The typed error of a JSON field that cannot feed a Reading, and the masked excerpts its messages quote.

Theory of operation. A payload that cannot be mapped may carry personal data (a library card number,
a card's IDm, a MAC or e-mail address), and error messages end up in the journal, the web UI's log
ring and status files. Card numbers have no shape the log handler could recognise, so messages here
never quote a device's value: they show its structure instead. Every run of letters or digits becomes
a class marker with its length (`0012345678901` → `<13 digits>`, `AABBCCDDEEFF` → `<12 letters>`,
`01 2E` → `<2 digits> <2 chars>`), while punctuation, blanks, JSON keys that look like field names,
`true`/`false`/`null` and HTML tag names stay, so a technician still sees where a document breaks and
what shape a value has. Masking happens before cutting, always: a value cut first could leave a
fragment no masker recognises.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Container, Iterable
from typing import Any

from adapters.jsonmap.numbers import LargeNumber
from gateway.errors import DeviceProtocolError


class Problem(enum.Enum):
    """What is wrong with a field; the adapters count their drops by these values."""

    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_VALUE = "bad_value"  # a value no NGSI broker can hold (infinite after scaling)
    NOT_JSON = "not_json"  # the bytes are no JSON at all
    BAD_ID = "bad_id"  # a rendered entity id or type breaks Orion's identifier rules


LIMIT = 80  # characters of a quoted value or excerpt, after masking

_RUN = re.compile(r"[^\W_]+")  # letters and digits of any script (full-width digits, kanji)
_DIGITS = re.compile(r"[0-9]+")
# control characters, undecodable bytes (surrogate escapes) and U+FFFD: binary, never shown
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd]+")
# a field name as keys are written: schema, not data; but not a card number, a MAC or an IDm used as a key
_NAME = re.compile(r"[^\W\d][\w.\-]{0,31}")
_LONG_NUMBER = re.compile(r"\d{4}")
_HEX = frozenset("0123456789abcdefABCDEF")
_LITERALS = frozenset({"true", "false", "null"})
# in raw text (not JSON, or a document's start): a quoted key, an HTML tag name, a run of letters/digits
_DOC_TOKEN = re.compile(r'"((?:[^"\\\n]|\\.){1,64})"(?=\s*:)|(?<=<)([!/?]?[A-Za-z][A-Za-z0-9]{0,9})\b|[^\W_]+')
# the tags of the maintenance and login pages that come instead of JSON; only these: `<taro@example.jp>`
# starts like a tag too
_TAGS = frozenset(
    {
        *("html", "head", "body", "title", "meta", "link", "script", "style", "noscript", "doctype", "xml"),
        *("div", "span", "p", "pre", "br", "hr", "a", "b", "i", "em", "strong", "center", "address", "img"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "td", "th", "ul", "ol", "li", "form", "input"),
        *("header", "footer", "main", "nav", "section", "article"),
    }
)
_PARTIAL_MARKER = re.compile(r"<\d*(?: [a-z]*)?$")
_MASKED_MAX = 1 << 20  # characters masked at most for one quote: a value of long runs shows little per character
_WINDOW_BEFORE = 2 / 3  # of an excerpt that cannot show the whole text, the part before the error


def _count(n: int, kind: str) -> str:
    return f"<{n} {kind}{'' if n == 1 else 's'}>"


def _marker(run: str) -> str:
    return _count(len(run), "digit" if run.isdigit() else "letter" if run.isalpha() else "char")


def is_field_name(key: str) -> bool:
    """Whether a JSON key reads as a field name (`temperature`, `観測所`, `pm2_5`) and may be quoted."""
    if _NAME.fullmatch(key) is None or _LONG_NUMBER.search(key):
        return False
    alnum = [c for c in key if c.isalnum()]
    return len(alnum) < 8 or not _HEX.issuperset(alnum)


def masked(text: str, keep: Container[str] = ()) -> str:
    """`text` with every run of letters or digits (but those in `keep`) replaced by its class marker."""
    text = _RUN.sub(lambda m: m[0] if m[0] in keep else _marker(m[0]), text)
    return _BINARY.sub(lambda m: _count(len(m[0]), "byte"), text)


def _head(text: str, n: int) -> tuple[str, bool]:
    """At least the first `n` characters of `text`, the run of letters/digits at the cut taken whole."""
    if len(text) <= n:
        return text, False
    run = _RUN.match(text, n)
    end = run.end() if run is not None and n > 0 and text[n - 1].isalnum() else n
    return text[:end], end < len(text)


def _cut(text: str, limit: int, more: bool = False) -> str:
    """`text` (already masked) shortened to `limit` characters, never through a marker."""
    if len(text) <= limit and not more:
        return text
    return _PARTIAL_MARKER.sub("", text[: limit - 3]).rstrip(".") + "..."


def _text_of(raw: bytes | str, chars: int) -> tuple[str, bool]:
    """Enough of `raw` as text for `chars` characters; whether more follows."""
    if isinstance(raw, str):
        return raw, False
    # undecodable bytes become surrogate escapes, one per byte, and are then counted as binary
    return bytes(raw[: chars * 4]).decode("utf-8", errors="surrogateescape"), len(raw) > chars * 4


def _masked_head(text: str, limit: int, keep: Container[str] = ()) -> tuple[str, bool]:
    """The start of `text`, masked, at least `limit` characters long unless it is all of `text`; whether more
    follows. A marker stands for a whole run, so more text may be needed than is shown."""
    n = limit
    while True:
        head, more = _head(text, n)
        out = masked(head, keep)
        if not more or len(out) > limit or n >= _MASKED_MAX:
            return out, more
        n = max(n * 4, len(head) + limit)


def _quote(text: str, limit: int, keep: Container[str] = ()) -> str:
    out, more = _masked_head(text, limit, keep)
    return repr(out + "..." if more else out)


def _pieces(value: Any, limit: int) -> Iterable[str]:
    """The rendering of `value` piece by piece, so that the caller stops once it has enough."""
    if value is None:
        yield "null"
    elif value is True or value is False:
        yield repr(value)
    elif isinstance(value, (int, float)):
        yield _DIGITS.sub(lambda m: _count(len(m[0]), "digit"), repr(value))
    elif isinstance(value, LargeNumber):
        yield repr(value)  # its literal, masked the same way
    elif isinstance(value, str):
        yield _quote(value, limit)
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield repr(key) if isinstance(key, str) and is_field_name(key) else _quote(str(key), limit)
            yield ": "
            yield from _pieces(item, limit)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(item, limit)
        yield "]"
    elif isinstance(value, (bytes, bytearray)):
        yield "b" + _quote(_text_of(bytes(value), limit)[0], limit)
    else:
        yield _quote(repr(value), limit)


def _joined(pieces: Iterable[str], limit: int) -> str:
    out: list[str] = []
    size = 0
    for piece in pieces:
        out.append(piece)
        size += len(piece)
        if size > limit:
            return _cut("".join(out), limit, more=True)
    return "".join(out)


def describe(value: Any, limit: int = LIMIT) -> str:
    """A short rendering of a JSON value for messages: its structure, every value in it masked.

    `'0012345678901'` → `'<13 digits>'`, `{"idm": "01 2E"}` → `{'idm': '<2 digits> <2 chars>'}`,
    `-12.5` → `-<2 digits>.<1 digit>`; null, True and False as they are; keys that read as field
    names stay, other keys are masked like values.
    """
    return _joined(_pieces(value, limit), limit)


def type_name(value: Any) -> str:
    """The type a message names for a JSON value: a LargeNumber is the int or float its document wrote."""
    if value.__class__ is LargeNumber:
        return "int" if value.integer else "float"
    return type(value).__name__


def describe_text(text: str, keep: Container[str] = (), limit: int = LIMIT) -> str:
    """`text` quoted and masked like a value by `describe`, but for the runs in `keep` (see `words`)."""
    return _cut(_quote(text, limit, keep), limit)


def words(text: str) -> frozenset[str]:
    """The runs of letters and digits in `text`: the words of a configured template, kept by `describe_text`."""
    return frozenset(_RUN.findall(text))


def describe_keys(keys: Iterable[Any], limit: int = LIMIT) -> str:
    """An object's keys for messages, `['action', 'battery']`: field names as they are, other keys masked."""
    quoted = (repr(k) if isinstance(k, str) and is_field_name(k) else _quote(str(k), limit) for k in keys)
    return _joined(_list_pieces(quoted), limit)


def _list_pieces(items: Iterable[str]) -> Iterable[str]:
    yield "["
    for i, item in enumerate(items):
        yield ", " if i else ""
        yield item
    yield "]"


def excerpt(raw: bytes | str, position: int = 0, limit: int = LIMIT, *, more: bool = False) -> str:
    """Masked text that should be JSON, quoted around character `position` (from the start when that fits).

    `{"card":"0012345678901","mac":"AABBCCDDEEFF",}` → `'{"card":"<13 digits>","mac":"<12 letters>",}'`:
    keys that read as field names, `true`/`false`/`null`, HTML tag names, punctuation and blanks stay.
    `more`: `raw` is the start of a longer text.
    """
    position = max(0, position)
    text, longer = _text_of(raw, position + 4 * limit)
    more = more or longer
    start = max(0, position - 4 * limit)
    for _ in range(256):  # out of a run of letters/digits, so that it is masked whole
        if start == 0 or not (text[start - 1].isalnum() and text[start].isalnum()):
            break
        start -= 1
    window, cut = _head(text[start:], position - start + 4 * limit)
    out, spans, at = _mask_document(window, position - start)
    more = more or cut
    if start == 0 and not more and len(out) <= limit:
        return repr(out)
    # the error two thirds in, or as far in as the text after it allows; never starting inside a marker
    first = max(0, min(at - int(limit * _WINDOW_BEFORE), len(out) - (limit - 6)))
    first = next((s for s, e in spans if s < first < e), first)
    lead = "..." if first > 0 or start > 0 else ""
    room = limit - len(lead)
    if not more and len(out) - first <= room:
        return repr(lead + out[first:])
    last = first + room - 3
    last = next((s for s, e in spans if s < last < e), last)
    return repr(lead + out[first:last] + "...")


def _mask_document(text: str, position: int) -> tuple[str, list[tuple[int, int]], int]:
    """`text` masked; the spans of its markers in the result; where `position` of `text` landed in it."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    size = 0
    at = -1
    last = 0
    for m in _DOC_TOKEN.finditer(text):
        plain = text[last : m.start()]
        if at < 0 and last <= position < m.start():
            at = size + position - last
        out.append(_BINARY.sub(lambda b: _count(len(b[0]), "byte"), plain))
        size += len(out[-1])
        key, tag = m.group(1), m.group(2)
        if key is not None:
            token = '"' + (key if is_field_name(key) else masked(key)) + '"'
        elif tag is not None:
            token = tag if tag.lstrip("!/?").lower() in _TAGS else masked(tag)
        else:
            token = m[0] if m[0] in _LITERALS else _marker(m[0])
        if at < 0 and position < m.end():
            at = size
        if token != m[0]:
            spans.append((size, size + len(token)))
        out.append(token)
        size += len(token)
        last = m.end()
    if at < 0:
        at = size + max(0, position - last)
    out.append(_BINARY.sub(lambda b: _count(len(b[0]), "byte"), text[last:]))
    return "".join(out), spans, min(at, size + len(out[-1]))


def not_json(position: int, text: bytes | str) -> FieldError:
    """The bytes are no JSON: `is not JSON (invalid at character N), got <masked excerpt>`, for every adapter.

    `text` is the whole document (or its start); the excerpt is masked before it is cut.
    """
    return FieldError(
        f"is not JSON (invalid at character {position}), got {excerpt(text, position)}", problem=Problem.NOT_JSON
    )


class FieldError(DeviceProtocolError):
    """A field of a JSON object (or, with an empty path, the object as a whole) cannot feed a Reading.

    `what` is the message's `<what>, got <value>[; <fix>]` part; each adapter puts its own `<where>`
    in front (an MQTT topic, a position in a polled document), so `str()` of this error is only the
    object's view: `object.temperature (attribute temperature): must be a number, got str '<1 letter>'`.
    """

    code = "json_field_invalid"

    def __init__(
        self, what: str, *, problem: Problem, path: tuple[str | int, ...] = (), path_text: str = "", subject: str = ""
    ) -> None:
        message = f"{path_text} ({subject}): {what}" if path_text else what
        super().__init__(message, problem=problem.value, path=path_text, subject=subject)
        self.what = what
        self.problem = problem
        self.path = path
        self.path_text = path_text
        self.subject = subject

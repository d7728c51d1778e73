"""What a kintone answer means for the records of a request: delivered, refused one by one, or retried; pure.

kintone answers an error with `{"id", "code", "message"[, "errors"]}`. Validation errors
(`CB_VA01`, HTTP 400) name each bad value by its path, `records[<i>].<field code>.value` (for PUT
also `records[<i>].record.<field code>.value`), and kintone writes nothing of such a request: the
records it names are refused with its words and the others are sent again. kintone answers some
validation errors with a 5xx, HTTP 520 (as reported in the field): such an answer in kintone's
format whose `errors` name nothing but records is taken the same way, or the one bad record would
hold back every later record of its lane for ever. Everything else is about the request, never
about a record:

| Answer                                             | Kind                                                |
| -------------------------------------------------- | --------------------------------------------------- |
| 200                                                | OK                                                  |
| 400 CB_VA01 naming records                         | RECORDS: those refused, the rest resent             |
| 5xx (520) in kintone's format naming only records  | RECORDS: those refused, the rest resent             |
| 400 otherwise (CB_IL02, CB_VA01 on `app`…)         | CONFIGURATION: the request is wrong, nothing refused |
| 401 / 403 (GAIA_IA02, GAIA_NO01, CB_NO02)          | CONFIGURATION: token, password or permissions       |
| 404 (GAIA_AP01 no such app) and other 4xx          | CONFIGURATION                                       |
| 408, 429 (over 100 concurrent), any other 5xx      | TRANSIENT: retried with backoff                     |
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

_RECORD_PATH = re.compile(r"^records\[(\d+)\]\.(?:record\.|updateKey\.)?(.*?)(?:\.value)?$")
_HTML_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class Kind(enum.Enum):
    OK = "ok"
    RECORDS = "records"
    CONFIGURATION = "configuration"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    kind: Kind
    text: str  # `HTTP <status> <code>: <message>` for logs and reasons
    code: str = ""
    refused: dict[int, str] = field(default_factory=dict)  # index in the request → kintone's words about it
    doc: dict[str, Any] = field(default_factory=dict)  # the parsed body of a 200


def _doc(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def describe(status: int, body: bytes) -> str:
    """`HTTP 400 CB_VA01: 入力内容が正しくありません。`, or the page title / first words of a non-kintone answer."""
    doc = _doc(body)
    if doc is not None and "code" in doc:
        return f"HTTP {status} {doc['code']}: {doc.get('message', '')}".rstrip(": ")
    title = _HTML_TITLE.search(body[:4096])
    if title is not None:
        words = " ".join(title.group(1).decode("utf-8", "replace").split())
        return f"HTTP {status}: {words} (an HTML page: a proxy or web server answered, not kintone's API)"
    words = " ".join(body[:300].decode("utf-8", "replace").split())
    return f"HTTP {status}" + (f": {words}" if words else "")


def classify(status: int, body: bytes) -> Answer:
    """The kind of a kintone answer to a records request (table in the module docstring)."""
    if 200 <= status < 300:
        return Answer(kind=Kind.OK, text=f"HTTP {status}", doc=_doc(body) or {})
    text = describe(status, body)
    doc = _doc(body) or {}
    code = str(doc.get("code", ""))
    if status >= 500:
        refused = _per_record(doc.get("errors")) if _kintone_error(doc) else None
        if refused is not None:
            return Answer(kind=Kind.RECORDS, text=text, code=code, refused=refused)
        return Answer(kind=Kind.TRANSIENT, text=text, code=code)
    if status in (408, 429):
        return Answer(kind=Kind.TRANSIENT, text=text, code=code)
    if status == 400 and code == "CB_VA01":
        refused = _per_record(doc.get("errors"))
        if refused is not None:
            return Answer(kind=Kind.RECORDS, text=text, code=code, refused=refused)
        errors = doc.get("errors")
        if isinstance(errors, dict):
            text += " (" + "; ".join(f"{k}: {' '.join(_messages(v))}" for k, v in errors.items()) + ")"
    return Answer(kind=Kind.CONFIGURATION, text=text, code=code)


def _kintone_error(doc: dict[str, Any]) -> bool:
    """Whether a body is kintone's own error (`code`, `id`, `message`), not a proxy's or a load balancer's."""
    return all(isinstance(doc.get(key), str) for key in ("code", "id", "message"))


def _messages(entry: Any) -> list[str]:
    if isinstance(entry, dict) and isinstance(entry.get("messages"), list):
        return [str(m) for m in entry["messages"]]
    return [str(entry)]


def _per_record(errors: Any) -> dict[int, str] | None:
    """Index → `<field code>: <messages>` if every error names a record; None if one is about the request."""
    if not isinstance(errors, dict) or not errors:
        return None
    out: dict[int, list[str]] = {}
    for path, entry in errors.items():
        m = _RECORD_PATH.match(str(path))
        if m is None:
            return None
        out.setdefault(int(m.group(1)), []).append(f"{m.group(2) or path}: {' '.join(_messages(entry))}")
    return {i: "; ".join(parts) for i, parts in out.items()}

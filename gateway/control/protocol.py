"""The control socket's wire format: newline-delimited JSON requests and replies, and its errors.

Theory of operation: a client writes one request per line, `{"id": 1, "op": "status", "args": {}}`,
and reads one reply per line, `{"id": 1, "ok": true, "result": ...}` or
`{"id": 1, "ok": false, "error": {"code": ..., "message": ..., "errors": [...]}}`, in request order.
A line is at most `MAX_LINE` bytes, sized so that a config text of `MAX_TEXT` characters fits whatever
its characters are; a longer one is skipped up to its newline and answered with `too_large` (id null:
it was never read). `LineFramer` is sans-I/O: bytes in,
lines and `TooLong` markers out, so it is tested without a socket.

Errors::

    ControlError (code, message, errors)   an error reply, or a request this side refuses to send
    └── ControlUnavailable                  no gateway answers on the socket (not running, socket missing)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

MAX_TEXT = 1024 * 1024  # characters of a config text (the web UI's editor and upload take that many)
# orjson writes a string as UTF-8 except the C0 control characters, which become `\u0001`: 6 bytes,
# the most one character takes (4 outside the BMP). A text full of them is no config, but the check
# must see it whole to say so: a `too_large` would tell the technician nothing they can fix.
MAX_BYTES_PER_CHAR = 6
# A request line, without its newline: every text of MAX_TEXT characters fits, with room for the other
# fields (actor, a comment) and secrets the web UI puts back where the editor showed them masked.
MAX_LINE = MAX_TEXT * MAX_BYTES_PER_CHAR + 64 * 1024
# The most characters an apply takes: MAX_TEXT and the secrets the web UI puts back where its editor
# showed them masked. As UTF-8 in the file, at most 4 bytes each: what a backup's config may hold.
MAX_CONFIG_CHARS = MAX_TEXT + 16 * 1024
MAX_CONFIG_BYTES = MAX_CONFIG_CHARS * 4

# Stable error codes of replies: the UI and the counters key on them.
MALFORMED = "malformed"  # not JSON, or not a request object
TOO_LARGE = "too_large"
UNKNOWN_OP = "unknown_op"
BAD_ARGS = "bad_args"
NOT_FOUND = "not_found"
BUSY = "busy"
CONFIG_INVALID = "config_invalid"
RELOAD_FAILED = "reload_failed"
WRITE_FAILED = "write_failed"
INTERNAL = "internal"
UNAVAILABLE = "unavailable"


class ControlError(Exception):
    """An error reply: a stable `code`, a message for a person, and key-path lines for config errors."""

    def __init__(self, code: str, message: str, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = list(errors)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "errors": self.errors}


class ControlUnavailable(ControlError):
    """Nobody answers on the socket: the gateway is not running, or the path is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(UNAVAILABLE, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    id: Any  # echoed back as is: a number or a string the client chose
    op: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line longer than the limit was skipped; `size` counts the bytes seen before giving up."""

    size: int


class LineFramer:
    """Splits a byte stream into lines of at most `max_line` bytes; longer ones become one `TooLong`."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._searched = 0  # bytes of _buf known to hold no newline: each byte is searched once
        self._skipping = False  # inside a line already reported as too long

    @property
    def pending(self) -> int:
        """Bytes of the unfinished line held: none once it is past `max_line` (skipped to its newline)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        out: list[bytes | TooLong] = []
        buf = self._buf
        buf += data
        while True:
            at = buf.find(b"\n", self._searched)
            if at < 0:
                if self._skipping:
                    buf.clear()
                    self._searched = 0
                elif len(buf) > self.max_line:
                    out.append(TooLong(len(buf)))
                    self._skipping = True
                    buf.clear()
                    self._searched = 0
                else:
                    self._searched = len(buf)
                return out
            if self._skipping:
                self._skipping = False
            elif at > self.max_line:
                out.append(TooLong(at))
            else:
                out.append(bytes(buf[:at]))
            del buf[: at + 1]
            self._searched = 0


def encode_request(request_id: Any, op: str, args: dict[str, Any]) -> bytes:
    """The request's line; ControlError (`malformed`) naming the argument JSON cannot carry, before anything is sent."""
    try:
        return orjson.dumps({"id": request_id, "op": op, "args": args}) + b"\n"
    except TypeError as exc:  # orjson.JSONEncodeError is one
        bad = next((key for key, value in args.items() if not _encodable(value)), None)
        where = f"{op}.args.{bad}" if bad is not None else op
        raise ControlError(
            MALFORMED,
            f"request {where}: cannot be sent, got {exc}; text that is not valid Unicode (a lone surrogate: bytes "
            "a file name, a terminal or a file's encoding did not decode) or a value JSON has no form for",
        ) from None


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def encode_result(request_id: Any, result: Any) -> bytes:
    return orjson.dumps({"id": request_id, "ok": True, "result": result}, default=str) + b"\n"


def encode_error(request_id: Any, error: ControlError) -> bytes:
    return orjson.dumps({"id": request_id, "ok": False, "error": error.to_dict()}) + b"\n"


def decode_request(line: bytes) -> Request:
    """The request on one line, or ControlError (`malformed`) saying what is wrong with it."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ControlError(MALFORMED, f"request: not valid JSON, got {_excerpt(line)}; {where}") from None
    if not isinstance(doc, dict):
        raise ControlError(MALFORMED, f"request: must be a JSON object, got {type(doc).__name__}")
    op = doc.get("op")
    if not isinstance(op, str) or not op:
        raise ControlError(MALFORMED, f"request.op: must be a non-empty string, got {_excerpt(orjson.dumps(op))}")
    args = doc.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlError(MALFORMED, f"request.args: must be a JSON object, got {type(args).__name__}")
    return Request(id=doc.get("id"), op=op, args=args)


def decode_reply(line: bytes) -> tuple[Any, Any]:
    """`(id, result)` of a reply; an error reply raises its ControlError."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ControlError(MALFORMED, f"reply: not valid JSON, got {_excerpt(line)}") from None
    if not isinstance(doc, dict) or "ok" not in doc:
        raise ControlError(MALFORMED, f"reply: must be an object with ok, got {_excerpt(line)}")
    if doc["ok"]:
        return doc.get("id"), doc.get("result")
    error = doc.get("error") or {}
    raise ControlError(str(error.get("code", INTERNAL)), str(error.get("message", "")), error.get("errors") or [])


def _excerpt(data: bytes, limit: int = 60) -> str:
    text = data[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(data) > limit else ""))


def error_from(exc: BaseException) -> ControlError:
    """An unexpected exception as an `internal` error reply: its type and text, never a traceback."""
    return ControlError(INTERNAL, f"internal error, got {type(exc).__name__}: {exc or 'no message'}")

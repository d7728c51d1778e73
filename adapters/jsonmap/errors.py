"""The typed error of a JSON field that cannot feed a Reading, and the short value excerpts its messages quote."""

from __future__ import annotations

import enum
from typing import Any

from gateway.errors import DeviceProtocolError


class Problem(enum.Enum):
    """What is wrong with a field; the adapters count their drops by these values."""

    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_VALUE = "bad_value"  # a value no NGSI broker can hold (infinite after scaling)
    NOT_JSON = "not_json"  # the bytes are no JSON at all
    BAD_ID = "bad_id"  # a rendered entity id or type breaks Orion's identifier rules


def not_json(position: int, head: bytes | str) -> FieldError:
    """The bytes are no JSON: `is not JSON (invalid at character N), got <their start>`, for every adapter."""
    return FieldError(f"is not JSON (invalid at character {position}), got {describe(head)}", problem=Problem.NOT_JSON)


def describe(value: Any, limit: int = 60) -> str:
    """A short rendering of a JSON value for messages (never the whole document)."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FieldError(DeviceProtocolError):
    """A field of a JSON object (or, with an empty path, the object as a whole) cannot feed a Reading.

    `what` is the message's `<what>, got <value>[; <fix>]` part; each adapter puts its own `<where>`
    in front (an MQTT topic, a position in a polled document), so `str()` of this error is only the
    object's view: `object.temperature (attribute temperature): must be a number, got str 'x'`.
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

"""Entity id and type templates: literal text and `{...}` placeholders, parsed once, checked by Orion's rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.jsonmap.decode import ROUNDED, InexactNumber
from adapters.jsonmap.errors import FieldError, Problem, describe, describe_text, type_name, words
from adapters.jsonmap.numbers import LargeNumber
from adapters.jsonmap.paths import MISSING, JsonPath, lookup, parse_path, path_text
from gateway.ngsi.identifiers import check_id_template

P = TypeVar("P")

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRef:
    """A placeholder that takes a JSON field's value; `text` is the placeholder as written, for messages."""

    path: JsonPath
    text: str


def field_ref(inner: str, prefix: str = "") -> FieldRef:
    """`{prefix<path>}` → FieldRef; ValueError if what follows the prefix is no JSON path."""
    if not inner.startswith(prefix):
        raise ValueError(f"placeholder {inner!r} does not start with {prefix!r}")
    return FieldRef(path=parse_path(inner[len(prefix) :]), text=inner)


def parse_template(text: str, placeholder: Callable[[str], P], help: str) -> tuple[str | P, ...]:
    """Split `urn:ngsi-ld:Thing:{x}` into literal strings and `placeholder(inner)` values.

    `placeholder` raises ValueError with the whole message for an inner text it does not know; `help`
    ends the messages about unbalanced braces ("placeholders are ...").
    """
    parts: list[str | P] = []
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        end = text.find("}", pos)
        if start < 0 or 0 <= end < start:
            if end >= 0:
                raise ValueError(f"has a '}}' without its '{{'; {help}")
            parts.append(text[pos:])
            break
        close = text.find("}", start)
        if close < 0:
            raise ValueError(f"has a '{{' without its '}}'; {help}")
        if start > pos:
            parts.append(text[pos:start])
        parts.append(placeholder(text[start + 1 : close]))
        pos = close + 1
    if not parts:
        raise ValueError("must not be empty")
    return tuple(parts)


def check_literals(parts: tuple[object, ...]) -> None:
    """The literal parts must be legal in an Orion id; ValueError as `check_id_template` words it."""
    # the shared checker knows ASCII `{name}` placeholders only: hand it ours in that spelling
    check_id_template("".join(p if isinstance(p, str) else "{x}" for p in parts))


def id_text(value: Any) -> str | None:
    """A field value as it goes into an id: strings as they are, integers as digits; None for anything else.

    A float (1.5), a boolean or an object in an id is almost surely the wrong field, and MISSING or
    null means the field is absent; the caller words which.
    """
    t = value.__class__
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is int:
        return str(value)
    if t is LargeNumber and value.integer:  # beyond 64 bits: its exact digits (adapters.jsonmap.decode)
        return value.literal  # type: ignore[no-any-return]
    return None


def id_field(doc: Any, ref: FieldRef, key: str) -> str:
    """`ref`'s field of `doc` as id text, or the FieldError every JSON adapter words the same way
    (`<path> (<key> {<placeholder>}): is missing, got no such field`)."""
    value = lookup(doc, ref.path)
    text = id_text(value)
    if text is not None:
        return text
    subject = f"{key} {{{ref.text}}}"
    if value is MISSING or value is None:
        raise FieldError(
            f"is missing, got {'no such field' if value is MISSING else 'null'}",
            problem=Problem.MISSING_FIELD,
            path=ref.path,
            path_text=path_text(ref.path),
            subject=subject,
        )
    if value.__class__ is float and not -ROUNDED < value < ROUNDED:
        # maybe an integer beyond 64 bits that orjson rounded: the adapter reads the item again, exactly
        raise InexactNumber(
            f"is an integer beyond 64 bits that cannot be read exactly, got float {describe(value)}; "
            "send it as a JSON string",
            problem=Problem.WRONG_TYPE,
            path=ref.path,
            path_text=path_text(ref.path),
            subject=subject,
        )
    raise FieldError(
        f"must be a string or an integer, got {type_name(value)} {describe(value)}",
        problem=Problem.WRONG_TYPE,
        path=ref.path,
        path_text=path_text(ref.path),
        subject=subject,
    )


def checked_id(text: str, *, key: str, template: str, check: Callable[[str], object]) -> str:
    """`text` if `check` (Orion's rule for `key`) passes; else the FieldError naming the template it came from."""
    try:
        check(text)
    except ValueError as exc:
        # the template's own words stay readable; what the topic or the payload put in is masked
        literal = words(_PLACEHOLDER.sub(" ", template))
        raise FieldError(
            f"{key} {template} renders to an invalid identifier: {exc}, got {describe_text(text, literal)}",
            problem=Problem.BAD_ID,
        ) from None
    return text

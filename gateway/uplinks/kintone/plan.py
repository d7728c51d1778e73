"""Readings → kintone record bodies → requests of at most 100 records; pure (no socket, no clock).

Theory of operation. Each reading takes the first mapping whose entity types and `match` fit it
(none: it is not for this app and is settled without a request). Its record is built from the
mapping's fields, each value shaped for the field's type in the app's form (`form.py`). Records
then go into requests: `add` mappings into `POST /k/v1/records.json`, `upsert` ones into
`PUT /k/v1/records.json` with `upsert: true` and an `updateKey`. A request holds records of one
mapping only and at most `KINTONE_MAX_RECORDS`. Order per record is kept: a record joins the
latest open request of its mapping only if no later request already holds the same record
(the same upsert key, or the same entity for `add`), and the same upsert key never appears twice
in one request (a raise and its clear in one batch become two requests, in that order).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson

from gateway.records import Reading
from gateway.uplinks.kintone.config import KINTONE_MAX_RECORDS, Constant, Mode, RecordMapping
from gateway.uplinks.kintone.form import CHOICE_TYPES, MULTI_CHOICE_TYPES, TEXT_TYPES, FormField

JST = timezone(timedelta(hours=9), "JST")  # DATE and TIME fields are local: kintone does not convert them
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class RecordError(ValueError):
    """A reading that cannot become a record of this app (a value its field cannot take, a key it lacks)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One reading as a record: where it is in the batch, which mapping, and the request entry."""

    position: int
    mapping: int
    entry: dict[str, Any]  # POST: the record; PUT: {"updateKey": …, "record": …}
    ident: str  # the record's identity for ordering: the upsert key, or the entity id


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str  # "POST" (add) or "PUT" (upsert)
    mapping: int
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    requests: tuple[Request, ...]
    unmapped: tuple[int, ...]  # positions of readings no mapping takes
    refused: tuple[tuple[int, str], ...]  # (position, why) of readings that cannot be records


def choose(reading: Reading, mappings: Sequence[RecordMapping]) -> int | None:
    """The index of the first mapping that takes `reading`, or None."""
    for i, m in enumerate(mappings):
        if reading.entity_type not in m.entity_types:
            continue
        attrs = reading.attributes
        if all(k in attrs and _same(attrs[k].value, v) for k, v in m.match.items()):
            return i
    return None


def _same(a: Any, b: Any) -> bool:
    # bool is an int: true must not match 1
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else bool(a == b)


def source_value(reading: Reading, source: str) -> tuple[bool, Any]:
    """(found, value) of an attribute name or a $pseudo source."""
    if source == "$entity_id":
        return True, reading.entity_id
    if source == "$entity_type":
        return True, reading.entity_type
    if source == "$observed_at":
        return True, reading.observed_at
    attr = reading.attributes.get(source)
    return (False, None) if attr is None else (True, attr.value)


def key_value(reading: Reading, mapping: RecordMapping) -> str:
    """The upsert key: `key` with its placeholders filled; RecordError if the reading lacks one."""

    def fill(m: re.Match[str]) -> str:
        found, value = source_value(reading, m.group(1))
        if not found or value is None or value == "":
            raise RecordError(f"key {mapping.key!r} needs {m.group(1)!r}, which the reading lacks")
        return _text(value)

    return _PLACEHOLDER.sub(fill, mapping.key)


def field_value(value: Any, field: FormField) -> Any:
    """`value` in the form kintone takes for `field`'s type; RecordError if it cannot take it."""
    kind = field.type
    if value is None:
        return [] if kind in MULTI_CHOICE_TYPES else ""
    if kind in TEXT_TYPES or kind in CHOICE_TYPES:
        return _text(value)
    if kind == "NUMBER":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise RecordError(f"field {field.code!r} (NUMBER) cannot take {type(value).__name__} {value!r}")
        # a string goes as it is: kintone says what is wrong with it (数字でなければなりません。)
        return value if isinstance(value, str) else _text(value)
    if kind in MULTI_CHOICE_TYPES:
        values = value if isinstance(value, (list, tuple)) else [value]
        return [_text(v) for v in values]
    if kind in ("DATETIME", "DATE", "TIME"):
        t = _when(value, field)
        if kind == "DATETIME":
            return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        local = t.astimezone(JST)
        return local.strftime("%Y-%m-%d") if kind == "DATE" else local.strftime("%H:%M")
    raise RecordError(f"field {field.code!r} is a {kind} field, which records cannot set")


def _when(value: Any, field: FormField) -> datetime:
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, date):
        t = datetime(value.year, value.month, value.day, tzinfo=JST)
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(f"field {field.code!r} ({field.type}) needs an ISO 8601 time, got {value!r}") from None
    else:
        raise RecordError(f"field {field.code!r} ({field.type}) needs a time, got {type(value).__name__} {value!r}")
    # a time without zone is the gateway's UTC (readings are stamped in UTC)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (int, float)):
        return repr(value)
    return orjson.dumps(value).decode()


def record_for(reading: Reading, mapping: RecordMapping, form: Mapping[str, FormField]) -> tuple[dict[str, Any], str]:
    """The request entry for `reading` and its identity; RecordError if a value does not fit its field."""
    record: dict[str, Any] = {}
    for code, source in mapping.fields.items():
        field = form[code]
        if isinstance(source, Constant):
            value: Any = source.value
        else:
            found, value = source_value(reading, source)
            if not found:
                continue  # an attribute this reading lacks: add takes the default, upsert keeps the value
        record[code] = {"value": field_value(value, field)}
    if mapping.mode is Mode.ADD:
        return record, reading.entity_id
    assert mapping.key_field is not None
    key = key_value(reading, mapping)
    if form[mapping.key_field].type == "NUMBER" and not _NUMBER.match(key):
        raise RecordError(f"key field {mapping.key_field!r} is a NUMBER field, got key {key!r}")
    return {"updateKey": {"field": mapping.key_field, "value": key}, "record": record}, "key:" + key


def plan(batch: Sequence[Reading], mappings: Sequence[RecordMapping], form: Mapping[str, FormField]) -> Plan:
    """The requests for `batch`, in the order they are to be sent (module docstring)."""
    unmapped: list[int] = []
    refused: list[tuple[int, str]] = []
    requests: list[list[Item]] = []
    modes: list[int] = []  # the mapping of each request
    last_of: dict[str, int] = {}  # identity → index of the latest request holding it
    open_for: dict[int, int] = {}  # mapping → index of its latest request
    for position, reading in enumerate(batch):
        m = choose(reading, mappings)
        if m is None:
            unmapped.append(position)
            continue
        mapping = mappings[m]
        try:
            entry, ident = record_for(reading, mapping, form)
        except RecordError as exc:
            refused.append((position, str(exc)))
            continue
        item = Item(position=position, mapping=m, entry=entry, ident=ident)
        target = open_for.get(m)
        barrier = last_of.get(ident, -1)
        usable = (
            target is not None
            and target >= barrier
            and len(requests[target]) < KINTONE_MAX_RECORDS
            and not (mapping.mode is Mode.UPSERT and barrier == target)
        )
        if not usable:
            requests.append([])
            modes.append(m)
            target = len(requests) - 1
            open_for[m] = target
        assert target is not None
        requests[target].append(item)
        last_of[ident] = target
    return Plan(
        requests=tuple(
            Request(method="PUT" if mappings[m].mode is Mode.UPSERT else "POST", mapping=m, items=tuple(items))
            for m, items in zip(modes, requests, strict=True)
        ),
        unmapped=tuple(unmapped),
        refused=tuple(refused),
    )


def body(app: int, request: Request, items: Sequence[Item] | None = None) -> bytes:
    """The JSON body of `request` (or of some of its items, after kintone refused others)."""
    entries = [item.entry for item in (request.items if items is None else items)]
    if request.method == "PUT":
        return orjson.dumps({"app": app, "upsert": True, "records": entries})
    return orjson.dumps({"app": app, "records": entries})

"""Sans-I/O: a polled document's bytes and `now` in; Readings and typed per-item errors out, plus duplicate filtering."""

from __future__ import annotations

import contextlib
import enum
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from adapters.http_poll.config import ROOT, ItemMapping, TemplatePart, parse_template
from adapters.jsonmap.ahead import KeepsAhead
from adapters.jsonmap.decode import InexactNumber, exact_loads, loads
from adapters.jsonmap.errors import FieldError, describe, describe_keys, type_name
from adapters.jsonmap.fields import FieldRules, compile_fields, read_reading
from adapters.jsonmap.paths import MISSING, JsonPath, lookup, parse_path, path_text
from adapters.jsonmap.templates import checked_id, id_field
from adapters.jsonmap.timestamps import MAX_AHEAD, TimeAhead
from gateway.date_observed import has_date_observed
from gateway.errors import DeviceProtocolError
from gateway.ngsi.identifiers import check_entity_id
from gateway.records import Reading, Source, TimeSource


class MalformedReason(enum.Enum):
    """Why a document or an item was dropped; the adapter counts per reason.

    The reasons of a field (adapters.jsonmap.errors.Problem) have the same values, so a FieldError's
    problem converts as it is (`MalformedReason(exc.problem.value)`); WRONG_SHAPE is this adapter's own.
    """

    NOT_JSON = "not_json"
    WRONG_SHAPE = "wrong_shape"  # the document or the items path is not what the mapping expects
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_ID = "bad_id"  # a rendered entity id breaks Orion's identifier rules
    BAD_VALUE = "bad_value"  # a value no NGSI broker can hold (infinite after scaling, too deep)


class MappingError(DeviceProtocolError):
    """A document or item that cannot become a Reading; `where` is its path in the document."""

    code = "http_document_malformed"

    def __init__(self, message: str, *, reason: MalformedReason, where: str) -> None:
        super().__init__(message, reason=reason.value, where=where)
        self.reason = reason
        self.where = where

    @classmethod
    def of_field(cls, exc: FieldError, where: str) -> MappingError:
        """`<item>.<path> (<attribute or timestamp>): <what>`: the field's problem at its place in the document."""
        if not exc.path_text:
            return cls(f"{where}: {exc.what}", reason=MalformedReason(exc.problem.value), where=where)
        at = _join(where, exc.path)
        return cls(f"{at} ({exc.subject}): {exc.what}", reason=MalformedReason(exc.problem.value), where=at)


# A document of 100 000 bad items must not hold 100 000 errors: each one raised keeps its traceback and the
# exception it replaced, their frames and locals (~3 KB an item). Every dropped item is counted by reason; only
# these are kept, to be worded in the log: the first EXAMPLES, and the first of each reason.
EXAMPLES = 10
# items mapped between two looks at `stopped`: a cancelled poll (SIGTERM, a reload) ends its worker this soon
STOP_CHECK_EVERY = 1000


class Stopped(Exception):
    """The mapping was abandoned as `stopped()` said so (the poll that wanted it was cancelled)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MapResult:
    """Readings of the items that mapped; every item that did not, counted by reason, and a few of their errors."""

    readings: list[Reading]
    # the first EXAMPLES dropped items' errors and the first of each reason, in document order, without tracebacks
    errors: list[MappingError]
    dropped: Counter[MalformedReason] = field(default_factory=Counter)  # every dropped item, by reason
    over_max_items: int = 0  # items past max_items in their list: not read at all


class _Drops:
    """The dropped items of one document: a count by reason and a bounded set of examples."""

    __slots__ = ("counts", "examples")

    def __init__(self) -> None:
        self.counts: Counter[MalformedReason] = Counter()
        self.examples: list[MappingError] = []

    def add(self, exc: MappingError) -> None:
        if len(self.examples) < EXAMPLES or exc.reason not in self.counts:
            # kept without the frames of the raise (the traceback) and the error it replaced (its context)
            exc.__traceback__ = None
            exc.__context__ = None
            exc.__cause__ = None
            self.examples.append(exc)
        self.counts[exc.reason] += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    items: JsonPath | None  # None: the document is one item; (): the document is the list
    items_text: str
    entity_id: tuple[TemplatePart, ...]
    entity_id_text: str  # as configured, for messages
    entity_type: str
    dated: bool  # the entity type carries dateObserved
    fields: FieldRules


def _compile(m: ItemMapping) -> _Rule:
    items: JsonPath | None
    if m.items is None:
        items, items_text = None, "document"
    elif m.items == ROOT:
        items, items_text = (), ""
    else:
        items, items_text = parse_path(m.items, may_start_with_index=True), m.items
    return _Rule(
        items=items,
        items_text=items_text,
        entity_id=parse_template(m.entity_id),
        entity_id_text=m.entity_id,
        entity_type=m.entity_type,
        dated=has_date_observed(m.entity_type),
        fields=compile_fields(m, arrival="the poll time"),
    )


def document_text(body: bytes, charset: str | None) -> bytes | str:
    """The document as orjson takes it: a UTF-8 BOM dropped, non-UTF-8 charsets (Shift_JIS systems exist) decoded."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if charset is not None and charset.replace("-", "").replace("_", "").lower() not in ("utf8", "ascii", "usascii"):
        try:
            return body.decode(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            raise MappingError(
                f"document: cannot be decoded as {charset}, got {describe(body[:40])} ({exc.__class__.__name__})",
                reason=MalformedReason.NOT_JSON,
                where="document",
            ) from None
    return body


class Mapper:
    """Maps documents by the adapter's mappings; pure but for `keeps_ahead`, so tests feed it bytes and a clock value."""

    def __init__(
        self,
        mappings: Sequence[ItemMapping],
        *,
        adapter: str,
        device: str = "",
        keeps_ahead: KeepsAhead | None = None,
        max_items: int | None = None,
    ) -> None:
        self.source = Source(adapter=adapter, device=device)
        self._rules = tuple(_compile(m) for m in mappings)
        self._keeps_ahead = keeps_ahead
        self._max_items = max_items  # per list of items; None: all

    def map(
        self, body: bytes, now: datetime, charset: str | None = None, *, stopped: Callable[[], bool] | None = None
    ) -> MapResult:
        """Document-level problems raise MappingError; item-level ones drop that item only.

        `stopped` is asked every STOP_CHECK_EVERY items (the adapter maps in a worker thread, which a cancelled
        poll cannot interrupt otherwise); once it says True, Stopped is raised.
        """
        data = document_text(body, charset)
        try:
            doc = loads(data)
        except FieldError as exc:
            # the whole document: the excerpt is masked, then cut around the error (jsonmap.errors.excerpt)
            raise MappingError.of_field(exc, "document") from None
        try:
            return self._map(doc, now, exact=False, stopped=stopped)
        except InexactNumber:
            pass  # orjson rounded an integer beyond 64 bits that a Text field or an id reads: map it exactly
        # nested beyond the exact parser's reach, orjson's document stays: its fields are refused, not rounded
        with contextlib.suppress(ValueError):
            doc = exact_loads(data)
        return self._map(doc, now, exact=True, stopped=stopped)

    def _map(self, doc: Any, now: datetime, *, exact: bool, stopped: Callable[[], bool] | None) -> MapResult:
        """`exact`: the second pass, where a field that still meets a rounded integer is refused for its item."""
        readings: list[Reading] = []
        drops = _Drops()
        over = 0
        cap = self._max_items
        for rule in self._rules:
            items = self._items(rule, doc)
            if cap is not None and len(items) > cap:
                over += len(items) - cap
                items = items[:cap]
            for i, item in enumerate(items):
                if stopped is not None and i % STOP_CHECK_EVERY == 0 and stopped():
                    raise Stopped
                where = "document" if rule.items is None else f"{rule.items_text}[{i}]"
                try:
                    readings.append(self._reading(rule, where, item, now))
                except MappingError as exc:
                    drops.add(exc)
                except InexactNumber as exc:
                    if not exact:
                        raise
                    drops.add(MappingError.of_field(exc, where))
        return MapResult(readings=readings, errors=drops.examples, dropped=drops.counts, over_max_items=over)

    def _items(self, rule: _Rule, doc: Any) -> list[Any]:
        """The rule's list of items (the document itself as the one item when `items` is unset)."""
        if rule.items is None:
            if not isinstance(doc, dict):
                raise MappingError(
                    f"document: must be a JSON object (one item), got {type_name(doc)} {describe(doc)}",
                    reason=MalformedReason.WRONG_SHAPE,
                    where="document",
                )
            return [doc]
        node = lookup(doc, rule.items)
        where = rule.items_text or "document"
        if node is MISSING:
            raise MappingError(
                f"{where}: the list of items is missing, got a document with "
                f"{'keys ' + describe_keys(sorted(doc)) if isinstance(doc, dict) else type_name(doc)}",
                reason=MalformedReason.WRONG_SHAPE,
                where=where,
            )
        if not isinstance(node, list):
            raise MappingError(
                f"{where}: must be a list of items, got {type_name(node)} {describe(node)}",
                reason=MalformedReason.WRONG_SHAPE,
                where=where,
            )
        return node

    def _reading(self, rule: _Rule, where: str, item: Any, now: datetime) -> Reading:
        if not isinstance(item, dict):
            raise MappingError(
                f"{where}: must be a JSON object, got {type_name(item)} {describe(item)}",
                reason=MalformedReason.WRONG_SHAPE,
                where=where,
            )
        try:
            entity_id = _render(rule, item)
            try:
                return self._read(rule, item, now, entity_id)
            except TimeAhead as exc:
                if self._keeps_ahead is None or not self._keeps_ahead(entity_id, exc, now):
                    raise
                # the item has its time, so `now` is only the bound to read_reading: read at that time, it is kept
                return self._read(rule, item, exc.time, entity_id)
        except InexactNumber:
            raise  # map() reads the document again, exactly, or refuses the item for it
        except FieldError as exc:
            raise MappingError.of_field(exc, where) from None

    def _read(self, rule: _Rule, item: dict[str, Any], now: datetime, entity_id: str) -> Reading:
        return read_reading(
            rule.fields,
            item,
            now,
            entity_id=entity_id,
            entity_type=rule.entity_type,
            source=self.source,
            dated=rule.dated,
        )


def _join(where: str, path: JsonPath) -> str:
    tail = path_text(path)
    if where == "document":
        return tail
    return f"{where}{tail}" if tail.startswith("[") else f"{where}.{tail}" if where else tail


def _render(rule: _Rule, item: dict[str, Any]) -> str:
    """The item's entity id; a FieldError (worded by adapters.jsonmap, as for every JSON adapter) if it has none."""
    text = "".join(part if isinstance(part, str) else id_field(item, part, "entity_id") for part in rule.entity_id)
    return checked_id(text, key="entity_id", template=rule.entity_id_text, check=check_entity_id)


# --- duplicate filtering -----------------------------------------------------------------------------


def _values_key(r: Reading) -> tuple[Any, ...]:
    return tuple(
        sorted((n, orjson.dumps(a.value, option=orjson.OPT_SORT_KEYS), a.type, a.unit) for n, a in r.attributes.items())
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Older:
    """A device time older than the last one sent for its entity (`last`), for a log line."""

    entity_id: str
    observed_at: datetime
    last: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    fresh: list[Reading]
    duplicates: int
    stale: int
    first_stale: Older | None = None  # the first of `stale`
    # older than the last sent, which is still further ahead of `now` than MAX_AHEAD so was wrong: sent
    rewound: int = 0
    first_rewound: Older | None = None


@dataclass(slots=True, kw_only=True)
class LastSeen:
    """Per entity, the last committed (observed time, values); decides what a new document adds.

    A device-timed reading is new if its time is later, or the same time with other values (a
    correction); an older one is stale (a cached document must not roll the platform back), unless the last
    time sent is still further ahead of the gateway's `now` than a time read now may be (MAX_AHEAD) and that
    clock `judges` (adapters.jsonmap.ahead: the kernel says it is synchronised). A synchronised clock
    refuses a time that far ahead when it is read, so that clock has been set back since (NTP correcting a
    clock that ran fast): the last time was wrong, and holding it would drop every right observation until
    real time passes it, so the document's observations within MAX_AHEAD of `now` are new again, oldest
    first (`rewound`: an observation sent before the wrong one may go out a second time, once). Within
    MAX_AHEAD a source's own small lead cannot be told from a wrong time; and a clock not synchronised kept
    what it could not judge (adapters.jsonmap.ahead), so does not second-guess it: stale, both. A reading
    stamped with the poll time is new only if its values changed.
    """

    capacity: int = 100_000
    _last: OrderedDict[str, tuple[datetime, TimeSource, tuple[Any, ...]]] = field(default_factory=OrderedDict)

    def select(self, readings: Sequence[Reading], now: datetime, *, judges: bool = True) -> Selection:
        # One entity twice at one time in one document: the later item is the document's last word.
        # Sending both would flip the entity between them on every poll.
        last_word: dict[tuple[str, datetime], Reading] = {}
        for r in readings:
            last_word.pop((r.entity_id, r.observed_at), None)
            last_word[(r.entity_id, r.observed_at)] = r
        duplicates = len(readings) - len(last_word)
        stale = rewound = 0
        first_stale = first_rewound = None
        # oldest first, so a document listing several observations of one station sends them all in order
        ordered = sorted(last_word.values(), key=lambda r: r.observed_at)
        pending: dict[str, tuple[datetime, TimeSource, tuple[Any, ...]]] = {}
        fresh: list[Reading] = []
        for r in ordered:
            key = _values_key(r)
            prev = pending.get(r.entity_id) or self._last.get(r.entity_id)
            if prev is not None:
                t, source, values = prev
                if r.time_source is TimeSource.DEVICE and source is TimeSource.DEVICE:
                    if r.observed_at < t:
                        older = Older(entity_id=r.entity_id, observed_at=r.observed_at, last=t)
                        if not judges or t <= now + MAX_AHEAD or r.observed_at > now + MAX_AHEAD:
                            stale += 1
                            first_stale = first_stale or older
                            continue
                        rewound += 1
                        first_rewound = first_rewound or older
                    if r.observed_at == t and key == values:
                        duplicates += 1
                        continue
                elif key == values:
                    duplicates += 1
                    continue
            pending[r.entity_id] = (r.observed_at, r.time_source, key)
            fresh.append(r)
        return Selection(
            fresh=fresh,
            duplicates=duplicates,
            stale=stale,
            first_stale=first_stale,
            rewound=rewound,
            first_rewound=first_rewound,
        )

    def remember(self, r: Reading) -> None:
        self._last[r.entity_id] = (r.observed_at, r.time_source, _values_key(r))
        self._last.move_to_end(r.entity_id)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)

    def __len__(self) -> int:
        return len(self._last)

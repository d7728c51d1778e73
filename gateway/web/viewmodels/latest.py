"""The live-values rows from the control socket's `latest` document: filtered, sorted, values as display text.

Built for 5,000 entities per request: one pass to filter, one sort by a key function, rows as named
tuples (a frozen dataclass costs a setattr per field, 75,000 of them for a full table), and times in
JST formatted by hand with a cache per distinct second (strftime is the slowest step otherwise).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

__all__ = ["AttributeCell", "EntityRow", "JstCache", "Page", "SortKey", "entity_rows", "matches", "value_text"]


class SortKey(enum.Enum):
    ENTITY = "entity"
    TYPE = "type"
    ADAPTER = "adapter"
    NEWEST = "newest"  # observation time, newest first


class AttributeCell(NamedTuple):
    name: str
    value: str
    unit: str  # the UN/CEFACT code, as stored and sent
    quality: tuple[str, ...]

    @property
    def symbol(self) -> str:
        """What a person reads after the value: `m` for MTR; the code itself where we know no symbol."""
        return UNIT_SYMBOLS.get(self.unit, self.unit)


# UN/CEFACT Recommendation 20 codes of the units the shipped profiles, adapters and processors use, and
# a few of their neighbours. C62 ("one") is a plain number: no symbol.
UNIT_SYMBOLS: dict[str, str] = {
    "MTR": "m",
    "CMT": "cm",
    "MMT": "mm",
    "KMT": "km",
    "CEL": "°C",
    "FAH": "°F",
    "KEL": "K",
    "VLT": "V",
    "AMP": "A",
    "4K": "mA",
    "WTT": "W",
    "KWT": "kW",
    "KWH": "kWh",
    "HTZ": "Hz",
    "P1": "%",
    "59": "ppm",
    "C62": "",
    "SEC": "s",
    "MIN": "min",
    "HUR": "h",
    "MTS": "m/s",
    "KMH": "km/h",
    "A97": "hPa",
    "PAL": "Pa",
    "KPA": "kPa",
    "BAR": "bar",
    "LTR": "L",
    "MTQ": "m³",
    "MQH": "m³/h",
    "GRM": "g",
    "KGM": "kg",
    "LUX": "lx",
    "DD": "°",
}


class EntityRow(NamedTuple):
    entity_id: str
    entity_type: str
    adapter: str
    device: str
    observed_at: str  # ISO-8601 UTC as the gateway gave it; the template shows it in JST
    lane: str
    attributes: tuple[AttributeCell, ...]

    @property
    def search(self) -> str:
        """What the client-side filter narrows on while typing (same fields as the server's filter)."""
        return f"{self.entity_id} {self.entity_type} {self.adapter}".lower()


def value_text(value: Any) -> str:
    """A reading's value as a person reads it: no trailing `.0` noise, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _quality(value: Any) -> tuple[str, ...]:
    return tuple(_s(q) for q in value) if isinstance(value, list | tuple) and value else ()


def _row(doc: Mapping[str, Any]) -> EntityRow:
    # dict, not Mapping, in the isinstance checks: JSON gives dicts, and the ABC check costs ten times more
    found = doc.get("attributes")
    attributes = (
        tuple(
            AttributeCell(_s(a.get("name")), value_text(a.get("value")), _s(a.get("unit")), _quality(a.get("quality")))
            for a in found
            if isinstance(a, dict)
        )
        if isinstance(found, list)
        else ()
    )
    return EntityRow(
        _s(doc.get("entity_id")),
        _s(doc.get("entity_type")),
        _s(doc.get("adapter")),
        _s(doc.get("device")),
        _s(doc.get("observed_at")),
        _s(doc.get("lane")),
        attributes,
    )


def matches(row: EntityRow, needle: str) -> bool:
    """The `latest` op's filter rule: a case-insensitive substring of entity id, type or adapter."""
    return not needle or needle.lower() in row.search


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


_SORTS: dict[SortKey, Callable[[Mapping[str, Any]], tuple[str, ...]]] = {
    SortKey.ENTITY: lambda d: (_text(d, "entity_id"),),
    SortKey.TYPE: lambda d: (_text(d, "entity_type"), _text(d, "entity_id")),
    SortKey.ADAPTER: lambda d: (_text(d, "adapter"), _text(d, "entity_id")),
    SortKey.NEWEST: lambda d: (_text(d, "observed_at"),),  # ISO-8601 UTC strings sort as times
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    rows: list[EntityRow]
    matched: int  # entities the filter let through, on every page
    offset: int

    @property
    def end(self) -> int:
        return self.offset + len(self.rows)


def entity_rows(
    entities: Iterable[Mapping[str, Any]],
    *,
    needle: str = "",
    sort: SortKey = SortKey.ENTITY,
    offset: int = 0,
    limit: int | None = None,
) -> Page:
    """One page of rows: filtered and sorted on the documents, rows built for the page only (the costly step)."""
    lowered = needle.lower()
    docs = [
        d
        for d in entities
        if not lowered or lowered in f"{_text(d, 'entity_id')} {_text(d, 'entity_type')} {_text(d, 'adapter')}".lower()
    ]
    docs.sort(key=_SORTS[sort], reverse=sort is SortKey.NEWEST)
    offset = max(0, min(offset, len(docs) - 1)) if docs else 0
    chosen = docs[offset:] if limit is None else docs[offset : offset + limit]
    return Page(rows=[_row(d) for d in chosen], matched=len(docs), offset=offset)


def parse_sort(value: str) -> SortKey:
    """The `sort` query parameter; anything unknown sorts by entity id (a bookmark from another version)."""
    try:
        return SortKey(value)
    except ValueError:
        return SortKey.ENTITY


def to_json(rows: Sequence[EntityRow]) -> list[dict[str, Any]]:
    """Rows for /api/latest: the page's script builds cells from them with textContent only."""
    return [
        {
            "entity_id": r.entity_id,
            "entity_type": r.entity_type,
            "adapter": r.adapter,
            "device": r.device,
            "observed_at": r.observed_at,
            "lane": r.lane,
            "attributes": [
                {"name": a.name, "value": a.value, "unit": a.unit, "symbol": a.symbol, "quality": list(a.quality)}
                for a in r.attributes
            ],
        }
        for r in rows
    ]


_JST = timedelta(hours=9)


class JstCache:
    """ISO-8601 UTC strings as "2026-12-04 19:05:03 JST" (the render filter's form), each distinct one formatted once.

    A text that is not a time is shown as it came: the page must not fail on one odd entity.
    """

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, iso: str) -> str:
        text = self._seen.get(iso)
        if text is None:
            text = self._seen[iso] = _jst(iso)
        return text


def _jst(iso: str) -> str:
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    offset = moment.utcoffset()
    t = (moment if offset is None else moment.replace(tzinfo=None) - offset) + _JST
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d} JST"

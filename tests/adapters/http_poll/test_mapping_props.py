"""Property: any document, valid JSON or not, gives Readings or mapping.py's typed errors, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.http_poll.config import ItemMapping
from adapters.http_poll.mapping import LastSeen, Mapper, MappingError
from gateway.ngsi.identifiers import check_entity_id
from gateway.records import TimeSource, check_values, encode_reading

NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
KEYS = st.sampled_from(["観測所", "水位", "観測時刻", "code", "level", "t", "x"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "2026/07/01 09:10",
            "2026/06/30 24:00",
            "欠測",
            "1.5",
            "-0.35",
            "1e400",
            "NaN",
            "2026年7月1日 9時10分",
            "1782864600",
        ]
    )
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=25
)
# documents shaped like the mapping expects, so deep paths are reached
ITEMS = st.dictionaries(KEYS, JSON, max_size=5) | st.fixed_dictionaries(
    {"code": SCALARS, "水位": SCALARS, "観測時刻": SCALARS}, optional={"level": JSON}
)
DOCS = JSON | st.fixed_dictionaries({"観測所": st.lists(ITEMS, max_size=5) | JSON})


def mappers() -> list[Mapper]:
    base: dict[str, Any] = {
        "items": "観測所",
        "entity_id": "urn:ngsi-ld:WaterObserved:{code}",
        "entity_type": "WaterObserved",
        "null_values": ["欠測"],
        "attributes": [
            {"path": "水位", "name": "waterLevel", "unit": "MTR", "scale": 0.01},
            {"path": "level", "name": "raw", "type": "StructuredValue", "missing": "skip"},
        ],
    }
    variants: list[dict[str, Any]] = [
        {"timestamp": {"path": "観測時刻", "format": "local"}},
        {"timestamp": {"path": "観測時刻", "format": "epoch_s", "missing": "arrival"}},
        {"timestamp": {"path": "観測時刻", "format": "iso8601"}, "items": "$"},
        {"timestamp": {"path": "観測時刻", "format": "strptime", "pattern": "%Y/%m/%d %H:%M"}, "items": None},
        {
            "attributes": [
                {"path": "水位", "name": "waterLevel", "type": "Text"},
                {"path": "x", "name": "x", "type": "Boolean", "missing": "skip"},
            ]
        },
    ]
    return [Mapper([ItemMapping.model_validate({**base, **v})], adapter="p") for v in variants]


MAPPERS = mappers()


def check(body: bytes) -> None:
    for m in MAPPERS:
        try:
            result = m.map(body, NOW)
        except MappingError:
            continue
        assert all(isinstance(e, MappingError) for e in result.errors)
        for r in result.readings:
            check_entity_id(r.entity_id)
            check_values(r)
            encode_reading(r)  # the buffer can store it
            if r.time_source is TimeSource.DEVICE:
                assert r.observed_at.tzinfo is UTC
        seen = LastSeen()
        for r in seen.select(result.readings, NOW).fresh:
            seen.remember(r)
        assert seen.select(result.readings, NOW).fresh == []  # a repeated document adds nothing


@settings(max_examples=300, deadline=None)
@given(DOCS)
def test_any_json_document_maps_or_fails_typed(doc: Any) -> None:
    check(json.dumps(doc, ensure_ascii=False).encode())


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_map_or_fail_typed(body: bytes) -> None:
    check(body)

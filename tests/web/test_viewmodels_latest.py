"""Live values: the server-side filter, the sorts, value texts, and 5,000 entities in well under the page's budget."""

from __future__ import annotations

import time
from typing import Any

from gateway.web.render import jst
from gateway.web.viewmodels.latest import JstCache, SortKey, entity_rows, parse_sort, to_json, value_text
from gateway.web.viewmodels.logs import components, filter_lines, parse_level


def entity(n: int, *, adapter: str = "gauges", etype: str = "WaterObserved") -> dict[str, Any]:
    return {
        "entity_id": f"urn:ngsi-ld:{etype}:g{n:05d}",
        "entity_type": etype,
        "adapter": adapter,
        "device": f"d{n}",
        "observed_at": f"2026-12-04T01:{n % 60:02d}:00Z",
        "lane": "normal",
        "attributes": [{"name": "waterLevel", "value": n / 10, "type": "Number", "unit": "MTR", "quality": ["ok"]}],
    }


def test_filter_is_a_case_insensitive_substring_of_id_type_or_adapter() -> None:
    docs = [entity(1), entity(2, adapter="Weather-Station", etype="WeatherObserved"), entity(3)]
    assert [r.entity_id for r in entity_rows(docs, needle="weather").rows] == ["urn:ngsi-ld:WeatherObserved:g00002"]
    assert [r.entity_id for r in entity_rows(docs, needle="G0000").rows] == [
        "urn:ngsi-ld:WaterObserved:g00001",
        "urn:ngsi-ld:WaterObserved:g00003",
        "urn:ngsi-ld:WeatherObserved:g00002",
    ]
    assert entity_rows(docs, needle="d1").rows == []  # the device is not searched, as in the control socket's filter


def test_sorts_and_limit() -> None:
    docs = [entity(3), entity(1, adapter="b"), entity(2, adapter="a")]
    assert [r.device for r in entity_rows(docs).rows] == ["d1", "d2", "d3"]
    assert [r.device for r in entity_rows(docs, sort=SortKey.ADAPTER).rows] == ["d2", "d1", "d3"]
    page = entity_rows(docs, sort=SortKey.NEWEST, limit=2)
    assert ([r.device for r in page.rows], page.matched, page.offset, page.end) == (["d3", "d2"], 3, 0, 2)
    page = entity_rows(docs, offset=2, limit=2)
    assert ([r.device for r in page.rows], page.offset, page.end) == (["d3"], 2, 3)
    assert entity_rows(docs, offset=99, limit=2).offset == 2  # past the end: the last page, not an empty one
    assert parse_sort("newest") is SortKey.NEWEST and parse_sort("<x>") is SortKey.ENTITY


def test_times_in_jst_as_the_render_filter_writes_them() -> None:
    when = JstCache()
    for iso in (
        "2026-12-04T01:00:00Z",
        "2026-12-31T15:30:05.250+00:00",
        "2026-06-30T23:59:59+09:00",
        "2026-12-04T01:00:00",
    ):
        assert when(iso) == jst(iso)
    assert (when(""), when("yesterday")) == ("", "yesterday")


def test_value_texts() -> None:
    assert [value_text(v) for v in (None, True, 1.0, 0.1 + 0.2, 12, "<b>", {"a": "日本"})] == [
        "",
        "true",
        "1",
        "0.3",
        "12",
        "<b>",
        '{"a":"日本"}',
    ]


def test_five_thousand_entities_are_filtered_and_sorted_fast() -> None:
    docs = [entity(n, adapter=f"a{n % 7}") for n in range(5000)]
    t0 = time.perf_counter()
    page = entity_rows(docs, needle="a3", sort=SortKey.NEWEST)
    payload = to_json(page.rows)
    elapsed = time.perf_counter() - t0
    assert len(page.rows) == page.matched == len([n for n in range(5000) if n % 7 == 3])
    assert payload[0]["attributes"] == [
        {
            "name": "waterLevel",
            "value": payload[0]["attributes"][0]["value"],
            "unit": "MTR",
            "symbol": "m",
            "quality": ["ok"],
        }
    ]
    assert elapsed < 0.5  # generous for a shared 2-core machine; the bench measures the page itself


LOGS = [
    {"time": 1.0, "level": "debug", "component": "gateway.delivery", "message": "batch"},
    {"time": 2.0, "level": "info", "component": "adapters.modbus", "message": "online"},
    {"time": 3.0, "level": "warning", "component": "adapters.modbus.bus", "message": "offline"},
    {"time": 4.0, "level": "error", "component": "adapters.modbusx", "message": "other family"},
]


def test_logs_by_level_and_component() -> None:
    assert [line.message for line in filter_lines(LOGS)] == ["online", "offline", "other family"]
    assert [line.message for line in filter_lines(LOGS, level="warning", component="adapters.modbus")] == ["offline"]
    assert [line.message for line in filter_lines(LOGS, level="debug", component="gateway")] == ["batch"]
    assert parse_level("WARN") == "warning" and parse_level("<script>") == "info"
    assert components(filter_lines(LOGS, level="debug")) == [
        "adapters.modbus",
        "adapters.modbus.bus",
        "adapters.modbusx",
        "gateway.delivery",
    ]

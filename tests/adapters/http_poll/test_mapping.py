"""mapping.py without any I/O: documents and a clock value in, Readings and typed errors out."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.http_poll.config import HttpPollConfig, ItemMapping
from adapters.http_poll.mapping import LastSeen, MalformedReason, Mapper, MappingError
from gateway.records import Lane, Reading, TimeSource

CASE = Path(__file__).parent / "cases" / "river_portal_latest"
NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def mapper(**overrides: Any) -> Mapper:
    item: dict[str, Any] = {
        "items": "stations",
        "entity_id": "urn:ngsi-ld:WaterObserved:{code}",
        "entity_type": "WaterObserved",
        "timestamp": {"path": "time", "format": "local"},
        "attributes": [{"path": "level", "name": "waterLevel", "unit": "MTR"}],
    }
    item.update(overrides)
    return Mapper([ItemMapping.model_validate(item)], adapter="portal", device="https://example.lg.jp/x")


def one(m: Mapper, doc: Any, now: datetime = NOW) -> Reading:
    result = m.map(json.dumps(doc, ensure_ascii=False).encode(), now)
    assert result.errors == []
    [reading] = result.readings
    return reading


def error(m: Mapper, doc: Any, now: datetime = NOW) -> tuple[str, str]:
    result = m.map(json.dumps(doc, ensure_ascii=False).encode(), now)
    assert result.readings == []
    [err] = result.errors
    return err.reason.value, str(err)


def test_the_river_portal_case() -> None:
    section = tomllib.loads((CASE / "config.toml").read_text(encoding="utf-8"))["adapters"][0]
    cfg = HttpPollConfig.model_validate(section)
    expected = json.loads((CASE / "expected.json").read_text(encoding="utf-8"))
    m = Mapper(cfg.mappings, adapter=cfg.name, device=cfg.display_url)
    result = m.map((CASE / "document.json").read_bytes(), datetime.fromisoformat(expected["now"]))
    got = [
        {
            "entity_id": r.entity_id,
            "observed_at": r.observed_at.isoformat(),
            "attributes": {n: [a.value, a.type, a.unit] for n, a in r.attributes.items()},
        }
        for r in result.readings
    ]
    assert got == expected["readings"]
    assert [[e.reason.value, str(e)] for e in result.errors] == expected["errors"]
    r = result.readings[0]
    assert (r.entity_type, r.time_source, r.lane, r.source.adapter, r.source.device) == (
        "WaterObserved",
        TimeSource.DEVICE,
        Lane.NORMAL,
        "kuma-portal",
        "https://river.example.lg.jp/api/latest",
    )


@pytest.mark.parametrize(
    ("fmt", "raw", "utc"),
    [
        ({"format": "local"}, "2026/07/01 09:10", "2026-07-01T00:10:00+00:00"),
        ({"format": "local"}, "2026/7/1 9:10:30", "2026-07-01T00:10:30+00:00"),
        ({"format": "local"}, "2026-07-01 09:10", "2026-07-01T00:10:00+00:00"),
        ({"format": "local"}, "2026年7月1日 9時10分", "2026-07-01T00:10:00+00:00"),
        ({"format": "local"}, "２０２６/０７/０１ ０９:１０", "2026-07-01T00:10:00+00:00"),
        ({"format": "local"}, "2026/06/30 24:00", "2026-06-30T15:00:00+00:00"),  # = 2026/07/01 00:00 JST
        ({"format": "local"}, "2026/01/01 08:59", "2025-12-31T23:59:00+00:00"),
        ({"format": "local", "zone": "UTC"}, "2026/07/01 09:10", "2026-07-01T09:10:00+00:00"),
        ({"format": "iso8601"}, "2026-07-01T09:10:00+09:00", "2026-07-01T00:10:00+00:00"),
        ({"format": "iso8601"}, "2026-07-01T09:10:00", "2026-07-01T00:10:00+00:00"),
        ({"format": "iso8601"}, "2026-07-01T00:10:00.123456789Z", "2026-07-01T00:10:00.123456+00:00"),
        ({"format": "strptime", "pattern": "%Y%m%d%H%M"}, "202607010910", "2026-07-01T00:10:00+00:00"),
        ({"format": "strptime", "pattern": "%d.%m.%Y %H:%M %z"}, "01.07.2026 09:10 +0900", "2026-07-01T00:10:00+00:00"),
        ({"format": "epoch_s"}, 1782864600, "2026-07-01T00:10:00+00:00"),
        ({"format": "epoch_s"}, "1782864600", "2026-07-01T00:10:00+00:00"),
        ({"format": "epoch_ms"}, 1782864600500, "2026-07-01T00:10:00.500000+00:00"),
    ],
)
def test_time_formats_convert_to_utc_exactly(fmt: dict[str, Any], raw: Any, utc: str) -> None:
    m = mapper(timestamp={"path": "time", **fmt})
    # polled once the time has come: a time ahead of the clock is refused
    r = one(m, {"stations": [{"code": "1", "level": 1.0, "time": raw}]}, max(NOW, datetime.fromisoformat(utc)))
    assert r.observed_at.isoformat() == utc
    assert r.observed_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "2026/07/01 25:00",
            "stations[0].time (timestamp): must be a local time like 2026/07/01 09:10, got '2026/07/01 25:00'",
        ),
        (
            "2026/07/01 24:10",
            "stations[0].time (timestamp): must be a local time like 2026/07/01 09:10, got '2026/07/01 24:10'",
        ),
        (
            "2026/02/30 09:10",
            "stations[0].time (timestamp): must be a local time like 2026/07/01 09:10, got '2026/02/30 09:10'",
        ),
        (202607010910, "stations[0].time (timestamp): must be a local time like 2026/07/01 09:10, got <12 digits>"),
        (
            "1970/01/01 09:00",
            "stations[0].time (timestamp): must be after 2000-01-01 and at most 15 min ahead, got "
            "'1970/01/01 09:00'; check the timestamp format and zone, or the source's clock",
        ),
        (
            "2026/07/03 09:00",
            "stations[0].time (timestamp): must be at most 15 min ahead of the gateway clock, got "
            "'2026/07/03 09:00' (2026-07-03T00:00:00+00:00), 1 day 21 h ahead; check the timestamp format and "
            "zone, or the source's clock",
        ),
    ],
)
def test_bad_times_are_typed_errors(raw: Any, message: str) -> None:
    assert error(mapper(), {"stations": [{"code": "1", "level": 1.0, "time": raw}]}) == ("bad_timestamp", message)


def test_item_errors_drop_that_item_only() -> None:
    m = mapper(
        attributes=[
            {"path": "level", "name": "waterLevel", "unit": "MTR"},
            {"path": "flag", "name": "flooded", "type": "Boolean", "missing": "skip"},
        ]
    )
    result = m.map(
        json.dumps(
            {
                "stations": [
                    {"code": "a b", "level": 1, "time": "2026/07/01 09:00"},
                    {"code": "2", "level": "high", "time": "2026/07/01 09:00"},
                    {"code": "3", "level": 1.5, "flag": "yes", "time": "2026/07/01 09:00"},
                    {"code": 4.5, "level": 1.5, "time": "2026/07/01 09:00"},
                    "0435",
                    {"level": 1.5, "time": "2026/07/01 09:00"},
                    {"code": "7", "level": 1e308, "time": "2026/07/01 09:00"},
                    {"code": "8", "level": 2, "flag": False, "time": "2026/07/01 09:00"},
                ]
            }
        ).encode(),
        NOW,
    )
    assert [(e.reason, e.where, str(e)) for e in result.errors] == [
        (
            MalformedReason.BAD_ID,
            "stations[0]",
            "stations[0]: entity_id urn:ngsi-ld:WaterObserved:{code} renders to an invalid identifier: entity id must be "
            "1-256 printable ASCII characters "
            "without blanks or any of < > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got "
            "'urn:ngsi-ld:WaterObserved:<1 letter> <1 letter>'",
        ),
        (
            MalformedReason.WRONG_TYPE,
            "stations[1].level",
            "stations[1].level (attribute waterLevel): must be a number, got str '<4 letters>'",
        ),
        (
            MalformedReason.WRONG_TYPE,
            "stations[2].flag",
            "stations[2].flag (attribute flooded): must be true or false, got str '<3 letters>'",
        ),
        (
            MalformedReason.WRONG_TYPE,
            "stations[3].code",
            "stations[3].code (entity_id {code}): must be a string or an integer, got float <1 digit>.<1 digit>",
        ),
        (MalformedReason.WRONG_SHAPE, "stations[4]", "stations[4]: must be a JSON object, got str '<4 digits>'"),
        (
            MalformedReason.MISSING_FIELD,
            "stations[5].code",
            "stations[5].code (entity_id {code}): is missing, got no such field",
        ),
    ]
    assert [(r.entity_id, {n: a.value for n, a in r.attributes.items()}) for r in result.readings] == [
        ("urn:ngsi-ld:WaterObserved:7", {"waterLevel": 1e308, "dateObserved": "2026-07-01T00:00:00.000Z"}),
        (
            "urn:ngsi-ld:WaterObserved:8",
            {"waterLevel": 2, "flooded": False, "dateObserved": "2026-07-01T00:00:00.000Z"},
        ),
    ]


def test_scale_is_decimal_exact_and_overflow_is_a_bad_value() -> None:
    m = mapper(attributes=[{"path": "level", "name": "waterLevel", "unit": "MTR", "scale": 0.01}])
    assert (
        one(m, {"stations": [{"code": "1", "level": 235, "time": "2026/07/01 09:00"}]}).attributes["waterLevel"].value
        == 2.35
    )
    assert (
        one(m, {"stations": [{"code": "1", "level": "-7", "time": "2026/07/01 09:00"}]}).attributes["waterLevel"].value
        == -0.07
    )
    big = mapper(attributes=[{"path": "level", "name": "waterLevel", "scale": 1e300}])
    assert error(big, {"stations": [{"code": "1", "level": 1e10, "time": "2026/07/01 09:00"}]}) == (
        "bad_value",
        "stations[0].level (attribute waterLevel): is out of range after scaling, got <11 digits>.<1 digit>",
    )


@pytest.mark.parametrize(
    ("body", "items", "reason", "message"),
    [
        (b"", "stations", MalformedReason.NOT_JSON, "document: is not JSON (invalid at character 0), got ''"),
        (
            b'{"stations": [',
            "stations",
            MalformedReason.NOT_JSON,
            "document: is not JSON (invalid at character 14), got '{\"stations\": ['",
        ),
        (
            b'{"other": []}',
            "stations",
            MalformedReason.WRONG_SHAPE,
            # http_poll/mapping.py quotes the keys with describe(), which masks them like any list of strings
            "stations: the list of items is missing, got a document with keys ['other']",
        ),
        (
            b"[1, 2]",
            "data.stations",
            MalformedReason.WRONG_SHAPE,
            "data.stations: the list of items is missing, got a document with list",
        ),
        (
            b'{"stations": "none today"}',
            "stations",
            MalformedReason.WRONG_SHAPE,
            "stations: must be a list of items, got str '<4 letters> <5 letters>'",
        ),
        (
            b'{"code": "1"}',
            "$",
            MalformedReason.WRONG_SHAPE,
            "document: must be a list of items, got dict {'code': '<1 digit>'}",
        ),
        (
            b'[{"code": "1"}]',
            None,
            MalformedReason.WRONG_SHAPE,
            "document: must be a JSON object (one item), got list [{'code': '<1 digit>'}]",
        ),
    ],
)
def test_document_level_problems_raise(body: bytes, items: str | None, reason: MalformedReason, message: str) -> None:
    with pytest.raises(MappingError) as info:
        mapper(items=items).map(body, NOW)
    assert (info.value.reason, str(info.value)) == (reason, message)


def test_document_as_list_or_as_one_item_and_arrival_time() -> None:
    as_list = mapper(items="$", timestamp=None)
    r = one(as_list, [{"code": "1", "level": 0.5}])
    assert (r.observed_at, r.time_source) == (NOW, TimeSource.GATEWAY)
    single = mapper(
        items=None,
        entity_id="urn:ngsi-ld:WaterObserved:{station.code}",
        timestamp={"path": "time", "format": "iso8601", "missing": "arrival"},
    )
    r = one(single, {"station": {"code": "X1"}, "level": 0.5})
    assert (r.entity_id, r.observed_at, r.time_source) == ("urn:ngsi-ld:WaterObserved:X1", NOW, TimeSource.GATEWAY)
    assert error(single, {"level": 0.5}) == (
        "missing_field",
        "station.code (entity_id {station.code}): is missing, got no such field",
    )


def test_utf8_bom_and_cp932_documents_decode() -> None:
    doc = json.dumps({"stations": [{"code": "人吉", "level": 1, "time": "2026/07/01 09:00"}]}, ensure_ascii=False)
    m = mapper(
        entity_id="urn:ngsi-ld:WaterObserved:{level}", attributes=[{"path": "code", "name": "name", "type": "Text"}]
    )
    assert m.map(b"\xef\xbb\xbf" + doc.encode(), NOW).readings[0].attributes["name"].value == "人吉"
    assert m.map(doc.encode("cp932"), NOW, "Shift_JIS").readings[0].attributes["name"].value == "人吉"
    with pytest.raises(MappingError) as info:
        m.map(doc.encode("cp932"), NOW, None)
    assert info.value.reason is MalformedReason.NOT_JSON


def reading(entity: str, minute: int, level: float, source: TimeSource = TimeSource.DEVICE) -> Reading:
    m = mapper(timestamp=None) if source is TimeSource.GATEWAY else mapper()
    doc = {"stations": [{"code": entity, "level": level, "time": f"2026/07/01 09:{minute:02d}"}]}
    return one(m, doc)


def test_last_seen_keeps_repeats_and_stale_observations_out() -> None:
    seen = LastSeen()
    first = [reading("a", 10, 1.0), reading("b", 10, 2.0)]
    sel = seen.select(first, NOW)
    assert (sel.fresh, sel.duplicates, sel.stale) == (first, 0, 0)
    assert seen.select(first, NOW).fresh == first  # nothing is remembered until it is committed
    for r in first:
        seen.remember(r)
    sel = seen.select([reading("a", 10, 1.0), reading("b", 10, 2.5), reading("a", 0, 0.5)], NOW)
    assert [(r.entity_id[-1], r.attributes["waterLevel"].value) for r in sel.fresh] == [("b", 2.5)]
    assert (sel.duplicates, sel.stale) == (1, 1)
    # several observations of one entity in one document: all new ones, oldest first; at one time the last
    sel = seen.select([reading("a", 30, 1.3), reading("a", 20, 1.1), reading("a", 20, 1.2)], NOW)
    assert [(r.observed_at.minute, r.attributes["waterLevel"].value) for r in sel.fresh] == [(20, 1.2), (30, 1.3)]
    assert sel.duplicates == 1
    for r in sel.fresh:
        seen.remember(r)
    sel = seen.select([reading("a", 30, 1.3), reading("a", 20, 1.1), reading("a", 20, 1.2)], NOW)
    assert (sel.fresh, sel.duplicates, sel.stale) == ([], 2, 1)


def test_last_seen_without_device_time_compares_values_only() -> None:
    seen = LastSeen(capacity=2)
    r1 = reading("a", 0, 1.0, TimeSource.GATEWAY)
    seen.remember(r1)
    assert seen.select([reading("a", 0, 1.0, TimeSource.GATEWAY)], NOW).duplicates == 1
    assert len(seen.select([reading("a", 0, 1.1, TimeSource.GATEWAY)], NOW).fresh) == 1
    # the same entity twice in one document (a listing error): only the last item counts, every time
    twice = [reading("a", 0, 1.5, TimeSource.GATEWAY), reading("a", 0, 1.0, TimeSource.GATEWAY)]
    sel = seen.select(twice, NOW)
    assert (sel.fresh, sel.duplicates) == ([], 2)
    seen.remember(reading("b", 0, 1.0))
    seen.remember(reading("c", 0, 1.0))
    assert len(seen) == 2  # "a" was the least recently sent: forgotten first
    assert len(seen.select([r1], NOW).fresh) == 1

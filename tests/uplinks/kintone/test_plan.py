"""The pure parts: readings → records → requests (property-tested), values per field type, kintone's answers."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.records import Attribute, Reading, Source
from gateway.uplinks.kintone.answers import Kind, classify
from gateway.uplinks.kintone.config import KintoneConfig, RecordMapping
from gateway.uplinks.kintone.form import FormField, parse_fields
from gateway.uplinks.kintone.plan import RecordError, body, field_value, plan
from tests.support.kintone_double import KintoneDouble
from tests.uplinks.kintone.conftest import example_section, helpdesk_fields

T0 = datetime(2024, 7, 1, tzinfo=UTC)
FORM = parse_fields({"properties": {f["code"]: f for f in helpdesk_fields()}})
MAPPINGS = KintoneConfig.model_validate(example_section()).mappings
VISIT_FORM = {
    "n": FormField(code="n", type="NUMBER"),
    "who": FormField(code="who", type="SINGLE_LINE_TEXT"),
}
ADD = RecordMapping.model_validate(
    {"entity_types": ["Visit"], "mode": "add", "fields": {"n": "n", "who": "$entity_id"}}
)


def reading(kind: str, entity: int, station: int, direction: str, n: int) -> Reading:
    if kind == "Visit":
        attrs = {"n": Attribute(value=n, type="Number")}
    else:
        attrs = {
            "alertSource": Attribute(value=f"st{station}", type="Relationship"),
            "thresholdName": Attribute(value="氾濫注意水位", type="Text"),
            "direction": Attribute(value=direction, type="Text"),
            "waterLevel": Attribute(value=1.0 + n / 10, type="Number"),
            "dateIssued": Attribute(value="2024-07-01T00:00:00Z", type="DateTime"),
            "severity": Attribute(value="low", type="Text"),
            "description": Attribute(value="x", type="Text"),
        }
    return Reading(
        entity_id=f"{kind}-{entity}",
        entity_type=kind,
        attributes=attrs,
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="a"),
    )


readings = st.lists(
    st.tuples(
        st.sampled_from(["Alert", "Visit", "Other"]),
        st.integers(0, 5),
        st.integers(0, 3),
        st.sampled_from(["up", "down", "sideways"]),
    ),
    max_size=400,
).map(lambda rows: [reading(k, e, s, d, n) for n, (k, e, s, d) in enumerate(rows)])


@settings(max_examples=150, deadline=None)
@given(readings)
def test_every_reading_is_planned_once_in_order_and_no_request_breaks_kintones_rules(batch: list[Reading]) -> None:
    form = FORM | VISIT_FORM
    mappings = [*MAPPINGS, ADD]
    p = plan(batch, mappings, form)
    placed = [item.position for r in p.requests for item in r.items]
    everything = sorted(placed + list(p.unmapped) + [pos for pos, _ in p.refused])
    assert everything == list(range(len(batch)))
    for pos in p.unmapped:
        assert batch[pos].entity_type == "Other" or batch[pos].attributes["direction"].value == "sideways"
    where: dict[int, int] = {item.position: i for i, r in enumerate(p.requests) for item in r.items}
    for request in p.requests:
        assert 1 <= len(request.items) <= 100
        assert {item.mapping for item in request.items} == {request.mapping}
        positions = [item.position for item in request.items]
        assert positions == sorted(positions)
        if request.method == "PUT":
            keys = [item.entry["updateKey"]["value"] for item in request.items]
            assert len(keys) == len(set(keys)), "an upsert key twice in one request"
        assert body(42, request).startswith(b'{"app":42,')
    # the same record (key or entity) is never sent ahead of an earlier reading of it
    by_ident: dict[str, list[int]] = {}
    for r in p.requests:
        for item in r.items:
            by_ident.setdefault(item.ident, []).append(item.position)
    for positions in by_ident.values():
        requests = [where[pos] for pos in sorted(positions)]
        assert requests == sorted(requests)


def test_a_full_batch_of_one_mapping_is_as_few_requests_as_the_limit_allows() -> None:
    batch = [reading("Visit", n, 0, "", n) for n in range(1000)]
    p = plan(batch, [ADD], VISIT_FORM)
    assert [len(r.items) for r in p.requests] == [100] * 10


def test_a_raise_and_a_clear_of_the_same_ticket_go_in_two_requests_in_order() -> None:
    batch = [reading("Alert", 1, 1, "up", 0), reading("Alert", 2, 2, "up", 1), reading("Alert", 3, 1, "down", 2)]
    p = plan(batch, MAPPINGS, FORM)
    assert [[i.position for i in r.items] for r in p.requests] == [[0, 1], [2]]


# ---- values per field type --------------------------------------------------------------------------

NUMBER = FormField(code="n", type="NUMBER")
DOUBLE_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # the stand-in's (kintone's) rule


@given(st.one_of(st.integers(-(10**15), 10**15), st.floats(allow_nan=False, allow_infinity=False)))
def test_numbers_are_sent_as_kintone_takes_them(value: float) -> None:
    out = field_value(value, NUMBER)
    assert DOUBLE_NUMBER.match(out) and math.isclose(float(out), value, rel_tol=0, abs_tol=0)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)))
def test_times_are_sent_in_kintones_formats(t: datetime) -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", field_value(t, FormField(code="d", type="DATETIME")))
    assert field_value(t, FormField(code="d", type="DATE")) == (t + timedelta(hours=9)).strftime("%Y-%m-%d")
    assert field_value(t.isoformat(), FormField(code="d", type="TIME")) == (t + timedelta(hours=9)).strftime("%H:%M")


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (True, "SINGLE_LINE_TEXT", "true"),
        (2.5, "MULTI_LINE_TEXT", "2.5"),
        ({"a": 1}, "SINGLE_LINE_TEXT", '{"a":1}'),
        ("high", "DROP_DOWN", "high"),
        ("a", "CHECK_BOX", ["a"]),
        (None, "NUMBER", ""),
        (None, "MULTI_SELECT", []),
        ("2024-07-01T00:10:30.900Z", "DATETIME", "2024-07-01T00:10:30Z"),
        ("2024-07-01T00:10:30", "DATETIME", "2024-07-01T00:10:30Z"),
    ],
)
def test_values_take_the_shape_of_their_field(value: Any, kind: str, expected: Any) -> None:
    assert field_value(value, FormField(code="f", type=kind)) == expected


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (True, "NUMBER", "field 'f' (NUMBER) cannot take bool True"),
        ([1], "NUMBER", "field 'f' (NUMBER) cannot take list [1]"),
        ("yesterday", "DATETIME", "field 'f' (DATETIME) needs an ISO 8601 time, got 'yesterday'"),
    ],
)
def test_values_a_field_cannot_take_are_refused_before_sending(value: Any, kind: str, message: str) -> None:
    with pytest.raises(RecordError) as caught:
        field_value(value, FormField(code="f", type=kind))
    assert str(caught.value) == message


def test_a_reading_lacking_a_key_attribute_is_refused_with_the_reason() -> None:
    r = reading("Alert", 1, 1, "up", 0)
    attrs = dict(r.attributes)
    del attrs["thresholdName"]
    broken = Reading(
        entity_id=r.entity_id, entity_type="Alert", attributes=attrs, observed_at=r.observed_at, source=r.source
    )
    p = plan([broken], MAPPINGS, FORM)
    assert p.refused == ((0, "key '{alertSource}/{thresholdName}' needs 'thresholdName', which the reading lacks"),)


# ---- kintone's answers ---------------------------------------------------------------------------------


def answer(status: int, doc: dict[str, Any]) -> Any:
    return classify(status, orjson.dumps(doc))


def test_validation_errors_name_records_by_index_for_add_and_for_update() -> None:
    a = answer(
        400,
        {
            "code": "CB_VA01",
            "id": "x",
            "message": "入力内容が正しくありません。",
            "errors": {
                "records[3].n.value": {"messages": ["数字でなければなりません。"]},
                "records[5].record.status.value": {"messages": ['"完了"は選択肢にありません。']},
                "records[5].updateKey.value": {"messages": ["必須です。"]},
            },
        },
    )
    assert a.kind is Kind.RECORDS
    assert a.refused == {
        3: "n: 数字でなければなりません。",
        5: 'status: "完了"は選択肢にありません。; value: 必須です。',
    }


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.integers(100, 599),
    st.one_of(st.binary(max_size=300), JSONISH.map(lambda doc: orjson.dumps({"code": "CB_VA01", "errors": doc}))),
)
def test_no_answer_crashes_the_classifier_and_only_a_400_refuses_records(status: int, data: bytes) -> None:
    a = classify(status, data)
    assert a.kind is not Kind.RECORDS or (status == 400 and a.refused)
    assert a.text.startswith(f"HTTP {status}")


@pytest.mark.parametrize(
    ("status", "doc", "kind"),
    [
        (400, {"code": "CB_VA01", "message": "m", "errors": {"app": {"messages": ["必須です。"]}}}, Kind.CONFIGURATION),
        (400, {"code": "CB_IL02", "message": "不正なリクエストです。"}, Kind.CONFIGURATION),
        (401, {"code": "GAIA_IA02", "message": "m"}, Kind.CONFIGURATION),
        (403, {"code": "CB_NO02", "message": "m"}, Kind.CONFIGURATION),
        (404, {"code": "GAIA_AP01", "message": "m"}, Kind.CONFIGURATION),
        (429, {"code": "GAIA_TO04", "message": "m"}, Kind.TRANSIENT),
        (503, {}, Kind.TRANSIENT),
        (520, {"code": "GAIA_UN03", "message": "m"}, Kind.TRANSIENT),
    ],
)
def test_everything_else_is_about_the_request_never_a_record(status: int, doc: dict[str, Any], kind: Kind) -> None:
    a = answer(status, doc)
    assert (a.kind, a.refused) == (kind, {})


async def test_the_stand_in_takes_what_the_planner_makes() -> None:
    """The oracle and the pure part agree: every planned request of a mixed batch is taken as it is."""
    batch = [reading("Alert", n, n % 3, "up" if n % 2 else "down", n) for n in range(40)]
    p = plan(batch, MAPPINGS, FORM)
    assert not p.refused and not p.unmapped
    async with KintoneDouble() as double, aiohttp.ClientSession() as session:
        double.add_app(42, helpdesk_fields(), "token-0123456789abcdef")
        for request in p.requests:
            async with session.request(
                request.method,
                double.url + "/k/v1/records.json",
                data=body(42, request),
                headers={"X-Cybozu-API-Token": "token-0123456789abcdef", "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 200, await resp.text()
        # three gauges, one threshold: three tickets, each in the state of its latest crossing
        records = double.records_of(42)
    assert len(records) == 3
    latest = {n % 3: n for n in range(40)}  # the last crossing of each gauge
    assert {r["alert_key"]: r["status"] for r in records} == {
        f"st{station}/氾濫注意水位": "対応中" if n % 2 else "解消" for station, n in latest.items()
    }

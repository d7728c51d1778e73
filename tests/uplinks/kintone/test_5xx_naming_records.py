"""A 5xx in kintone's error format naming records (kintone answers some validation errors with HTTP 520)
refuses those records as a 400 CB_VA01 does; every other 5xx stays transient."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop
from gateway.records import Attribute, Reading
from gateway.secrets import SecretStore
from gateway.uplinks.api import Status
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from gateway.uplinks.kintone.answers import Kind, classify
from tests.support.kintone_double import BODY, KintoneDouble
from tests.uplinks.kintone.conftest import VISITS_APP, visit, visit_fields, visits_section

VISITS_TOKEN = "visits-token-abcdef0123456789"
LOOKUP_MESSAGE = "入力内容が正しくありません。"
NOT_IN_RELATED_APP = "「{}」は参照先のアプリにありません。"


def kintone_error(status: int, code: str, errors: dict[str, Any] | None = None) -> web.Response:
    doc: dict[str, Any] = {"code": code, "id": uuid.uuid4().hex[:20], "message": LOOKUP_MESSAGE}
    if errors is not None:
        doc["errors"] = errors
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


class KintoneWithLookup(KintoneDouble):
    """The stand-in with `place` as a lookup field (ルックアップ) of another app that knows `places`:
    a value it lacks is refused as kintone answers some validation errors, with HTTP 520 in its error
    format naming the record, and nothing of the request is written (the code is the review's example)."""

    def __init__(self, places: set[str]) -> None:
        super().__init__()
        self.places = places
        self.unwell: dict[str, Any] | None = None  # the `errors` of a 520 answered to every request, if set

    async def _add(self, request: web.Request) -> web.StreamResponse:
        if self.unwell is not None:
            return kintone_error(520, "GAIA_UN03", self.unwell)
        records = orjson.loads(request[BODY]).get("records", [])
        errors = {
            f"records[{i}].place.value": {"messages": [NOT_IN_RELATED_APP.format(r["place"]["value"])]}
            for i, r in enumerate(records)
            if "place" in r and r["place"]["value"] not in self.places
        }
        if errors:
            return kintone_error(520, "GAIA_LO04", errors)
        return await super()._add(request)


def visit_at(n: int, place: str = "図書館") -> Reading:
    r = visit(n, n)
    return replace(r, attributes={**r.attributes, "place": Attribute(value=place, type="Text")})


def uplink(url: str, tmp_path: Path) -> tuple[KintoneConfig, KintoneUplink]:
    SecretStore(tmp_path).set("visits_token", VISITS_TOKEN)
    cfg = KintoneConfig.model_validate(visits_section(url))
    return cfg, KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def instant(_: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def kintone() -> Any:
    async with KintoneWithLookup({"図書館", "公民館"}) as double:
        double.add_app(VISITS_APP, visit_fields(), VISITS_TOKEN)
        yield double


def writes(double: KintoneDouble) -> list[tuple[str, int, int]]:
    return [(r.method, len(r.json()["records"]), r.status) for r in double.requests if r.path.endswith("records.json")]


async def test_a_520_naming_one_record_dead_letters_it_and_the_lane_moves_on(
    kintone: KintoneWithLookup, tmp_path: Path
) -> None:
    cfg, up = uplink(kintone.url, tmp_path)
    box = await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["visits"]
    )
    await box.append_many([visit_at(n, "存在しない館" if n == 2 else "図書館") for n in range(1, 6)])
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(5):
            while len(kintone.records_of(VISITS_APP)) < 4:
                await asyncio.sleep(0.005)
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 5)
        await up.close()
    assert [r["visit_id"] for r in kintone.records_of(VISITS_APP)] == [visit(n, 0).entity_id for n in (1, 3, 4, 5)]
    [dead] = await box.dead_letters("visits")
    assert dead.entity_id == "urn:ngsi-ld:Visit:lib-00002"
    assert dead.reason == (
        "visits: kintone refused the record of urn:ngsi-ld:Visit:lib-00002 (app 7), "
        "got HTTP 520 GAIA_LO04: 入力内容が正しくありません。 place: 「存在しない館」は参照先のアプリにありません。"
    )
    # kintone wrote nothing of the refused request: the same request again without the named record
    assert writes(kintone) == [("POST", 5, 520), ("POST", 4, 200)]
    status = loop.status()
    assert (status.delivered, status.rejected, status.last_error) == (4, 1, "")
    await box.close()


async def test_a_520_naming_every_record_checks_the_form_again_first(
    kintone: KintoneWithLookup, tmp_path: Path
) -> None:
    _, up = uplink(kintone.url, tmp_path)
    async with up:
        [outcome] = await up.deliver([visit_at(1, "存在しない館")])
    assert outcome.status is Status.REJECTED
    assert outcome.reason.endswith(
        "got HTTP 520 GAIA_LO04: 入力内容が正しくありません。 place: 「存在しない館」は参照先のアプリにありません。"
    )
    assert [(r.method, r.status) for r in kintone.requests] == [("GET", 200), ("POST", 520), ("GET", 200)]


@pytest.mark.parametrize(
    "errors",
    [
        {"app": {"messages": ["一時的なエラーです。"]}},  # about the request
        {"records[7].place.value": {"messages": ["m"]}},  # a record the request does not have
    ],
)
async def test_a_5xx_not_about_the_requests_records_stays_transient(
    kintone: KintoneWithLookup, tmp_path: Path, errors: dict[str, Any]
) -> None:
    _, up = uplink(kintone.url, tmp_path)
    async with up:
        kintone.unwell = errors
        outcomes = await up.deliver([visit_at(1), visit_at(2)])
    assert [(o.status, o.fault.value if o.fault else None) for o in outcomes] == [(Status.RETRY, "transient")] * 2
    assert outcomes[0].reason == (
        f"kintone at {kintone.url}/k/v1/records.json failed, got HTTP 520 GAIA_UN03: 入力内容が正しくありません。"
    )


# ---- the classifier, pure ------------------------------------------------------------------------------


def body(doc: Any) -> bytes:
    return orjson.dumps(doc)


KINTONE_ERROR = {"code": "GAIA_LO04", "id": "1505999166-897850006", "message": LOOKUP_MESSAGE}


@pytest.mark.parametrize("status", [500, 502, 503, 520])
def test_a_5xx_in_kintones_format_naming_records_refuses_them(status: int) -> None:
    errors = {
        "records[1].place.value": {"messages": ["「存在しない館」は参照先のアプリにありません。"]},
        "records[4].record.place.value": {"messages": ["「x」は参照先のアプリにありません。"]},
    }
    a = classify(status, body(KINTONE_ERROR | {"errors": errors}))
    assert (a.kind, a.code) == (Kind.RECORDS, "GAIA_LO04")
    assert a.refused == {
        1: "place: 「存在しない館」は参照先のアプリにありません。",
        4: "place: 「x」は参照先のアプリにありません。",
    }
    assert a.text == f"HTTP {status} GAIA_LO04: 入力内容が正しくありません。"


@pytest.mark.parametrize(
    "data",
    [
        body(KINTONE_ERROR),  # no errors at all
        body(KINTONE_ERROR | {"errors": {}}),
        body(KINTONE_ERROR | {"errors": {"app": {"messages": ["m"]}}}),  # about the request
        body(KINTONE_ERROR | {"errors": {"records[0].place.value": {"messages": ["m"]}, "app": "m"}}),  # partly
        body(KINTONE_ERROR | {"errors": ["records[0].place.value"]}),  # not an object
        body({"errors": {"records[0].place.value": {"messages": ["m"]}}}),  # not kintone's format
        body({"code": 1, "id": "x", "message": "m", "errors": {"records[0].place.value": {"messages": ["m"]}}}),
        body([KINTONE_ERROR]),
        b"<html><title>520 Origin Error</title></html>",
        b"",
    ],
)
def test_any_other_5xx_stays_transient(data: bytes) -> None:
    for status in (500, 503, 520, 599):
        a = classify(status, data)
        assert (a.kind, a.refused) == (Kind.TRANSIENT, {})


PATH_FIELD = st.from_regex(r"[a-z][a-z_0-9]{0,10}", fullmatch=True)


@given(
    st.integers(500, 599),
    st.dictionaries(st.integers(0, 99), PATH_FIELD, min_size=1, max_size=8),
    st.sampled_from(["", "record.", "updateKey."]),
)
def test_every_record_a_kintone_5xx_names_is_refused_and_no_other(
    status: int, named: dict[int, str], prefix: str
) -> None:
    errors = {f"records[{i}].{prefix}{code}.value": {"messages": [f"m{i}"]} for i, code in named.items()}
    a = classify(status, body(KINTONE_ERROR | {"errors": errors}))
    assert a.kind is Kind.RECORDS
    assert a.refused == {i: f"{code}: m{i}" for i, code in named.items()}


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=20,
)


@given(st.integers(500, 599), st.one_of(st.binary(max_size=300), JSONISH.map(orjson.dumps)))
def test_a_5xx_refuses_records_only_in_kintones_format_naming_nothing_but_records(status: int, data: bytes) -> None:
    a = classify(status, data)
    assert a.kind in (Kind.TRANSIENT, Kind.RECORDS)
    if a.kind is Kind.RECORDS:
        doc = orjson.loads(data)
        assert all(isinstance(doc.get(k), str) for k in ("code", "id", "message"))
        assert doc["errors"] and all(str(k).startswith("records[") for k in doc["errors"])

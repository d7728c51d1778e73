"""The `kintone` uplink end to end: the buffer, the delivery loop and the uplink against the kintone stand-in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop, UplinkState, UplinkStatus
from gateway.errors import ConfigError
from gateway.fleet.alarms import AlarmEvent, Condition, EventKind, alarm_reading
from gateway.fleet.config import AlarmKind, Severity
from gateway.processing.river import RiverConfig, RiverProcessor
from gateway.records import Attribute, Reading, Source
from gateway.secrets import SecretStore
from gateway.uplinks.api import DELIVERED, Status
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from tests.support.kintone_double import KintoneDouble
from tests.support.orion_double import make_tls_material
from tests.uplinks.kintone.conftest import (
    HELPDESK_APP,
    STATION,
    T0,
    TOKEN,
    VISITS_APP,
    alert,
    example_section,
    visit,
    visit_fields,
    visits_section,
)

FIELDS = "/k/v1/app/form/fields.json"


def helpdesk(url: str, tmp_path: Path, token: str = TOKEN, **keys: Any) -> tuple[KintoneConfig, KintoneUplink]:
    SecretStore(tmp_path).set("kintone_helpdesk_token", token)
    doc = example_section() | {"url": url, "start_delay_max_s": 0} | keys
    cfg = KintoneConfig.model_validate(doc)
    return cfg, KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


def visits(url: str, tmp_path: Path, **keys: Any) -> tuple[KintoneConfig, KintoneUplink]:
    SecretStore(tmp_path).set("visits_token", "visits-token-abcdef0123456789")
    cfg = KintoneConfig.model_validate(visits_section(url, **keys))
    return cfg, KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def instant(_: float) -> None:
    """The delivery loop's sleep here: backoffs pass at once."""
    await asyncio.sleep(0)


async def open_box(tmp_path: Path, name: str) -> Outbox:
    return await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), [name]
    )


async def run_loop(loop: DeliveryLoop, done: Callable[[], bool], timeout: float = 10.0) -> UplinkStatus:
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.005)
            return loop.status()
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, timeout)
        await loop.uplink.close()


def writes(double: KintoneDouble) -> list[tuple[str, int]]:
    return [(r.method, len(r.json()["records"])) for r in double.requests if r.path.endswith("records.json")]


# ---- alarms as tickets ------------------------------------------------------------------------------


async def test_a_river_alert_raised_and_cleared_is_one_ticket_created_then_updated(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    cfg, up = helpdesk(kintone.url, tmp_path)
    box = await open_box(tmp_path, "helpdesk")
    await box.append_many([alert("up", 0, 3.52)])
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(10):
        while len(kintone.records_of(HELPDESK_APP)) < 1:
            await asyncio.sleep(0.005)
        [opened] = [dict(r) for r in kintone.records_of(HELPDESK_APP)]
        await box.append_many([alert("down", 95, 3.41)])
        while kintone.records_of(HELPDESK_APP)[0]["$revision"] < 2:
            await asyncio.sleep(0.005)
    loop.stop_soon()
    await task
    await up.close()
    [ticket] = kintone.records_of(HELPDESK_APP)
    key = f"{STATION}/氾濫注意水位"
    assert opened["status"] == "対応中" and opened["alert_key"] == key
    assert ticket == {
        "$id": 1,
        "$revision": 2,
        "alert_key": key,
        "title": "氾濫注意水位 3.50 m に達しました（水位 3.52 m）",  # the rise's title stays
        "station": STATION,
        "threshold": "氾濫注意水位",
        "severity": "low",
        "water_level": "3.41",
        "raised_at": "2024-07-01T00:10:30Z",
        "cleared_at": "2024-07-01T01:45:30Z",
        "cleared_note": "氾濫注意水位 3.50 m を下回りました（水位 3.41 m）",
        "status": "解消",
        "last_alert_id": alert("down", 95, 3.41).entity_id,
    }
    assert [r.method for r in kintone.requests] == ["GET", "PUT", "PUT"]
    put = kintone.requests[1]
    assert put.headers["X-Cybozu-API-Token"] == TOKEN
    assert put.json()["upsert"] is True
    assert put.json()["records"][0]["updateKey"] == {"field": "alert_key", "value": key}
    stats = await box.stats()
    assert stats.dead_letters.get("helpdesk", 0) == 0
    await box.close()


async def test_a_gateway_alarm_raised_and_cleared_is_one_ticket_of_the_same_app(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    """The fleet's own Alert entities (issue 16) through the shipped example's gatewayAlarm mappings."""
    cond = Condition(
        kind=AlarmKind.UPLINK_NOT_DELIVERING,
        subject="orion",
        severity=Severity.CRITICAL,
        detail="orion delivered nothing for 600 s",
    )
    raised_at = T0.timestamp()
    raised = AlarmEvent(kind=EventKind.RAISED, condition=cond, raised_at=raised_at, at=raised_at)
    cleared = AlarmEvent(kind=EventKind.CLEARED, condition=cond, raised_at=raised_at, at=raised_at + 1800)
    device = "urn:ngsi-ld:Device:hitoyoshi-river-01"
    opened_reading = alarm_reading(raised, gateway="hitoyoshi-river-01", device_entity_id=device)
    cleared_reading = alarm_reading(cleared, gateway="hitoyoshi-river-01", device_entity_id=device)
    assert opened_reading.entity_id == cleared_reading.entity_id  # one entity per occurrence
    cfg, up = helpdesk(kintone.url, tmp_path)
    box = await open_box(tmp_path, "helpdesk")
    await box.append_many([opened_reading])
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(10):
        while len(kintone.records_of(HELPDESK_APP)) < 1:
            await asyncio.sleep(0.005)
        [opened] = [dict(r) for r in kintone.records_of(HELPDESK_APP)]
        await box.append_many([cleared_reading])
        while kintone.records_of(HELPDESK_APP)[0]["$revision"] < 2:
            await asyncio.sleep(0.005)
    loop.stop_soon()
    await task
    await up.close()
    [ticket] = kintone.records_of(HELPDESK_APP)
    assert (opened["status"], opened["threshold"], opened["station"]) == ("対応中", "uplink_not_delivering", device)
    assert ticket["alert_key"] == opened_reading.entity_id
    assert (ticket["status"], ticket["title"]) == ("解消", "orion delivered nothing for 600 s")
    assert ticket["cleared_at"] == "2024-07-01T00:40:30Z"


async def test_a_raise_and_its_clear_in_one_batch_are_sent_in_order_in_two_requests(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    _, up = helpdesk(kintone.url, tmp_path)
    async with up:
        assert await up.deliver([alert("up", 0, 3.52), alert("down", 30, 3.40)]) == [DELIVERED] * 2
    assert writes(kintone) == [("PUT", 1), ("PUT", 1)]
    [ticket] = kintone.records_of(HELPDESK_APP)
    assert ticket["status"] == "解消"


async def test_the_river_processors_own_alerts_become_one_ticket_per_gauge_and_threshold(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    river = RiverProcessor(
        RiverConfig.model_validate({"thresholds": [{"level": 2.0}, {"level": 3.0}]}),
        attribute="waterLevel",
    )
    alerts: list[Reading] = []
    for minute, level in enumerate([1.0, 2.5, 1.5, 2.4]):  # rise, fall, rise again
        gauge = Reading(
            entity_id="urn:ngsi-ld:WaterObserved:kuma-hitoyoshi",
            entity_type="WaterObserved",
            attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
            observed_at=T0 + timedelta(minutes=10 * minute),
            source=Source(adapter="gauge"),
        )
        alerts += [r for r in river.process(gauge, T0) if r.entity_type == "Alert"]
    assert [r.attributes["direction"].value for r in alerts] == ["up", "down", "up"]
    _, up = helpdesk(kintone.url, tmp_path)
    async with up:
        assert await up.deliver(alerts[:2]) == [DELIVERED] * 2
        [cleared] = [dict(r) for r in kintone.records_of(HELPDESK_APP)]
        assert await up.deliver(alerts[2:]) == [DELIVERED]
    [ticket] = kintone.records_of(HELPDESK_APP)
    assert cleared["status"] == "解消" and ticket["status"] == "対応中"  # reopened by the second rise
    assert ticket["alert_key"] == "urn:ngsi-ld:WaterObserved:kuma-hitoyoshi/水防団待機水位"
    assert ticket["last_alert_id"] == alerts[2].entity_id
    assert (ticket["water_level"], ticket["severity"]) == ("2.4", alerts[2].attributes["severity"].value)


# ---- bad values, outages, credentials --------------------------------------------------------------


async def test_a_bad_field_value_is_dead_lettered_with_kintones_message_and_the_rest_arrive(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, up = visits(kintone.url, tmp_path)
    box = await open_box(tmp_path, "visits")
    await box.append_many([visit(n, "欠測" if n == 7 else n) for n in range(12)])
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    status = await run_loop(loop, lambda: len(kintone.records_of(VISITS_APP)) >= 11)
    arrived = [r["visit_id"] for r in kintone.records_of(VISITS_APP)]
    assert arrived == [visit(n, 0).entity_id for n in range(12) if n != 7]
    [dead] = await box.dead_letters("visits")
    assert dead.entity_id == "urn:ngsi-ld:Visit:lib-00007"
    assert dead.reason == (
        "visits: kintone refused the record of urn:ngsi-ld:Visit:lib-00007 (app 7), "
        "got HTTP 400 CB_VA01: 入力内容が正しくありません。 visitors: 数字でなければなりません。"
    )
    # kintone writes nothing of a refused request: the same request again without the bad record
    assert writes(kintone) == [("POST", 12), ("POST", 11)]
    assert (status.delivered, status.rejected) == (11, 1)
    await box.close()


@pytest.mark.parametrize(("code", "phrase"), [(503, "Service Unavailable"), (429, "Too Many Requests")])
async def test_kintone_answering_503_or_429_for_a_while_delivers_everything_after(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture, code: int, phrase: str
) -> None:
    caplog.set_level(logging.INFO)
    cfg, up = visits(kintone.url, tmp_path)
    box = await open_box(tmp_path, "visits")
    await box.append_many([visit(n, n) for n in range(30)])
    kintone.fail(code, 5)  # the form check and four deliveries
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    status = await run_loop(loop, lambda: len(kintone.records_of(VISITS_APP)) >= 30)
    assert [r["visit_id"] for r in kintone.records_of(VISITS_APP)] == [visit(n, 0).entity_id for n in range(30)]
    assert [r.status for r in kintone.requests] == [code] * 5 + [200, 200]
    assert (await box.stats()).dead_letters.get("visits", 0) == 0
    assert status.rejected == 0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("gateway.uplinks.kintone")]
    # once down, once back: not a line per failed request
    assert lines == [
        (
            "WARNING",
            f"kintone at {kintone.url}/k/v1/app/form/fields.json (app 7) failed, got HTTP {code}: {code} {phrase} "
            "(an HTML page: a proxy or web server answered, not kintone's API); readings stay buffered and are retried",
        ),
        ("INFO", f"delivering to kintone app 7 at {kintone.url} again"),
    ]
    await box.close()


async def test_a_wrong_token_dead_letters_nothing_and_says_error_in_the_log_and_the_status(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, up = helpdesk(kintone.url, tmp_path, token="an-old-token-0000000000000000")
    box = await open_box(tmp_path, "helpdesk")
    await box.append_many([alert("up", n, 3.5 + n / 100, index=n % 4 + 1) for n in range(8)])
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    status = await run_loop(loop, lambda: len(kintone.requests) >= 4)
    reason = (
        f"kintone refused the request to {kintone.url}/k/v1/app/form/fields.json (app 42), got HTTP 401 GAIA_IA02: "
        "指定したAPIトークンが無効です。; check api_token (a token of this app), or user/password, and basic_auth "
        "if cybozu.com asks for it (readings stay buffered)"
    )
    assert (status.state, status.last_error, status.rejected, status.delivered) == (UplinkState.REFUSED, reason, 0, 0)
    assert status.diagnostics["form_check"] == "failed: HTTP 401 GAIA_IA02: 指定したAPIトークンが無効です。"
    stats = await box.stats()
    assert stats.dead_letters.get("helpdesk", 0) == 0
    assert stats.uplinks["helpdesk"].pending["alert"] == 8
    assert not kintone.records_of(HELPDESK_APP)
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[0] == ("gateway.uplinks.kintone.uplink", reason)
    assert "an-old-token" not in caplog.text
    await box.close()


async def test_a_token_of_another_app_is_a_permission_problem_not_bad_data(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    _, up = helpdesk(kintone.url, tmp_path, token="visits-token-abcdef0123456789")
    async with up:
        [outcome] = await up.deliver([alert("up", 0, 3.52)])
    assert outcome.status is Status.RETRY
    assert "HTTP 403 GAIA_NO01" in outcome.reason and "lacks a permission on app 42" in outcome.reason


async def test_an_app_changed_after_start_dead_letters_nothing(kintone: KintoneDouble, tmp_path: Path) -> None:
    _, up = helpdesk(kintone.url, tmp_path)
    async with up:
        kintone.apps[HELPDESK_APP].properties["cleared_at"]["required"] = True  # someone edits the form
        outcomes = await up.deliver([alert("up", 0, 3.52, index=n) for n in range(1, 4)])
        diagnostics = up.diagnostics()
    assert {o.status for o in outcomes} == {Status.RETRY}
    assert outcomes[0].reason == (
        "uplinks.helpdesk.mappings[0].fields: the app's field 'cleared_at' (解消日時) is required and has no default, "
        "got no mapping for it; map it or make it optional in the app; "
        "uplinks.helpdesk.mappings[2].fields: the app's field 'cleared_at' (解消日時) is required and has no default, "
        "got no mapping for it; map it or make it optional in the app"
    )
    assert [r.method for r in kintone.requests] == ["GET", "PUT", "GET"]
    assert diagnostics["form_check"].startswith("failed: ")
    assert not kintone.records_of(HELPDESK_APP)


async def test_a_lone_bad_record_is_dead_lettered_after_the_form_is_found_unchanged(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    _, up = visits(kintone.url, tmp_path)
    async with up:
        [outcome] = await up.deliver([visit(1, "n/a")])
    assert outcome.status is Status.REJECTED
    assert outcome.reason.endswith("visitors: 数字でなければなりません。")
    assert [r.method for r in kintone.requests] == ["GET", "POST", "GET"]


# ---- the form check ----------------------------------------------------------------------------------


async def test_a_wrong_field_code_stops_the_start_naming_it_before_anything_is_sent(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    section = example_section()
    section["mappings"][0]["fields"] = section["mappings"][0]["fields"] | {"water_lvl": "waterLevel"}
    del section["mappings"][0]["fields"]["water_level"]
    section["mappings"][1]["fields"]["status"] = {"value": "完了"}
    _, up = helpdesk(kintone.url, tmp_path, mappings=section["mappings"])
    with pytest.raises(ConfigError) as caught:
        await up.start()
    assert caught.value.errors == [
        "uplinks.helpdesk.mappings[0].fields.water_lvl: the app has no field with this field code, got 'water_lvl'; "
        "the app's field codes like it: water_level",
        "uplinks.helpdesk.mappings[1].fields.status: must be one of the field's choices (対応中, 解消), got '完了'",
    ]
    assert [r.method for r in kintone.requests] == ["GET"]
    assert up.diagnostics()["form_check"].startswith("failed: uplinks.helpdesk.mappings[0].fields.water_lvl")


async def test_the_key_field_must_be_unique_and_required_fields_mapped(kintone: KintoneDouble, tmp_path: Path) -> None:
    app = kintone.apps[HELPDESK_APP]
    app.properties["alert_key"]["unique"] = False
    app.properties["title"]["required"] = True
    _, up = helpdesk(kintone.url, tmp_path)
    with pytest.raises(ConfigError) as caught:
        await up.start()
    assert caught.value.errors == [
        "uplinks.helpdesk.mappings[0].key_field: updateKey needs a text (1 line) or number field with 値の重複を禁止する "
        "(prohibit duplicate values), got SINGLE_LINE_TEXT field 'alert_key' without it; turn it on in the app's "
        "form settings",
        "uplinks.helpdesk.mappings[1].key_field: updateKey needs a text (1 line) or number field with 値の重複を禁止する "
        "(prohibit duplicate values), got SINGLE_LINE_TEXT field 'alert_key' without it; turn it on in the app's "
        "form settings",
        "uplinks.helpdesk.mappings[1].fields: the app's field 'title' (件名) is required and has no default, got no "
        "mapping for it; map it or make it optional in the app",
        "uplinks.helpdesk.mappings[2].key_field: updateKey needs a text (1 line) or number field with 値の重複を禁止する "
        "(prohibit duplicate values), got SINGLE_LINE_TEXT field 'alert_key' without it; turn it on in the app's "
        "form settings",
        "uplinks.helpdesk.mappings[3].key_field: updateKey needs a text (1 line) or number field with 値の重複を禁止する "
        "(prohibit duplicate values), got SINGLE_LINE_TEXT field 'alert_key' without it; turn it on in the app's "
        "form settings",
        "uplinks.helpdesk.mappings[3].fields: the app's field 'title' (件名) is required and has no default, got no "
        "mapping for it; map it or make it optional in the app",
    ]


# ---- batches and the daily limit ---------------------------------------------------------------------


async def test_requests_hold_at_most_100_records(kintone: KintoneDouble, tmp_path: Path) -> None:
    _, up = visits(kintone.url, tmp_path)
    async with up:
        assert await up.deliver([visit(n, n) for n in range(250)]) == [DELIVERED] * 250
    assert writes(kintone) == [("POST", 100), ("POST", 100), ("POST", 50)]
    assert kintone.max_in_flight == 1


async def test_readings_no_mapping_takes_are_settled_without_a_request(kintone: KintoneDouble, tmp_path: Path) -> None:
    _, up = helpdesk(kintone.url, tmp_path)
    async with up:
        assert await up.deliver([visit(1, 1), visit(2, 2)]) == [DELIVERED] * 2
    assert writes(kintone) == []
    assert up.diagnostics()["skipped"] == 2


async def test_the_daily_limit_holds_readings_and_shows_in_diagnostics(kintone: KintoneDouble, tmp_path: Path) -> None:
    now = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)  # 23:00 JST: the count resets at 09:00 JST = 00:00 UTC
    cfg = KintoneConfig.model_validate(visits_section(kintone.url, daily_request_limit=3))
    SecretStore(tmp_path).set("visits_token", "visits-token-abcdef0123456789")
    up = KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)), now=lambda: now)
    async with up:
        first = await up.deliver([visit(n, n) for n in range(150)])  # the form check, two requests
        held = await up.deliver([visit(n, n) for n in range(150, 160)])
        diagnostics = up.diagnostics()
    assert first == [DELIVERED] * 150
    assert {o.status for o in held} == {Status.RETRY}
    assert held[0].reason == (
        "kintone app 7: the daily request limit is reached, got 3 requests today (daily_request_limit = 3); "
        "readings stay buffered until the count resets at 2026-12-05T00:00:00Z (09:00 JST)"
    )
    assert (diagnostics["requests_today"], diagnostics["daily_request_limit"]) == (3, 3)
    assert diagnostics["summary"] == "app 7: 3/3 requests today, form ok"
    assert diagnostics["form_check"] == "ok (4 fields, 2026-12-04T14:00:00Z)"
    # the count survives a restart on the same day
    again = KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)), now=lambda: now)
    assert again.diagnostics()["requests_today"] == 3
    tomorrow = KintoneUplink(
        cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)), now=lambda: datetime(2026, 12, 5, tzinfo=UTC)
    )
    assert tomorrow.diagnostics()["requests_today"] == 0


async def test_secure_access_with_a_client_certificate(tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    async with KintoneDouble(tls, require_client_cert=True) as double:
        double.add_app(VISITS_APP, visit_fields(), "visits-token-abcdef0123456789")
        bare = {"ca_file": str(tls.ca_file)}
        _, without = visits(double.url, tmp_path, tls=bare)
        async with without:
            [refused] = await without.deliver([visit(1, 1)])
        _, up = visits(
            double.url, tmp_path, tls=bare | {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
        )
        async with up:
            assert await up.deliver([visit(1, 1)]) == [DELIVERED]
        assert len(double.records_of(VISITS_APP)) == 1
    assert refused.status is Status.RETRY and "client certificate" in refused.reason


async def test_password_and_basic_authentication_headers(kintone: KintoneDouble, tmp_path: Path) -> None:
    kintone.users["gw-001"] = "pa:ss-word-0123"
    kintone.basic = ("pref", "basic-secret-0123")
    store = SecretStore(tmp_path)
    store.set("kintone_password", "pa:ss-word-0123")
    store.set("basic_password", "basic-secret-0123")
    doc = visits_section(kintone.url) | {"api_token": [], "user": "gw-001", "password": "secret:kintone_password"}
    doc["basic_auth"] = {"user": "pref", "password": "secret:basic_password"}
    up = KintoneUplink(KintoneConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    async with up:
        assert await up.deliver([visit(1, 1)]) == [DELIVERED]
    assert "X-Cybozu-API-Token" not in kintone.requests[-1].headers

"""Dashboard and live values against a real gateway through its control socket; and without one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from gateway.accounts.store import Role
from gateway.records import Attribute, Reading, Source
from tests.support.orion_double import OrionDouble
from tests.web.conftest import WebEnv, login
from tests.web.pages_harness import gateway_web, until

XSS = "<script>alert(1)</script>"


async def test_the_dashboard_shows_the_running_gateway_in_japanese_and_english(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        await until(lambda: env.runtime.gateway.loops[0].delivered > 0, "a delivery to the Orion double")
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/")).text()
        assert '<section id="dashboard"' in page
        assert '<td data-live="gateway">gw-web</td>' in page
        assert re.search(
            r'<table id="adapters">.*<td>gauges</td><td>simulated</td>\s*<td data-live="adapter.gauges.state">稼働中</td>',
            page,
            re.S,
        )
        assert re.search(r'<table id="uplinks">.*<td>orion</td><td>orion</td>', page, re.S)
        assert "発令中のアラートはありません。" in page
        # the refresh: the same cells as JSON, in the session's language
        doc = await (await viewer.get("/api/status")).json()
        assert doc["reachable"] is True
        assert doc["cells"]["gateway"] == "gw-web"
        assert doc["cells"]["adapter.gauges.state"] == "稼働中"
        assert doc["cells"]["uplink.orion.last_delivery"].endswith(" JST")
        # the host's figures from the control socket's additions to the status document
        assert re.fullmatch(r"\d+\.\d [KMGT]Bのうち\d+ %使用", doc["cells"]["memory"])
        assert re.fullmatch(r"使用率 (\d+ %|—)、ロードアベレージ \d+\.\d\d", doc["cells"]["cpu"])
        assert re.fullmatch(r"[\d,]+（上限 5,000,000、0 %）", doc["cells"]["cap.rows"])
        english = await (await viewer.get("/", headers={"Accept-Language": "en"})).text()
        assert '<td data-live="adapter.gauges.state">running</td>' in english
        assert "No active alerts." in english


async def test_the_dashboard_says_plainly_when_the_gateway_is_not_running(web_env: WebEnv) -> None:
    web_env.add_user("mika", Role.VIEWER)
    await login(web_env.client, "mika")
    response = await web_env.client.get("/")
    assert response.status == 200
    page = await response.text()
    assert (
        '<p id="unreachable" class="unreachable">ゲートウェイに接続できません。ゲートウェイ（edgegw）が動いているか確認してください。</p>'
        in page
    )
    doc = await (await web_env.client.get("/api/status")).json()
    assert doc == {
        "reachable": False,
        "error": "ゲートウェイに接続できません。ゲートウェイ（edgegw）が動いているか確認してください。",
    }


async def test_live_values_filter_and_an_entity_id_with_a_script_tag_stays_inert(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        await until(lambda: len(env.runtime.gateway.latest) == 3, "three entities in the latest values")
        # an id Orion would refuse, but another uplink family might carry: the page must show it as text
        env.runtime.gateway.latest[XSS] = Reading(
            entity_id=XSS,
            entity_type="Evil",
            attributes={"name": Attribute(value='"><img src=x onerror=alert(2)>', type="Text")},
            observed_at=datetime(2026, 12, 4, 1, 0, tzinfo=UTC),
            source=Source(adapter="gauges"),
        )
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/live")).text()
        assert XSS not in page and "<img src=x" not in page
        assert '<tr class="entity" data-entity-id="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
        assert '<td class="id">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in page
        assert "2026-12-04 10:00:00 JST" in page
        assert page.count('<tr class="entity"') == 4
        assert '<span class="unit" title="MTR">m</span>' in page  # UN/CEFACT code kept as the tooltip
        filtered = await (await viewer.get("/live", params={"filter": "W-1"})).text()
        assert re.findall(r'data-entity-id="([^"]+)"', filtered) == ["urn:ngsi-ld:WaterObserved:w-1"]
        doc = await (await viewer.get("/api/latest", params={"filter": "evil"})).json()
        assert [e["entity_id"] for e in doc["entities"]] == [XSS]  # JSON: the script builds cells with textContent
        assert doc["entities"][0]["observed"] == "2026-12-04 10:00:00 JST"
        assert doc["count"] == "1件のうち1〜1件目を表示"  # the gateway's total is after its filter


async def test_live_values_come_in_pages_of_500(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        await until(lambda: len(env.runtime.gateway.latest) == 3, "three entities")
        for n in range(600):
            env.runtime.gateway.latest[f"urn:ngsi-ld:Extra:e{n:03d}"] = Reading(
                entity_id=f"urn:ngsi-ld:Extra:e{n:03d}",
                entity_type="Extra",
                attributes={"n": Attribute(value=n, type="Number")},
                observed_at=datetime(2026, 12, 4, 1, 0, tzinfo=UTC),
                source=Source(adapter="extra"),
            )
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/live")).text()
        assert page.count('<tr class="entity"') == 500
        assert "603件のうち1〜500件目を表示" in page
        assert '<a id="latest-next" href="/live?filter=&amp;sort=entity&amp;offset=500">' in page
        page = await (await viewer.get("/live", params={"offset": "500"})).text()
        assert page.count('<tr class="entity"') == 103
        assert "latest-next" not in page and "latest-previous" in page
        newest = await (await viewer.get("/live", params={"sort": "newest"})).text()
        assert newest.count('<tr class="entity"') == 500 and "603件のうち1〜500件目を表示" in newest
        doc = await (await viewer.get("/api/latest", params={"filter": "extra", "offset": "500"})).json()
        assert (len(doc["entities"]), doc["matched"], doc["total"]) == (100, 600, 600)


async def test_an_active_river_alert_is_on_the_dashboard(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        env.runtime.gateway.latest["urn:ngsi-ld:Alert:w-1-1"] = Reading(
            entity_id="urn:ngsi-ld:Alert:w-1-1",
            entity_type="Alert",
            attributes={
                "alertSource": Attribute(value="urn:ngsi-ld:WaterObserved:w-1", type="Text"),
                "direction": Attribute(value="up", type="Text"),
                "thresholdName": Attribute(value="氾濫危険水位", type="Text"),
                "severity": Attribute(value="high", type="Text"),
                "waterLevel": Attribute(value=4.25, type="Number", unit="MTR"),
            },
            observed_at=datetime(2026, 12, 4, 1, 0, tzinfo=UTC),
            source=Source(adapter="gauges"),
        )
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/")).text()
        assert (
            '<li class="alert level-high"><span class="entity">urn:ngsi-ld:WaterObserved:w-1</span> '
            '<span class="name">氾濫危険水位</span> <span class="level">危険（高）</span> '
            '<span class="value">4.25 m</span> <span class="since">2026-12-04 10:00:00 JST</span></li>'
        ) in page

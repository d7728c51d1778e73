"""Every data page renders in Japanese and in English against a real gateway (strict catalogs: a missing key fails)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.accounts.store import Role
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web, until

TITLES = {
    "ja": {
        "/": "<h1>ダッシュボード</h1>",
        "/live": "<h1>現在値</h1>",
        "/buffer": "<h1>バッファ（送信不能データ）</h1>",
        "/config": "<h1>設定</h1>",
        "/config/versions": "<h1>適用した設定の履歴</h1>",
        "/devices": "<h1>機器</h1>",
        "/devices/profiles/eastron/sdm120": "<h1>eastron/sdm120</h1>",
        "/logs": "<h1>ログ</h1>",
    },
    "en": {
        "/": "<h1>Dashboard</h1>",
        "/live": "<h1>Live values</h1>",
        "/buffer": "<h1>Buffer (dead letters)</h1>",
        "/config": "<h1>Configuration</h1>",
        "/config/versions": "<h1>Applied versions</h1>",
        "/devices": "<h1>Devices</h1>",
        "/devices/profiles/eastron/sdm120": "<h1>eastron/sdm120</h1>",
        "/logs": "<h1>Logs</h1>",
    },
}


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_every_page_in_both_languages(lang: str, orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        await until(lambda: len(env.runtime.gateway.latest) == 3, "three entities")
        tech = await env.browser("taro", Role.TECHNICIAN)
        for path, title in TITLES[lang].items():
            response = await tech.get(path, headers={"Accept-Language": lang})
            page = await response.text()
            assert response.status == 200, (path, page[:500])
            assert f'<html lang="{lang}">' in page and title in page, path
        doc = await (await tech.get("/api/logs", headers={"Accept-Language": lang})).json()
        assert doc["reachable"] is True

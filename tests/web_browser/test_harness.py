"""The harness itself: Chromium reaches a TLS page served from the background loop, in the language asked."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from selenium import webdriver

from tests.web_browser.harness import LoopSite, MovableClock, UiLoop, element, page_text, self_signed


def test_chromium_reads_a_tls_page_from_the_loop_thread_with_japanese_accept_language(
    tmp_path: Path, ui_loop: UiLoop, driver: webdriver.Chrome
) -> None:
    clock = MovableClock()

    async def make_app() -> web.Application:
        async def page(request: web.Request) -> web.Response:
            lang = request.headers.get("Accept-Language", "")
            body = (
                f'<!doctype html><meta charset="utf-8"><p id="lang">{lang}</p><p id="now">{clock():.0f}</p><p>水位</p>'
            )
            return web.Response(text=body, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        return app

    site = LoopSite(ui_loop, self_signed(tmp_path))
    site.start(make_app)
    try:
        before = clock()
        clock.advance(15 * 60)
        driver.get(site.url("/"))
        assert element(driver, "#lang").text.startswith("ja")
        assert float(element(driver, "#now").text) >= before + 15 * 60 - 1
        assert "水位" in page_text(driver)
    finally:
        site.stop()

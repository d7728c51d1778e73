"""The station page in Chromium: a librarian follows the menu to the outreach station, sees the loans waiting while
the bus has no network, and sees them gone out once it is back. A real gateway with the scanner adapter reading a
recorded keyboard-wedge stream from a FIFO, the Orion double, headless Chromium through selenium."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.accounts.store import Role
from tests.adapters.scanner.test_evdev_stream import recording
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web
from tests.web.test_stations_page import JP, PATRON, config, item, scanner_family
from tests.web_browser.test_lockers import _login, chrome, run

pytestmark = pytest.mark.e2e
_fixtures = (chrome, scanner_family)


def _station_text(driver: webdriver.Chrome, base: str, via_menu: bool) -> str:
    if via_menu:
        driver.get(base + "/")
        driver.find_element(By.ID, "nav-stations").click()
    else:
        driver.refresh()
    return str(driver.find_element(By.ID, "station-bus1").text)


async def test_librarian_sees_the_outreach_backlog_go_out(
    chrome: webdriver.Chrome, scanner_family: None, orion_double: OrionDouble, tmp_path: Path
) -> None:
    fifo = tmp_path / "scanner-event-kbd"
    os.mkfifo(fifo)
    w = os.open(fifo, os.O_RDWR)
    orion_double.fail(503, until=orion_double.clock() + 8)  # no network for 8 s (the double's clock is real time)
    try:
        async with gateway_web(tmp_path, orion_double.url, text=config(tmp_path, orion_double.url, fifo)) as env:
            await env.browser("hanako", Role.LIBRARIAN)  # creates the account
            await env.web_server.start_server()
            base = f"http://localhost:{env.web_server.port}"
            os.write(w, recording(PATRON, JP, 0) + recording(item(1), JP, 1) + recording(item(2), JP, 2))
            await run(_login, chrome, base, "hanako")
            text = ""
            for _ in range(100):
                text = await run(_station_text, chrome, base, not text)
                if "未送信の貸出記録が2件あります" in text:
                    break
                await asyncio.sleep(0.1)
            assert "未送信の貸出記録が2件あります。回線が戻ると順に送信されます。" in text
            assert "貸出を記録しました" in text and "73101234" not in text
            for _ in range(300):
                text = await run(_station_text, chrome, base, False)
                if "すべてプラットフォームへ送信済みです" in text:
                    break
                await asyncio.sleep(0.1)
            assert "未送信の貸出記録はありません。すべてプラットフォームへ送信済みです。" in text
    finally:
        os.close(w)

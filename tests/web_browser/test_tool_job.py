"""A tool job's page in Chromium: its live refresh names the tool in the user's language, heading and tab title.

The page is rendered with the heading the gateway gave at that moment: the plain "tool run" for a job the
gateway did not know yet (the link the CLI prints, opened as the job starts) or while it did not answer. Its
polls of /api/tools/<job> then carried the job's tool, and live.js left the heading as it was. A real
gateway (in-process Runtime, the shipped Modbus tools), the web app over HTTP on loopback, headless Chromium.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway.accounts.store import Role
from gateway.control.client import ControlClient
from gateway.control.tools import load_tools
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web
from tests.web_browser.test_lockers import _login, chrome, run

pytestmark = pytest.mark.e2e
_fixtures = (chrome,)

PLAIN = "ツールの実行"
PROBE = "ツールの実行: ポートで応答するModbusユニットを探す"
APP = "edgegw 管理画面"


def _open(driver: webdriver.Chrome, url: str) -> tuple[str, str]:
    driver.get(url)
    return str(driver.find_element(By.TAG_NAME, "h1").text), str(driver.title)


def _heading_once_done(driver: webdriver.Chrome) -> tuple[str, str]:
    """(h1, the tab's title) once the page shows the job ended (failed: nothing answers on the port)."""
    failed = "失敗しました。最後の行を確認してください。"
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "tool-state").text == failed)
    return str(driver.find_element(By.TAG_NAME, "h1").text), str(driver.title)


async def test_the_live_refresh_names_the_jobs_tool(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=load_tools()) as env:
        await env.browser("taro", Role.TECHNICIAN)  # creates the account
        await env.web_server.start_server()
        base = f"http://localhost:{env.web_server.port}"
        await run(_login, chrome, base, "taro")
        # the page of the gateway's first Modbus job, opened before the job starts
        assert await run(_open, chrome, f"{base}/devices/tools/modbus-1") == (PLAIN, f"{PLAIN} — {APP}")
        async with ControlClient(env.server.path, timeout_s=10.0) as cli:
            # a probe of a port nobody listens on: it fails at once, the page's last poll brings it all
            started = await cli.call(
                "tool.start", family="modbus", tool="probe", args={"port": "tcp://127.0.0.1:1", "units": "1"}
            )
        assert started == {"job": "modbus-1"}
        assert await run(_heading_once_done, chrome) == (PROBE, f"{PROBE} — {APP}")
        assert "tcp://127.0.0.1:1" in await run(lambda: chrome.find_element(By.ID, "tool-progress").text)

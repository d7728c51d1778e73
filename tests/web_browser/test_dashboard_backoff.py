"""The dashboard in Chromium while the gateway or the web app does not answer: it asks less often, says discreetly
that it lost the connection and is retrying, and is back at its own pace at the first answer.

The dashboard once polled /api/status every 3 s whatever came back: every dashboard left open knocked at the same
rate on a web app whose gateway was down, and a web app that was down showed nothing at all. It now shares the
tool job page's backoff (live.js's one poller): 2 × its interval after a miss, doubling up to 10 s.

A real gateway (in-process Runtime and ControlServer), the web app over HTTP on loopback, headless Chromium. The
web app counts the polls it is asked (a middleware added before it starts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.accounts.store import Role
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import GatewayWeb, gateway_web
from tests.web_browser.test_lockers import _login, chrome, run
from tests.web_browser.test_tool_job import UNREACHABLE, _gateway_away, _shown, _visible
from tests.web_browser.test_tool_job_refused import PollCount

pytestmark = pytest.mark.e2e
_fixtures = (chrome,)

LOST = "管理画面のサーバーとの接続が切れました。再試行しています…"


@asynccontextmanager
async def dashboard(
    chrome: webdriver.Chrome, tmp_path: Path, orion_url: str
) -> AsyncIterator[tuple[GatewayWeb, PollCount]]:
    """A viewer's Chromium on the dashboard, drawn with the gateway's adapters: (env, the /api/status polls)."""
    async with gateway_web(tmp_path, orion_url) as env:
        polls = PollCount("/api/status")
        env.app.middlewares.append(polls.middleware)
        await env.browser("hanako", Role.VIEWER)  # creates the account
        await env.web_server.start_server()
        base = f"http://localhost:{env.web_server.port}"
        await run(_login, chrome, base, "hanako")
        await run(chrome.get, f"{base}/")
        assert await run(lambda: chrome.find_element(By.ID, "adapters").is_displayed())
        yield env, polls


async def test_the_dashboard_asks_less_often_while_the_gateway_is_away_and_catches_up(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with dashboard(chrome, tmp_path, orion_double.url) as (env, polls):
        back = await _gateway_away(env)
        assert await run(_shown, chrome, "unreachable", 5.0) == UNREACHABLE  # the first poll that missed
        missed = polls.count
        await back()  # the gateway answers again at once, but the page has already put its next poll off
        await asyncio.sleep(4.5)
        assert polls.count == missed  # every 3 s before: it would have asked again, and found the gateway
        assert await run(_visible, chrome, "unreachable")
        # asked again 6 s after the miss: the gateway answers, the note goes
        await run(lambda: _hidden_within(chrome, "unreachable", 3.0))
        answered = polls.count
        assert answered == missed + 1
        # and its own pace again: the next poll 3 s later, not 10 s
        await asyncio.sleep(3.6)
        assert polls.count == answered + 1


async def test_the_dashboard_says_it_lost_the_web_app_and_retries(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with dashboard(chrome, tmp_path, orion_double.url) as (env, _polls):
        await env.web_server.close()  # the web app stopped (restarting, or its box rebooting)
        assert await run(_shown, chrome, "unreachable", 5.0) == LOST
        assert "retrying" in await run(lambda: chrome.find_element(By.ID, "dashboard").get_attribute("class"))


def _hidden_within(driver: webdriver.Chrome, element_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while driver.find_element(By.ID, element_id).is_displayed():
        assert time.monotonic() < deadline, f"#{element_id} still shown after {timeout} s"
        time.sleep(0.05)

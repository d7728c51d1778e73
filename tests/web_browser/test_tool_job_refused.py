"""A tool job's page in Chromium whose poll is refused: the session ended (401), the account may no longer follow
the job (403), or the gateway turned the question down (400).

The page once treated these like a missed refresh: a 400 or 403 was asked again every second for as long as the
page stayed open, saying nothing; a 401 left for the login page, taking the job's output off the screen. It now
stops asking, keeps the output it shows, and says why in the user's language with what to do next.

A real gateway (in-process Runtime and ControlServer, a tool that waits for the test), the web app over HTTP on
loopback, headless Chromium. The web app counts the polls it is asked (a middleware added before it starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.accounts.store import Role
from gateway.web.auth import SESSIONS
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import GatewayWeb, gateway_web
from tests.web_browser.test_lockers import _login, chrome, run
from tests.web_browser.test_tool_job import _shown, _started, _visible, waiting_tool

pytestmark = pytest.mark.e2e
_fixtures = (chrome,)

SESSION_ENDED = "ログインの有効期限が切れたため、ジョブの表示を止めました。上の出力は残っています。\nログインし直してこのジョブを開く"
FORBIDDEN = (
    "このアカウントではツールのジョブを見られなくなったため、表示を止めました（役割が変わった可能性があります）。"
    "上の出力は残っています。技術者のアカウントでログインし直すか、管理者に確認してください。"
)
REFUSED = (
    "ゲートウェイがジョブ {job} の問い合わせを断ったため、表示を止めました。ジョブのリンクが壊れているか、"
    "ゲートウェイが管理画面より古い可能性があります。上の出力は残っています。\nゲートウェイの答え: {detail}"
)


class PollCount:
    """The polls under `prefix` the web app was asked, whatever it answered."""

    def __init__(self, prefix: str = "/api/tools/") -> None:
        self.prefix = prefix
        self.count = 0

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(self.prefix):
            self.count += 1
        return await handler(request)


@asynccontextmanager
async def job_page(
    chrome: webdriver.Chrome, tmp_path: Path, orion_url: str
) -> AsyncIterator[tuple[GatewayWeb, str, str, PollCount]]:
    """A technician's Chromium on a running job's page that shows the job's first line: (env, base, job, polls)."""
    gate = asyncio.Event()
    async with gateway_web(tmp_path, orion_url, tools=[waiting_tool(gate)]) as env:
        polls = PollCount()
        env.app.middlewares.append(polls.middleware)
        await env.browser("taro", Role.TECHNICIAN)  # creates the account
        await env.web_server.start_server()
        base = f"http://localhost:{env.web_server.port}"
        await run(_login, chrome, base, "taro")
        job = await _started(env.server.path, "demo", "wait", {})
        await run(chrome.get, f"{base}/devices/tools/{job}")
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"
        try:
            yield env, base, job, polls
        finally:
            gate.set()


async def _asks_no_more(polls: PollCount) -> None:
    """The page asks nothing more for 2.5 s (it polls every second while the job runs)."""
    before = polls.count
    await asyncio.sleep(2.5)
    assert polls.count == before


async def test_a_session_that_ended_stops_the_page_and_offers_the_login_back_to_the_job(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with job_page(chrome, tmp_path, orion_double.url) as (env, base, job, polls):
        env.clock.now += env.app[SESSIONS].idle_s + 1  # nobody at the keyboard for longer than the idle timeout
        assert await run(_shown, chrome, "tool-refused-session") == SESSION_ENDED
        assert await run(lambda: chrome.current_url) == f"{base}/devices/tools/{job}"  # still the job's page
        await _asks_no_more(polls)
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"  # what it had, kept
        assert not await run(_visible, chrome, "tool-state")  # neither running nor ended: not known any more
        link = await run(lambda: chrome.find_element(By.CSS_SELECTOR, "#tool-refused-session a").get_attribute("href"))
        assert link == f"{base}/login?next=/devices/tools/{job}"


async def test_an_account_no_longer_allowed_stops_the_page_and_says_why(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with job_page(chrome, tmp_path, orion_double.url) as (env, _base, _job, polls):
        env.services.accounts.set_role("taro", Role.VIEWER)  # an admin took the technician role away
        assert await run(_shown, chrome, "tool-refused-forbidden") == FORBIDDEN
        await _asks_no_more(polls)
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"
        assert not await run(_visible, chrome, "tool-state")


async def test_a_poll_the_gateway_refuses_stops_the_page_and_says_so(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with job_page(chrome, tmp_path, orion_double.url) as (env, _base, job, polls):
        # a gateway older than this UI: it does not know the op (the web app answers 400, as to a bad job link)
        del env.server.ops["tool.poll"]
        shown = await run(_shown, chrome, "tool-refused-bad")
        assert shown.startswith(REFUSED.format(job=job, detail='request.op: unknown op, got "tool.poll"')), shown
        await _asks_no_more(polls)
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"
        assert not await run(_visible, chrome, "tool-state")

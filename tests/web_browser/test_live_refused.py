"""The dashboard in Chromium whose poll is refused (403, 400): a password that must be changed now goes to the
password page; anything else stops the polling and says so in the user's language, keeping what is shown.

The dashboard, live values and logs pages once took a 400 or 403 for a missed refresh: the page showed the API's
raw English error ("password change required", "forbidden") as its "connection lost" note and asked again every
10 s for as long as it stayed open. A password that expired mid-session never led to /password; a role lowered
polled for ever.

A real gateway (in-process Runtime and ControlServer), the web app over HTTP on loopback, headless Chromium. The
web app counts the polls it is asked (a middleware added before it starts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.accounts.store import DAY_S, Role
from tests.support.orion_double import OrionDouble
from tests.web.conftest import PASSWORD
from tests.web.pages_harness import GatewayWeb, gateway_web
from tests.web_browser.test_lockers import _login, chrome, run
from tests.web_browser.test_tool_job import _shown, _visible
from tests.web_browser.test_tool_job_refused import PollCount

pytestmark = pytest.mark.e2e
_fixtures = (chrome,)

FORBIDDEN = (
    "このアカウントではこのページの情報を見られなくなったため、更新を止めました（役割が変わった可能性があります）。"
    "表示中の内容は更新されません。別のアカウントでログインし直すか、管理者に確認してください。"
)
REFUSED = "管理画面がこのページの更新の問い合わせを断ったため、更新を止めました。表示中の内容は更新されません。ページを開き直してください。"
EXPIRES_IN_S = 60.0  # the technician's password is this far from its maximum age at login


@asynccontextmanager
async def dashboard(
    chrome: webdriver.Chrome, tmp_path: Path, orion_url: str, name: str, role: Role, *, answer_400: bool = False
) -> AsyncIterator[tuple[GatewayWeb, str, PollCount]]:
    """`name`'s Chromium on the dashboard, drawn with the gateway's adapters: (env, base, the /api/status polls).

    The account's password is EXPIRES_IN_S from its maximum age (it ages for a technician only). `answer_400`:
    the web app answers /api/status with 400 once the page is drawn (as a proxy or a web app of another version
    might)."""
    async with gateway_web(tmp_path, orion_url) as env:
        polls = PollCount("/api/status")
        env.app.middlewares.append(polls.middleware)
        refuse = asyncio.Event()

        @web.middleware
        async def bad_request(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if refuse.is_set() and request.path == "/api/status":
                return web.json_response({"error": "bad request"}, status=400)
            return await handler(request)

        env.app.middlewares.append(bad_request)
        max_age_s = env.services.accounts.config.password_max_age_days * DAY_S
        env.services.accounts.add_user(name, role, PASSWORD, now=env.clock() - max_age_s + EXPIRES_IN_S)
        await env.web_server.start_server()
        base = f"http://localhost:{env.web_server.port}"
        await run(_login, chrome, base, name)
        await run(chrome.get, f"{base}/")
        assert await run(lambda: chrome.find_element(By.ID, "adapters").is_displayed())
        if answer_400:
            refuse.set()
        yield env, base, polls


async def _asks_no_more(polls: PollCount) -> None:
    """The page asks nothing more for 7 s (every 3 s while it is answered; at most 10 s apart while it retries)."""
    before = polls.count
    await asyncio.sleep(7.0)
    assert polls.count == before


async def _keeps_what_it_showed(chrome: webdriver.Chrome, base: str) -> None:
    assert await run(lambda: chrome.current_url) == f"{base}/"
    assert await run(lambda: chrome.find_element(By.ID, "adapters").is_displayed())
    assert await run(lambda: chrome.find_element(By.CSS_SELECTOR, "[data-live='version']").text) != ""


def _lands_on(driver: webdriver.Chrome, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while driver.current_url != url:
        if time.monotonic() > deadline:
            note = driver.find_element(By.ID, "unreachable").text
            raise AssertionError(f"still on {driver.current_url} after {timeout} s, saying {note!r}")
        time.sleep(0.05)


async def test_a_password_that_expires_while_the_dashboard_is_open_leads_to_the_password_page(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with dashboard(chrome, tmp_path, orion_double.url, "taro", Role.TECHNICIAN) as (env, base, _polls):
        env.clock.advance(2 * EXPIRES_IN_S)  # within the idle timeout: the session lives, the password is too old
        await run(_lands_on, chrome, f"{base}/password", 10.0)
        assert await run(lambda: chrome.find_element(By.NAME, "new").is_displayed())


async def test_a_role_lowered_stops_the_dashboard_and_says_why_in_the_users_words(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with dashboard(chrome, tmp_path, orion_double.url, "hanako", Role.VIEWER) as (env, base, polls):
        env.services.accounts.set_role("hanako", Role.LIBRARIAN)  # an admin moved her to the library's pages
        assert await run(_shown, chrome, "unreachable", 10.0) == FORBIDDEN
        await _asks_no_more(polls)
        await _keeps_what_it_showed(chrome, base)
        assert await run(_visible, chrome, "unreachable")


async def test_a_poll_refused_as_a_bad_request_stops_the_dashboard_and_says_so(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with dashboard(chrome, tmp_path, orion_double.url, "hanako", Role.VIEWER, answer_400=True) as (
        _env,
        base,
        polls,
    ):
        assert await run(_shown, chrome, "unreachable", 10.0) == REFUSED
        await _asks_no_more(polls)
        await _keeps_what_it_showed(chrome, base)

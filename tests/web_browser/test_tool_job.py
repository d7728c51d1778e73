"""A tool job's page in Chromium: its live refresh through a gateway that does not answer for a while, restarts,
or never knew the job.

The page is rendered with the heading the gateway gave at that moment: the plain "tool run" while it did not
answer. Its polls of /api/tools/<job> then carry the job's tool, lines and end, and live.js writes them in.
A gateway that does not answer (restarting for an applied config) once stopped the page's polls at the first
503: the page showed the job running for good, though it had ended. A job the gateway does not know (404: it
restarted and forgot its jobs, or the link was typed) was asked for every second for as long as the page
stayed open, and the page said nothing.

A real gateway (in-process Runtime and ControlServer, the shipped Modbus tools and one that waits for the
test), the web app over HTTP on loopback, headless Chromium. The gateway keeps its jobs in its process: a
spell without answers in which the job lives on is the control socket's path taken away and put back (a
client then finds nobody, as while a gateway restarts); a restart is its ControlServer stopped and a new one
started on the same path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway.accounts.store import Role
from gateway.control.client import ControlClient
from gateway.control.server import ControlServer
from gateway.control.tools import Progress, Tool, load_tools
from tests.control.running import eventually
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import GatewayWeb, gateway_web
from tests.web_browser.test_lockers import _login, chrome, run

pytestmark = pytest.mark.e2e
_fixtures = (chrome,)

PLAIN = "ツールの実行"
PROBE = "ツールの実行: ポートで応答するModbusユニットを探す"
APP = "edgegw 管理画面"
RUNNING = "実行中…"
DONE = "完了しました。"
FAILED = "失敗しました。最後の行を確認してください。"
UNREACHABLE = "ゲートウェイに接続できません。ゲートウェイ（edgegw）が動いているか確認してください。"
GONE = (
    "ゲートウェイはジョブ {job} を知りません。ゲートウェイの再起動（設定の適用など）より前のジョブや古いジョブは、"
    "出力とともに残りません。アドレスを入力した場合は、正しいか確認してください。\n機器のページのツールから実行し直す"
)
# the polls a page made while the gateway did not answer: Chromium's resource timing entries of its fetches (a
# response whose body the page never reads, a 404's, has none: those are counted by the gateway's requests)
POLLS = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/tools/')).length"


def waiting_tool(gate: asyncio.Event) -> Tool:
    """A tool whose job says it waits, waits until the test opens `gate`, then says so and succeeds."""

    async def wait(args: Mapping[str, Any], progress: Progress) -> bool:
        progress("waiting for the gate")
        await gate.wait()
        progress("the gate opened")
        return True

    return Tool(family="demo", tool="wait", title="Wait for the gate", params=(), run=wait)


def _open(driver: webdriver.Chrome, url: str) -> tuple[str, str]:
    driver.get(url)
    return str(driver.find_element(By.TAG_NAME, "h1").text), str(driver.title)


def _state_becomes(driver: webdriver.Chrome, state: str) -> None:
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "tool-state").text == state)


def _heading_once_done(driver: webdriver.Chrome) -> tuple[str, str]:
    """(h1, the tab's title) once the page shows the job ended (failed: nothing answers on the port)."""
    _state_becomes(driver, FAILED)
    return str(driver.find_element(By.TAG_NAME, "h1").text), str(driver.title)


def _shown(driver: webdriver.Chrome, element_id: str, timeout: float = 15.0) -> str:
    """The text of element `element_id` once it is shown (not hidden, not empty)."""
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, element_id).is_displayed() and d.find_element(By.ID, element_id).text
    )
    return str(driver.find_element(By.ID, element_id).text)


def _visible(driver: webdriver.Chrome, element_id: str) -> bool:
    return bool(driver.find_element(By.ID, element_id).is_displayed())


def _polls(driver: webdriver.Chrome) -> int:
    return int(driver.execute_script(POLLS))


async def _started(path: Path, family: str, tool: str, args: Mapping[str, Any]) -> str:
    """The job a CLI started over the control socket at `path`."""
    async with ControlClient(path, timeout_s=10.0) as cli:
        started = await cli.call("tool.start", family=family, tool=tool, args=dict(args))
    return str(started["job"])


async def _ended(path: Path, job: str) -> None:
    async with ControlClient(path, timeout_s=10.0) as cli:
        await eventually(partial(cli.call, "tool.poll", job=job, after=0), lambda p: p["done"], f"job {job} to end")


async def _gateway_away(env: GatewayWeb) -> Callable[[], Awaitable[None]]:
    """Takes the control socket's path away, and the web's open connections with it: nobody answers the web
    UI, the gateway and its jobs live on. Returns what puts the path back."""
    away = env.server.path.with_name("away.sock")
    env.server.path.rename(away)
    await env.services.control.close()  # a restarting gateway closes them too

    async def back() -> None:
        away.rename(env.server.path)

    return back


async def _login_page(chrome: webdriver.Chrome, env: GatewayWeb) -> str:
    await env.browser("taro", Role.TECHNICIAN)  # creates the account
    await env.web_server.start_server()
    base = f"http://localhost:{env.web_server.port}"
    await run(_login, chrome, base, "taro")
    return base


async def test_the_live_refresh_names_the_jobs_tool(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=load_tools()) as env:
        base = await _login_page(chrome, env)
        back = await _gateway_away(env)
        # a probe of a port nobody listens on, started by the CLI: it fails at once
        job = await _started(
            env.server.path.with_name("away.sock"), "modbus", "probe", {"port": "tcp://127.0.0.1:1", "units": "1"}
        )
        assert re.fullmatch(r"modbus-[0-9a-f]{6}-1", job)
        # its page, opened while the gateway does not answer the web UI: the plain heading
        assert await run(_open, chrome, f"{base}/devices/tools/{job}") == (PLAIN, f"{PLAIN} — {APP}")
        assert await run(_shown, chrome, "unreachable") == UNREACHABLE
        await back()
        assert await run(_heading_once_done, chrome) == (PROBE, f"{PROBE} — {APP}")
        assert "tcp://127.0.0.1:1" in await run(lambda: chrome.find_element(By.ID, "tool-progress").text)
        assert not await run(_visible, chrome, "unreachable")


async def test_a_job_that_ended_while_the_gateway_did_not_answer_is_shown_ended(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    gate = asyncio.Event()
    async with gateway_web(tmp_path, orion_double.url, tools=[waiting_tool(gate)]) as env:
        base = await _login_page(chrome, env)
        job = await _started(env.server.path, "demo", "wait", {})
        await run(chrome.get, f"{base}/devices/tools/{job}")
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"

        back = await _gateway_away(env)
        assert await run(_shown, chrome, "unreachable") == UNREACHABLE
        assert await run(_shown, chrome, "tool-state") == RUNNING  # the job may well run on
        # still asking, but less and less often: at most twice in the next 4.5 s, not every second
        before = await run(_polls, chrome)
        await asyncio.sleep(4.5)
        assert 1 <= await run(_polls, chrome) - before <= 2

        gate.set()  # the job ends while the page cannot see it
        await _ended(env.server.path.with_name("away.sock"), job)
        await back()
        await run(_state_becomes, chrome, DONE)
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate\nthe gate opened"
        assert not await run(_visible, chrome, "unreachable")


async def test_a_job_the_restarted_gateway_forgot_is_said_gone(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    gate = asyncio.Event()
    tools = [waiting_tool(gate)]
    async with gateway_web(tmp_path, orion_double.url, tools=tools) as env:
        base = await _login_page(chrome, env)
        job = await _started(env.server.path, "demo", "wait", {})
        await run(chrome.get, f"{base}/devices/tools/{job}")
        assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"

        await env.server.stop()  # the restart: the running job is cancelled with the gateway
        assert await run(_shown, chrome, "unreachable") == UNREACHABLE
        restarted = ControlServer(env.server.path, env.runtime, tools=tools)
        await restarted.start()
        try:
            assert await run(_shown, chrome, "tool-gone") == GONE.format(job=job)
            await _asks_no_more(restarted)
            link = await run(lambda: chrome.find_element(By.CSS_SELECTOR, "#tool-gone a").get_attribute("href"))
            assert link == f"{base}/devices"
            assert not await run(_visible, chrome, "unreachable")
            assert not await run(_visible, chrome, "tool-state")  # neither running nor ended: not known
            assert await run(_shown, chrome, "tool-progress") == "waiting for the gate"  # what it had, kept
        finally:
            await restarted.stop()


async def test_a_job_the_gateway_never_knew_is_said_gone(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=load_tools()) as env:
        base = await _login_page(chrome, env)
        assert await run(_open, chrome, f"{base}/devices/tools/modbus-7") == (PLAIN, f"{PLAIN} — {APP}")
        assert await run(_shown, chrome, "tool-gone") == GONE.format(job="modbus-7")
        await _asks_no_more(env.server)


async def _asks_no_more(gateway: ControlServer) -> None:
    """The page, having said its job is gone, asks the gateway nothing more for 3 s (3 of its polls)."""
    requests = gateway.requests
    await asyncio.sleep(3.0)
    assert gateway.requests == requests

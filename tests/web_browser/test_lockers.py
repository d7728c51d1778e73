"""The pickup flow in Chromium: the librarian assigns a compartment, the patron opens it at the kiosk.

A real gateway (in-process Runtime, locker adapter on a socat pty with the board stand-in, mail to a
real SMTP server on loopback, the Orion double), the admin web app and the kiosk app over HTTP on
loopback, and headless Chromium driven by selenium (its blocking calls in a thread, so the
gateway keeps running on this loop).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from gateway.accounts.store import Role
from gateway.control.client import ControlClient
from gateway.web.kiosk import build_kiosk_app
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_gateway_flow import _locker_registered, _text_of, gateway_text
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble
from tests.web.conftest import PASSWORD
from tests.web.pages_harness import gateway_web, until

pytestmark = pytest.mark.e2e
_registered = _locker_registered  # the same autouse fixture: the adapter by its class


@pytest.fixture
def chrome() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="egw-chrome-")
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.add_argument("--lang=ja")
    options.add_experimental_option("prefs", {"intl.accept_languages": "ja"})
    options.set_capability("acceptInsecureCerts", True)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run(fn: Any, *args: Any) -> Any:
    return asyncio.to_thread(fn, *args)


def _login(driver: webdriver.Chrome, base: str, name: str) -> None:
    driver.get(base + "/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    # until the answer is in: a page asked for before it would race the login (and find no session)
    WebDriverWait(driver, 10).until(lambda d: not d.current_url.endswith("/login"))


def _grid_row(driver: webdriver.Chrome, base: str, label: str) -> WebElement:
    """The compartment's row, reloading until the page has it: the router knows a compartment from its
    first reading (emitted), the page from the adapter's state once that reading is committed."""

    def loaded(d: webdriver.Chrome) -> list[WebElement]:
        d.get(base + "/lockers")
        return d.find_elements(By.ID, f"compartment-{label}")  # empty (falsy) until it is there

    return WebDriverWait(driver, 10, poll_frequency=0.2).until(loaded)[0]


def _assign(driver: webdriver.Chrome, base: str) -> str:
    row = _grid_row(driver, base, "A-02")
    row.find_element(By.NAME, "email").send_keys("patron@example.jp")
    row.find_element(By.NAME, "reference").send_keys("R-0099")
    row.find_element(By.CSS_SELECTOR, "form.assign button").click()
    flash = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "p.flash"))
    return str(flash.text)


def _pickup_state(driver: webdriver.Chrome, base: str, label: str) -> str | None:
    driver.get(base + "/lockers")
    return driver.find_element(By.ID, f"compartment-{label}").get_attribute("data-pickup")


def _kiosk(driver: webdriver.Chrome, base: str, label: str, code: str) -> str:
    driver.get(base + "/")
    driver.find_element(By.ID, "label").send_keys(label)
    driver.find_element(By.ID, "code").send_keys(code)
    driver.find_element(By.ID, "open").click()
    outcome = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "outcome"))
    return str(outcome.text)


async def test_librarian_assigns_and_the_patron_opens_at_the_kiosk(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    sim.boards[0].occupied[1] = True
    smtp = await SmtpServer().start()
    try:
        with pty_pair(tmp_path) as (gw_port, board_port):
            async with serve_pty(sim, board_port):
                text = gateway_text(tmp_path / "data", orion_double.url, gw_port, smtp.port)
                async with gateway_web(tmp_path, orion_double.url, text=text) as env:
                    await env.browser("hanako", Role.LIBRARIAN)  # creates the account
                    await env.web_server.start_server()
                    base = f"http://localhost:{env.web_server.port}"
                    await until(
                        lambda: (
                            env.runtime.gateway.router.owner("urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-02")
                            is not None
                        ),
                        "the compartments",
                    )
                    await run(_login, chrome, base, "hanako")
                    shown = await run(_assign, chrome, base)
                    assert "ロッカー A-02 を割り当て" in shown
                    await until(lambda: len(smtp.received) == 1, "the e-mail")
                    code = re.search(r"暗証番号　：(\d{6})", _text_of(smtp.received[0].data))
                    assert code is not None
                    assert await run(_pickup_state, chrome, base, "A-02") == "reserved"

                    control = ControlClient(env.server.path, timeout_s=10.0)
                    kiosk = TestServer(build_kiosk_app(control, secure_cookie=False))
                    await kiosk.start_server()
                    kbase = f"http://localhost:{kiosk.port}"
                    try:
                        wrong = "000000" if code.group(1) != "000000" else "111111"
                        assert "暗証番号が違います" in await run(_kiosk, chrome, kbase, "A-02", wrong)
                        assert sim.boards[0].locked[1] is True
                        opened = await run(_kiosk, chrome, kbase, "A-02", code.group(1))
                        assert "ロッカー A-02 の扉が開きました" in opened
                        assert sim.boards[0].unlocks == [2]
                        # a second compartment, locked after three wrong codes (max_wrong = 3)
                        sim.boards[0].occupied[0] = True
                        await until(
                            lambda: any(
                                e.get("occupied", {}).get("value") is True and e["compartmentLabel"]["value"] == "A-01"
                                for e in orion_double.written
                            ),
                            "A-01 occupied",
                        )
                        result = await env.services.control.call(
                            "command",
                            entity_id="urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-01",
                            name="assign",
                            value={"email": "other@example.jp", "reference": "R-1"},
                            actor="t",
                        )
                        assert result["ok"], result
                        outcomes = [await run(_kiosk, chrome, kbase, "A-01", "999999x"[:6]) for _ in range(3)]
                        assert "誤入力が続いた" in outcomes[-1]
                        assert "誤入力が続いた" in await run(_kiosk, chrome, kbase, "A-01", "123456")
                        assert sim.boards[0].unlocks == [2]
                    finally:
                        await kiosk.close()
                        await control.close()
                    sim.boards[0].occupied[1] = False
                    sim.boards[0].locked[1] = True
                    await until(
                        lambda: any(e.get("type") == "LockerPickup" for e in orion_double.written), "the pickup event"
                    )
                    assert "patron@example.jp" not in str(orion_double.written)
    finally:
        await smtp.stop()

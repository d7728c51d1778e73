"""A config edit sent just after the web UI restarted, in Chromium: not lost, sent again after the login.

The technician edits the configuration; the web process restarts (its sessions are gone); the check is pressed.
That once ended on the login page with the edit lost. Now the login page says the form expired and carries
the edit; after the login the page offers it again, and pressing it checks the text as typed, multi-line
and Japanese, through the hidden fields of two real forms. A real gateway (in-process Runtime), the web app
over HTTP on loopback restarted in place on the same port with the same form key, headless Chromium.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from gateway.accounts.store import Role
from gateway.web.app import build_app
from gateway.web.control_pool import ControlPool
from tests.support.orion_double import OrionDouble
from tests.web.conftest import PASSWORD
from tests.web.pages_harness import gateway_web
from tests.web_browser.test_lockers import _login, chrome, run

pytestmark = pytest.mark.e2e
_fixtures = (chrome,)

ADDED = "# 夜間の水位計: 2026年12月の点検で追加"
EXPIRED = "このフォームを開いている間に、管理画面が再起動したか、そのときのログインが終わった"


def _edit(driver: webdriver.Chrome, base: str) -> str:
    """The editor's text after a line typed at its end."""
    driver.get(base + "/config")
    area = driver.find_element(By.ID, "config-text")
    area.send_keys(Keys.CONTROL, Keys.END)
    area.send_keys("\n" + ADDED + "\n")
    return str(area.get_property("value"))


def _check_and_log_in(driver: webdriver.Chrome) -> tuple[str, str]:
    """Presses the check, then logs in on the page that comes: (the notice, the URL after the login)."""
    driver.find_element(By.ID, "config-check").click()
    notice = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "form-expired")).text
    driver.find_element(By.NAME, "name").send_keys("taro")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/form/resend"))
    return str(notice), str(driver.current_url)


def _send_again(driver: webdriver.Chrome) -> tuple[str, str]:
    """Presses "send again": (the editor's text, the check's verdict)."""
    driver.find_element(By.ID, "resend-submit").click()
    verdict = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "config-ok")).text
    return str(driver.find_element(By.ID, "config-text").get_property("value")), str(verdict)


async def test_a_config_edit_sent_after_a_restart_is_checked_after_the_login(
    chrome: webdriver.Chrome, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        await env.browser("taro", Role.TECHNICIAN)  # creates the account
        await env.web_server.start_server()
        port = env.web_server.port
        base = f"http://localhost:{port}"
        await run(_login, chrome, base, "taro")
        edited = await run(_edit, chrome, base)
        assert edited.endswith("\n" + ADDED + "\n")

        # the restart: the old process's sessions are gone; `edgegw web` reads the same key from csrf.key
        await env.web_server.close()
        services = replace(env.services, control=ControlPool(env.server.path, timeout_s=10.0))
        restarted = TestServer(build_app(services, strict_i18n=True), port=port)
        await restarted.start_server()
        try:
            notice, _ = await run(_check_and_log_in, chrome)
            assert notice.startswith(EXPIRED) and notice.endswith(
                "同じユーザーでログインすると、/config/check へ送信し直せます。"
            )
            text, verdict = await run(_send_again, chrome)
        finally:
            await restarted.close()
            await services.control.close()
        assert verdict == "問題はありません。適用できます。"
        assert text.rstrip("\n") == edited.rstrip("\n")  # as typed, the added line and all

"""The Wi-Fi inquiry page in real Chromium as wifi-auditor (and refused to a viewer); the export downloaded
and verified. Selenium + /usr/bin/chromedriver (tests/web_browser's harness is not on main yet)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.accounts.store import Role
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.export import verify_export
from tests.web.conftest import PASSWORD, WebEnv

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="chromium-driver not installed"),
]

MAC, USER = "aa:bb:cc:01:02:03", "hanako@example.jp"


@pytest.fixture
def chrome() -> Iterator[tuple[object, Path]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="chrome-"))
    downloads = Path(tempfile.mkdtemp(prefix="dl-"))
    opts = webdriver.ChromeOptions()
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
        opts.add_argument(arg)
    opts.accept_insecure_certs = True
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    try:
        yield driver, downloads
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)


def _session(driver: object, base: str, name: str, reference: str, downloads: Path) -> tuple[str, str, Path | None]:
    from selenium.webdriver.common.by import By

    d = driver  # selenium's WebDriver, typed loosely to keep the import inside the fixture
    d.get(base + "/login")  # type: ignore[attr-defined]
    d.find_element(By.NAME, "name").send_keys(name)  # type: ignore[attr-defined]
    d.find_element(By.NAME, "password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    d.find_element(By.ID, "login-submit").click()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while "/login" in d.current_url and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    d.get(base + "/wifi")  # type: ignore[attr-defined]
    first = d.page_source  # type: ignore[attr-defined]
    if 'id="wifi-search"' not in first:
        return first, "", None
    d.find_element(By.ID, "reference").send_keys(reference)  # type: ignore[attr-defined]
    d.find_element(By.ID, "mac").send_keys("AA-BB-CC-01-02-03")  # type: ignore[attr-defined]
    d.find_element(By.ID, "wifi-search-submit").click()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not d.find_elements(By.ID, "wifi-sessions") and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)  # the results page replaces the form page
    results = d.page_source  # type: ignore[attr-defined]
    d.find_element(By.ID, "wifi-export-submit").click()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = list(downloads.glob("*.zip"))
        if done:
            return first, results, done[0]
        time.sleep(0.1)
    return first, results, None


async def test_auditor_searches_and_exports_in_chromium_a_viewer_is_refused(
    web_env: WebEnv, chrome: tuple[object, Path], tmp_path: Path
) -> None:
    driver, downloads = chrome
    store = WifiLogStore(web_env.state_dir.parent)
    store.publish_public_key()  # as the gateway's Wi-Fi receivers do at their start: the UI only reads the key
    store.apply(
        [
            SessionEvent(
                nas="id:ap1",
                session_id="s1",
                kind=EventKind.START,
                time=datetime(2026, 1, 15, 10, tzinfo=UTC),
                client_mac=MAC,
                user_name=USER,
                framed_ip="10.0.0.5",
            )
        ]
    )
    store.close()
    web_env.add_user("viewer1", Role.VIEWER)
    web_env.add_user("auditor", Role.WIFI_AUDITOR)
    base = str(web_env.server.make_url("")).rstrip("/").replace("127.0.0.1", "localhost")
    first, _, _ = await asyncio.to_thread(_session, driver, base, "viewer1", "R-0", downloads)
    assert 'id="wifi-search"' not in first and "/logout" in first  # logged in, refused
    driver.delete_all_cookies()  # type: ignore[attr-defined]
    first, results, zip_path = await asyncio.to_thread(_session, driver, base, "auditor", "兵庫-77", downloads)
    assert USER in results and "10.0.0.5" in results
    assert zip_path is not None, "no export downloaded"
    z = zipfile.ZipFile(io.BytesIO(zip_path.read_bytes()))
    csv_name = next(n for n in z.namelist() if n.endswith(".csv"))
    (tmp_path / csv_name).write_bytes(z.read(csv_name))
    manifest = json.loads(z.read(csv_name + ".manifest.json"))
    key = load_pem_public_key(z.read("signing-public.pem"))
    assert verify_export(tmp_path / csv_name, manifest, key) == []  # type: ignore[arg-type]
    assert manifest["reference"] == "兵庫-77"
    assert [e.target for e in web_env.entries("wifi.search")] == ["兵庫-77"]
    assert [e.target for e in web_env.entries("wifi.export")] == ["兵庫-77"]

"""Drives Debian's Chromium with selenium against a web app served over TLS from a background thread.

Theory of operation: the tests are plain synchronous functions (selenium blocks), so the app under
test runs on an event loop of its own in a daemon thread (`UiLoop`); a test reaches into that loop
only through `UiLoop.call`, which runs a coroutine there and waits for its result. Time in the app is
a `MovableClock` — the wall clock plus an offset the test moves — so lockouts, idle timeouts and
password ages are tested without sleeping. Selenium never looks for a driver of its own (Selenium
Manager would download one): the driver path is always Debian's.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts"

T = TypeVar("T")

CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


class MovableClock:
    """Wall time plus an offset: `advance` moves the app's idea of now, real time keeps passing."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


class UiLoop:
    """An event loop in a daemon thread, for the app under test and the stores it uses."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="web-ui-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop; quit the browser first: its idle and speculative TLS connections end only then."""

        async def drain() -> None:
            # the connections the browser just closed: let their transports see the EOF and close
            await asyncio.sleep(0.3)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        self.call(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class LoopSite:
    """An aiohttp application served on 127.0.0.1:<free port> from a `UiLoop`, over TLS given a context."""

    def __init__(self, ui: UiLoop, ssl_context: ssl.SSLContext | None) -> None:
        self.ui = ui
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self, make_app: Callable[[], Awaitable[web.Application]]) -> str:
        async def start() -> int:
            app = await make_app()
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            address = self._runner.addresses[0]
            return int(address[1])

        self.port = self.ui.call(start())
        return self.url("")

    def url(self, path: str) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self._runner is not None:
            self.ui.call(self._runner.cleanup())
            self._runner = None


def chromium(profile_dir: Path, lang: str = "ja") -> webdriver.Chrome:
    """Debian's Chromium, headless, trusting the UI's self-signed certificate, asking for `lang` pages."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--lang={lang}")
    options.add_argument(f"--accept-lang={lang}")
    # headless Chromium takes Accept-Language from the profile's preference, not only the flags
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 900)
    driver.set_page_load_timeout(20)
    return driver


def forget_everything(driver: webdriver.Chrome) -> None:
    """A fresh start for the next test in the same browser: no cookies, no storage, no cache."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "*", "storageTypes": "all"})
    driver.get("about:blank")


def wait_for(predicate: Callable[[], T | None], what: str, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; selenium's lookups that fail count as not yet."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (NoSuchElementException, StaleElementReferenceException) as exc:
            last_error = str(exc.msg).split("\n")[0]  # without the driver's stack trace
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}" + (f" ({last_error})" if last_error else "")
            )
        time.sleep(interval)


def element(driver: webdriver.Chrome, css: str, timeout: float = 10.0) -> WebElement:
    """The element matching `css` once the page has it."""
    return wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, css), f"element {css!r} on {driver.current_url}", timeout
    )


def absent(driver: webdriver.Chrome, css: str) -> bool:
    return not driver.find_elements(By.CSS_SELECTOR, css)


def page_text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def alert_open(driver: webdriver.Chrome) -> bool:
    """Whether a JavaScript dialog (alert, confirm) is showing."""
    try:
        _ = driver.switch_to.alert  # the lookup itself raises when there is none
    except NoAlertPresentException:
        return False
    return True


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (the browser accepts any)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx

"""The kiosk app on its own: only its page, CSRF without a session, the per-address throttle, headers."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.control.client import ControlClient
from gateway.web.kiosk import COOKIE, build_kiosk_app, csrf_token, verify_token

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def kiosk() -> AsyncIterator[tuple[TestClient[Any, Any], Clock]]:
    clock = Clock()
    # no gateway behind this socket: every try that passes the kiosk's own checks ends "failed"
    control = ControlClient(Path(tempfile.mkdtemp(dir="/tmp")) / "none.sock", timeout_s=1.0)
    app = build_kiosk_app(control, clock=clock, attempts_per_minute=3, secure_cookie=False)
    async with TestClient(TestServer(app)) as client:
        yield client, clock
    await control.close()


async def _token(client: TestClient[Any, Any]) -> str:
    page = await client.get("/")
    match = CSRF_RE.search(await page.text())
    assert match
    return match.group(1)


async def test_only_the_kiosk_page_is_there(kiosk: tuple[TestClient[Any, Any], Clock]) -> None:
    client, _ = kiosk
    page = await client.get("/")
    assert page.status == 200
    assert "予約資料の受け取り" in await page.text()
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "edgegw_session" not in page.cookies and COOKIE in page.cookies
    for path in ("/login", "/lockers", "/live", "/api/latest", "/setup/x"):
        assert (await client.get(path)).status == 404, path
    assert (await client.get("/static/kiosk.css")).status == 200


async def test_csrf_without_a_session(kiosk: tuple[TestClient[Any, Any], Clock]) -> None:
    client, clock = kiosk
    token = await _token(client)
    missing = await client.post("/open", data={"label": "A-01", "code": "123456"})
    assert missing.status == 403 and "有効期限が切れました" in await missing.text()
    forged = await client.post("/open", data={"csrf_token": token + "0", "label": "A-01", "code": "123456"})
    assert forged.status == 403
    clock.now += 3601
    expired = await client.post("/open", data={"csrf_token": token, "label": "A-01", "code": "123456"})
    assert expired.status == 403
    key = b"k" * 32
    assert verify_token(key, csrf_token(key, 100.0), 100.0 + 3600)
    assert not verify_token(key, csrf_token(key, 100.0), 100.0 + 3601)
    assert not verify_token(b"j" * 32, csrf_token(key, 100.0), 100.0)


def _browser() -> aiohttp.ClientSession:
    """Another browser with a cookie jar of its own (accepting the test server's IP-address cookies)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_a_valid_token_without_the_kiosk_cookie_is_refused(kiosk: tuple[TestClient[Any, Any], Clock]) -> None:
    """The token verifies (signed, fresh); only its comparison with the absent cookie refuses it."""
    client, _ = kiosk
    form = {"csrf_token": await _token(client), "label": "A-01", "code": "123456"}
    async with _browser() as cookieless, cookieless.post(client.make_url("/open"), data=form) as missing:
        assert missing.status == 403 and "有効期限が切れました" in await missing.text()
    # the same token with its own client's cookie passes the kiosk's checks (and fails only on the absent gateway)
    assert (await client.post("/open", data=form)).status == 503


async def test_a_valid_token_with_another_clients_cookie_is_refused(
    kiosk: tuple[TestClient[Any, Any], Clock],
) -> None:
    """Both the token and the other browser's cookie verify; only their comparison refuses the pair."""
    client, _ = kiosk
    token = await _token(client)
    form = {"csrf_token": token, "label": "A-01", "code": "123456"}
    async with _browser() as other:
        async with other.get(client.make_url("/")) as page:
            match = CSRF_RE.search(await page.text())
        assert match and match.group(1) != token
        assert [c.value for c in other.cookie_jar if c.key == COOKIE] == [match.group(1)]
        async with other.post(client.make_url("/open"), data=form) as crossed:
            assert crossed.status == 403 and "有効期限が切れました" in await crossed.text()
    assert (await client.post("/open", data=form)).status == 503


async def test_tries_are_throttled_per_address(kiosk: tuple[TestClient[Any, Any], Clock]) -> None:
    client, clock = kiosk
    statuses = []
    for _ in range(4):
        token = await _token(client)
        response = await client.post("/open", data={"csrf_token": token, "label": "A-01", "code": "123456"})
        statuses.append(response.status)
    assert statuses == [503, 503, 503, 429]  # no gateway behind it, then the throttle
    assert "1分ほど待って" in await response.text()
    clock.now += 61
    token = await _token(client)
    assert (await client.post("/open", data={"csrf_token": token, "label": "", "code": ""})).status == 400

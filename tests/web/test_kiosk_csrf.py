"""The kiosk's double-submit token refuses anything it did not issue with its "expired" screen, never a 500.

The kiosk is public and unauthenticated: whatever a passer-by types into the form or the cookie must end
on the existing 403 outcome (a non-ASCII character once made `hmac.compare_digest` raise TypeError).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from gateway.control.client import ControlClient
from gateway.web.kiosk import COOKIE, build_kiosk_app, csrf_token, verify_token

KEY = b"k" * 32
NOW = 1_800_000_000.0
EXPIRED = "画面の有効期限が切れました。もう一度入力してください。"


@given(st.text(max_size=80))
def test_verify_token_refuses_any_text_it_did_not_issue(token: str) -> None:
    assert verify_token(KEY, token, NOW) is False


# the shape of a token (nonce.issued.mac) with anything in its parts, so that the MAC comparison is reached
@given(st.text(alphabet=st.characters(exclude_characters=".")), st.integers(0, 2**40), st.text(min_size=1))
def test_verify_token_refuses_a_token_shaped_forgery(nonce: str, issued: int, mac: str) -> None:
    assert verify_token(KEY, f"{nonce}.{issued}.{mac}", NOW) is False


@given(st.text(min_size=1, max_size=20))
def test_verify_token_refuses_an_issued_token_with_its_mac_altered(tail: str) -> None:
    token = csrf_token(KEY, NOW)
    assert verify_token(KEY, token, NOW) is True
    assert verify_token(KEY, token + tail, NOW) is False


async def test_non_ascii_token_gets_the_expired_screen(tmp_path: Path) -> None:
    app = build_kiosk_app(ControlClient(tmp_path / "none.sock"), secure_cookie=False)
    async with TestClient(TestServer(app)) as client:
        issued = (await client.get("/")).cookies[COOKIE].value
        for given_token, cookie in (("é", issued), ("x.1.é", "x.1.é"), (issued[:-1] + "é", issued)):
            client.session.cookie_jar.clear()
            response = await client.post(
                "/open",
                data={"csrf_token": given_token, "label": "A-01", "code": "1234"},
                headers={"Cookie": f"{COOKIE}={cookie}"},
            )
            assert response.status == 403, given_token
            assert EXPIRED in await response.text()

"""The config forms' request size against the page's own limit (MAX_TEXT characters), on a real aiohttp server.

A form sends the textarea URL-encoded: a Japanese character is 3 UTF-8 bytes, 9 bytes as %XX; one outside the
BMP (𠮷, emoji) 12. The app-wide 4 MiB request limit refused a 600,000-character Japanese config with aiohttp's
bare 413 ("Maximum request body size … exceeded") before the page could check it or say its own message.
"""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import FormData

from gateway.accounts.store import Role
from gateway.control.protocol import MAX_TEXT
from gateway.web.app import MAX_REQUEST_BYTES
from gateway.web.pages.config import UPLOAD_BYTES
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token, new_client
from tests.web.pages_harness import gateway_web
from tests.web.test_pages_config_limits import BASE, Client, editor_text, flashes, found, post

TOO_LARGE_JA = f"設定の内容が長すぎます（上限 {MAX_TEXT}文字）。検証も適用もしていません。"
TOO_LARGE_EN = f"The configuration text is too long (limit {MAX_TEXT} characters). Nothing was checked or applied."


def padded(running: str, line: str, size: int) -> str:
    """`running` and comment lines `# <line>` until it is `size` characters long (the last line cut to fit)."""
    pad = f"# {line}\n"
    text = running + pad * ((size - len(running)) // len(pad))
    return text + "#" * (size - len(text))


async def test_a_600000_character_japanese_config_is_checked_not_refused_by_the_request_limit(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        text = padded(env.config_path.read_text(), "水位観測所の設定メモ" * 10, 600_000)
        assert len(urlencode({"text": text})) > MAX_REQUEST_BYTES
        status, page = await post(tech, "/config/check", {"text": text.replace("\n", "\r\n")})
        assert status == 200, page[:300]
        assert flashes(page) == []
        assert editor_text(page) == text
        assert found(page) == []


async def test_a_text_outside_the_bmp_within_the_limit_is_applied(orion_double: OrionDouble, tmp_path: Path) -> None:
    """12 bytes a character as a browser sends it: a limit sized for 9 (Japanese in the BMP) still refused this."""
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        running = env.config_path.read_text()
        # about 4.0 MB of UTF-8, 12 MB as the form sends it
        text = padded(running, "𠮷" * 97, 1_000_000)
        assert len(text) <= MAX_TEXT
        assert len(urlencode({"text": text.replace("\n", "\r\n")})) > 9 * MAX_TEXT + 64 * 1024
        base = BASE.search(await (await tech.get("/config")).text())
        assert base
        status, page = await post(tech, "/config/apply", {"text": text.replace("\n", "\r\n"), "base": base.group(1)})
        assert status == 303, flashes(page) or page[:300]
        assert env.config_path.read_text() == text


async def test_a_form_over_the_request_limit_gets_the_pages_message_not_a_bare_413(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        running = env.config_path.read_text()
        base = BASE.search(await (await tech.get("/config")).text())
        assert base
        text = padded(running, "𠮷" * 97, 1_200_000)
        for path in ("/config/check", "/config/apply"):
            status, page = await post(tech, path, {"text": text, "base": base.group(1)})
            assert status == 413
            assert flashes(page) == [("error", TOO_LARGE_JA)]
            assert editor_text(page) == running
        assert env.config_path.read_text() == running
        assert env.services.audit.entries(action="config.apply") == []


async def test_a_chunked_form_over_the_limit_gets_the_pages_message(orion_double: OrionDouble, tmp_path: Path) -> None:
    """Without a Content-Length (a script, not a browser): aiohttp stops reading at the limit, the page answers."""
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("john", Role.TECHNICIAN)
        token = await csrf_token(tech, "/config")

        async def body() -> AsyncIterator[bytes]:
            chunk = b"%F0%A0%AE%B7" * 16384  # 𠮷, 192 KiB a chunk
            yield f"csrf_token={token}&text=".encode()
            for _ in range(200):  # 37.5 MiB offered
                yield chunk

        response = await tech.post(
            "/config/check",
            data=body(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "en"},
        )
        assert response.status == 413
        assert flashes(await response.text()) == [("error", TOO_LARGE_EN)]


async def test_a_declared_length_over_the_limit_is_answered_before_any_body_is_sent(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        cookies = tech.session.cookie_jar.filter_cookies(tech.make_url("/config"))
        cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
        reader, writer = await asyncio.open_connection(env.web_server.host, env.web_server.port)
        try:
            writer.write(
                (
                    "POST /config/check HTTP/1.1\r\n"
                    f"Host: {env.web_server.host}\r\n"
                    f"Cookie: {cookie}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    "Content-Length: 200000000\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
            )
            page = (await asyncio.wait_for(reader.readexactly(length), 10)).decode()
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 413 ")
        assert flashes(page) == [("error", TOO_LARGE_JA)]


async def test_an_upload_over_the_request_limit_gets_the_pages_message(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        # one character too many (read and counted), and a file larger than any MAX_TEXT characters can be
        # (refused as the request comes in, unread): both say the limit in characters, as the editor does
        expected = {
            MAX_TEXT
            + 1: f"ファイルの内容が長すぎます（{MAX_TEXT + 1}文字、上限 {MAX_TEXT}文字）。エディタには読み込んでいません。",
            UPLOAD_BYTES + 1: f"ファイルの内容が長すぎます（上限 {MAX_TEXT}文字）。エディタには読み込んでいません。",
        }
        for size, message in expected.items():
            form = FormData()
            form.add_field("csrf_token", await csrf_token(tech, "/config"))
            form.add_field("config_file", io.BytesIO(b"#" * size), filename="gw.toml", content_type="text/plain")
            response = await tech.post("/config/upload", data=form)
            assert response.status == 413, size
            assert flashes(await response.text()) == [("error", message)]
        # aiohttp spooled the first file to disk: one left open warns when collected, here and not in a later test
        gc.collect()


async def _post_bytes(client: Client, size: int) -> int:
    body = b"csrf_token=x&text=" + b"%E6%B0%B4" * (size // 9)
    response = await client.post(
        "/config/check", data=io.BytesIO(body), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return response.status


async def test_the_larger_limit_is_only_for_those_who_may_use_the_form(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    """Memory stays bounded: a viewer's or a stranger's post is read no further than the app's limit."""
    async with gateway_web(tmp_path, orion_double.url) as env:
        viewer = await env.browser("mika", Role.VIEWER)
        stranger = await new_client(env.web_server)
        env.clients.append(stranger)
        for client in (viewer, stranger):
            assert await _post_bytes(client, MAX_REQUEST_BYTES + 1024) == 413

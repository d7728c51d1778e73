"""A config upload is limited in characters, as the editor and the control protocol are (MAX_TEXT), not in bytes.

Regression of a review: a config with Japanese comments, 450,336 characters (1,200,336 bytes), could be pasted
and checked, but its upload was refused as too large (413).
"""

from __future__ import annotations

import gc
import io
from pathlib import Path

from aiohttp import FormData

from gateway.accounts.store import Role
from gateway.control.protocol import MAX_TEXT
from gateway.web.pages.config import UPLOAD_BYTES
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import Client, gateway_web
from tests.web.test_pages_config_limits import editor_text, flashes

MOST_BYTES = 4 * MAX_TEXT + 3  # MAX_TEXT characters of four UTF-8 bytes each, and a byte order mark


async def _upload(tech: Client, data: bytes) -> tuple[int, str]:
    form = FormData()
    form.add_field("csrf_token", await csrf_token(tech, "/config"))
    form.add_field("config_file", io.BytesIO(data), filename="gateway.toml", content_type="application/octet-stream")
    response = await tech.post("/config/upload", data=form)
    return response.status, await response.text()


def _padded(running: str, line: str, size: int) -> str:
    """`running` and comment lines `# <line>` until it is `size` characters long (the last line cut to fit)."""
    pad = f"# {line}\n"
    text = running + pad * ((size - len(running)) // len(pad))
    return text + "#" * (size - len(text))


async def test_a_japanese_commented_config_that_can_be_pasted_can_be_uploaded(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        running = env.config_path.read_text()
        big = running + "# 水位計の設置場所についてのメモ\n" * 25000
        assert (len(big), len(big.encode())) == (len(running) + 450000, len(running.encode()) + 1200000)
        status, page = await _upload(tech, big.encode())
        assert status == 200
        assert editor_text(page) == big
        assert flashes(page) == [("success", "ファイルをエディタに読み込みました。検証してから適用してください。")]
        gc.collect()  # aiohttp spooled the file to disk: one left open warns when collected, here


async def test_max_text_characters_are_taken_however_many_bytes_they_are(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        # four bytes each, outside the BMP, and a byte order mark: the most bytes MAX_TEXT characters can be
        status, page = await _upload(tech, b"\xef\xbb\xbf" + ("𠮷" * MAX_TEXT).encode())
        assert status == 200
        assert editor_text(page) == "𠮷" * MAX_TEXT
        # CRLF line ends are counted as the file will have them, one character each
        text = _padded(env.config_path.read_text(), "x" * 60, MAX_TEXT)
        status, page = await _upload(tech, text.replace("\n", "\r\n").encode())
        assert status == 200
        assert editor_text(page) == text
        gc.collect()


async def test_one_character_over_is_refused_saying_how_many(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        running = env.config_path.read_text()
        text = _padded(running, "水位計のメモ" * 10, MAX_TEXT + 1)
        status, page = await _upload(tech, text.encode())
        assert status == 413
        assert flashes(page) == [
            (
                "error",
                f"ファイルの内容が長すぎます（{MAX_TEXT + 1}文字、上限 {MAX_TEXT}文字）。エディタには読み込んでいません。",
            )
        ]
        assert editor_text(page) == running
        # more bytes than MAX_TEXT characters can take, however they decode: refused undecoded, or unread when
        # the request itself is over the form's limit
        for size in (MOST_BYTES + 1, UPLOAD_BYTES + 1):
            status, page = await _upload(tech, b"#" * size)
            assert status == 413, size
            assert flashes(page) == [
                ("error", f"ファイルの内容が長すぎます（上限 {MAX_TEXT}文字）。エディタには読み込んでいません。")
            ]
        gc.collect()

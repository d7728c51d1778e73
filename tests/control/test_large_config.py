"""Every config text the config page takes (MAX_TEXT characters, whatever they are) crosses the control socket.

The page counts characters; the socket counts bytes of a JSON line. A character outside the BMP is
4 bytes of UTF-8 and a control character 6 (`\\u0001`), so a text within the page's limit once came
back `too_large` (the page's 502) instead of checked or applied.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.accounts.store import Role
from gateway.control import protocol
from gateway.control.protocol import MAX_TEXT, encode_request
from tests.control.running import running_gateway, socket_dir
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web
from tests.web.test_pages_config_limits import editor_text, flashes, found, post

OUTSIDE_BMP = "\U00020bb7"  # 𠮷, in Japanese names: 4 bytes of UTF-8
OLD_MAX_LINE = 4 * 1024 * 1024
COMMENT = OUTSIDE_BMP * 200  # the most the page passes on


def test_every_character_fits_the_bytes_the_line_allows_for_it() -> None:
    # the encoder's worst case measured, not assumed: orjson writes UTF-8 as is and escapes C0 controls
    widest = max(len(orjson.dumps(chr(c))) - 2 for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert widest == protocol.MAX_BYTES_PER_CHAR
    worst = encode_request(2**53, "config.apply", {"text": "\x00" * MAX_TEXT, "actor": "x" * 64, "comment": COMMENT})
    assert len(worst) - 1 <= protocol.MAX_LINE < 8 * MAX_TEXT  # fits, and is still bounded


async def test_a_text_of_max_text_characters_outside_the_bmp_gets_the_checks_own_error(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # a wrong file pasted into the editor: the technician must read why it is no config, not a 502
    text = OUTSIDE_BMP * MAX_TEXT
    assert len(encode_request(1, "config.check", {"text": text})) > OLD_MAX_LINE
    async with running_gateway(tmp_path, orion_double.url, rate=1.0) as gw:
        result = await gw.client.call("config.check", text=text)
        assert gw.server.counters()["bad_requests"] == {}
    assert result == {"ok": False, "errors": ["not valid TOML: Invalid statement (at line 1, column 1)"]}


async def test_a_text_of_max_text_control_characters_gets_the_checks_own_error(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # 6 bytes a character on the line, the most any character takes
    text = '[gateway]\nid = "g"\n# ' + "\x01" * (MAX_TEXT - 21)
    assert len(text) == MAX_TEXT
    async with running_gateway(tmp_path, orion_double.url, rate=1.0) as gw:
        result = await gw.client.call("config.check", text=text)
    assert result == {"ok": False, "errors": ["not valid TOML: Found invalid character '\\x01' (at line 3, column 3)"]}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # a short data_dir keeps the config's ASCII few, so its 4-byte characters fill the line
    directory = socket_dir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_config_of_max_text_characters_is_applied_and_read_back_whole(
    orion_double: OrionDouble, tmp_path: Path, short_dir: Path
) -> None:
    base = (
        f'[gateway]\nid = "g"\ndata_dir = "{short_dir}"\n[[adapters]]\nname = "a"\ntype = "simulated"\n'
        f'[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "{orion_double.url}"\n'
    )
    text = base + "# " + OUTSIDE_BMP * (MAX_TEXT - len(base) - 3) + "\n"
    assert len(text) == MAX_TEXT
    assert len(encode_request(1, "config.apply", {"text": text, "actor": "tanaka", "comment": COMMENT})) > OLD_MAX_LINE
    async with running_gateway(tmp_path, orion_double.url, rate=1.0, text=base) as gw:
        applied = await gw.client.call("config.apply", text=text, actor="tanaka", comment=COMMENT)
        got = await gw.client.call("config.get")
        version = await gw.client.call("config.version", version=2)
        assert gw.config_path.read_text(encoding="utf-8") == text
    assert applied == {"version": 2, "reloaded": True}
    assert (got["text"], got["version"]) == (text, 2)
    assert (version["text"], version["comment"]) == (text, COMMENT)


async def test_an_op_holds_the_decoded_text_not_the_line_it_came_on(orion_double: OrionDouble, tmp_path: Path) -> None:
    # 64 connections each in a config op at once: each keeping its 6 MiB line beside its text was
    # half the gateway's memory at the cap for nothing
    seen: list[tuple[int, int]] = []

    async def measuring(args: dict[str, Any]) -> dict[str, Any]:
        gc.collect()
        seen.append((len(args["text"]), tracemalloc.get_traced_memory()[0]))
        return {"ok": False, "errors": []}

    text = "\x01" * MAX_TEXT  # 6 MiB on the line, 1 MiB as a str
    request = encode_request(1, "config.check", {"text": text})
    async with running_gateway(tmp_path, orion_double.url, rate=1.0) as gw:
        gw.server.ops["config.check"] = measuring
        reader, writer = await asyncio.open_unix_connection(str(gw.socket))
        tracemalloc.start()
        try:
            writer.write(request)
            await writer.drain()
            reply = orjson.loads(await asyncio.wait_for(reader.readline(), 10))
        finally:
            tracemalloc.stop()
            writer.close()
            await writer.wait_closed()
    assert reply["ok"] is True
    [(length, held)] = seen
    assert length == MAX_TEXT
    assert MAX_TEXT <= held < 2 * MAX_TEXT, f"{held} bytes held during the op"


async def test_the_config_page_checks_a_text_of_max_text_characters_outside_the_bmp(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # what the technician saw: the page's 502 "request: longer than 4194304 bytes" for a text it took
    text = OUTSIDE_BMP * MAX_TEXT
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        status, page = await post(tech, "/config/check", {"text": text})
    assert status == 200, flashes(page)
    assert flashes(page) == []
    assert found(page) == [("", 1, "not valid TOML: Invalid statement (at line 1, column 1)")]
    assert editor_text(page) == text

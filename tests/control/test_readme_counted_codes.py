"""The README names the error codes that `control.bad_requests` counts, and they are the ones counted.

It said "the first five" of its list, which took in `not_found` (never counted) and left out `internal`
(counted) (review s20).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson

from tests.control.running import running_gateway
from tests.support.orion_double import OrionDouble

README = Path(__file__).resolve().parents[2] / "gateway" / "control" / "README.md"


def _counted_in_readme() -> set[str]:
    """The codes the sentence "… are counted" names before those words."""
    text = " ".join(README.read_text().split())
    [sentence] = [s for s in re.split(r"(?<=[.;])\s", text) if "are counted" in s and "bad_requests" in s]
    return set(re.findall(r"`([a-z_]+)`", sentence.split("are counted")[0]))


async def test_the_codes_the_readme_says_are_counted_are_those_counted(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url, rate=1.0) as gw:
        gw.server.max_line = 1024  # the real limit is MAX_LINE (6 MiB); the same code path at a test's size
        requests = [
            b"not json",  # malformed
            b'{"id": 1, "op": "config.check", "args": {"text": "' + b"x" * 2000 + b'"}}',  # too_large
            b'{"id": 2, "op": "frobnicate"}',  # unknown_op
            b'{"id": 3, "op": "latest", "args": {"limit": "all"}}',  # bad_args
            b'{"id": 4, "op": "tool.poll", "args": {"job": "nope"}}',  # not_found
            b'{"id": 5, "op": "retry_dead_letters", "args": {"uplink": "orino", "ids": [1]}}',  # buffer_error
        ]
        reader, writer = await asyncio.open_unix_connection(str(gw.socket), limit=2**20)
        writer.write(b"".join(r + b"\n" for r in requests))
        await writer.drain()
        codes = [orjson.loads(await reader.readline())["error"]["code"] for _ in requests]
        writer.close()
        await writer.wait_closed()
        counted = set(gw.server.counters()["bad_requests"])
    assert codes == ["malformed", "too_large", "unknown_op", "bad_args", "not_found", "buffer_error"]
    # `internal` (an op's own failure) is not provoked here; the README must name it all the same
    assert _counted_in_readme() == counted | {"internal"}

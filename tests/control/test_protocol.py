"""The wire format: framing (property-tested), and each bad request answered with its exact error and counted."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.control.client import ControlClient
from gateway.control.protocol import ControlError, LineFramer, TooLong, decode_request
from tests.control.running import running_gateway
from tests.support.orion_double import OrionDouble

LIMIT = 16


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20),
)
def test_framing_any_chunking_gives_the_same_lines_and_one_too_long_per_long_line(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    framer = LineFramer(LIMIT)
    out: list[bytes | TooLong] = []
    for lo, hi in itertools.pairwise(bounds):
        out.extend(framer.feed(stream[lo:hi]))
    expected = [line if len(line) <= LIMIT else "long" for line in lines]
    assert [item if isinstance(item, bytes) else "long" for item in out] == expected


def test_a_line_longer_than_the_limit_is_skipped_up_to_its_newline() -> None:
    framer = LineFramer(4)
    assert framer.feed(b"abcdef") == [TooLong(6)]
    assert framer.feed(b"ghi") == []
    assert framer.feed(b"jk\nok\n") == [b"ok"]


CASES = {
    b"{nope": "request: not valid JSON, got '{nope'; unexpected character, expected a string key at line 1 column 2",
    b"[1, 2]": "request: must be a JSON object, got list",
    b'{"id": 1}': "request.op: must be a non-empty string, got 'null'",
    b'{"id": 1, "op": "status", "args": [1]}': "request.args: must be a JSON object, got list",
}


@pytest.mark.parametrize(("line", "message"), CASES.items())
def test_decode_request_says_what_is_wrong(line: bytes, message: str) -> None:
    with pytest.raises(ControlError) as refused:
        decode_request(line)
    assert (refused.value.code, refused.value.message) == ("malformed", message)


async def _exchange(path: Path, data: bytes, replies: int) -> list[dict[str, object]]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=2**20)
    writer.write(data)
    await writer.drain()
    out = [orjson.loads(await reader.readline()) for _ in range(replies)]
    writer.close()
    await writer.wait_closed()
    return out


async def test_bad_requests_get_their_error_are_counted_and_the_connection_keeps_working(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url, rate=1.0) as gw:
        gw.server.max_line = 1024  # the real limit is MAX_LINE (6 MiB); the same code path at a test's size
        oversized = b'{"id": 9, "op": "config.check", "args": {"text": "' + b"x" * 2000 + b'"}}\n'
        data = (
            b"not json\n"
            + oversized
            + b'{"id": 3, "op": "frobnicate"}\n'
            + b'{"id": 4, "op": "latest", "args": {"limit": "all"}}\n'
            + b'{"id": 5, "op": "tools"}\n'
        )
        replies = await _exchange(gw.socket, data, 5)
        assert replies[0] == {
            "id": None,
            "ok": False,
            "error": {
                "code": "malformed",
                "message": "request: not valid JSON, got 'not json'; invalid literal, expected 'null' at line 1 column 1",
                "errors": [],
            },
        }
        assert replies[1]["error"] == {
            "code": "too_large",
            "message": f"request: longer than 1024 bytes, got {len(oversized) - 1} or more",
            "errors": [],
        }
        assert replies[2] == {
            "id": 3,
            "ok": False,
            "error": {
                "code": "unknown_op",
                "message": 'request.op: unknown op, got "frobnicate"; ops: status, latest, dead_letters, '
                "retry_dead_letters, discard_dead_letters, config.get, config.check, config.apply, "
                "config.versions, config.version, config.rollback, reload, command, logs, tools, tool.start, "
                "tool.poll, mail.status, mail.failures, fleet.config.offer, fleet.alarms, fleet.safe_mode.clear, fleet.probe",
                "errors": [],
            },
        }
        assert replies[3]["error"] == {
            "code": "bad_args",
            "message": "args.limit: must be an integer, got str",
            "errors": [],
        }
        assert replies[4] == {"id": 5, "ok": True, "result": []}
        status = await gw.client.call("status")
        assert status["control"]["bad_requests"] == {"bad_args": 1, "malformed": 1, "too_large": 1, "unknown_op": 1}
        assert status["gateway"] == "gw-control"


async def test_an_argument_json_cannot_carry_is_named_before_anything_is_sent(tmp_path: Path) -> None:
    """A file name or a terminal's undecodable bytes arrive as lone surrogates (surrogateescape): orjson's
    bare TypeError escaped the client as a traceback. No socket is there: a request sent would have said so."""
    client = ControlClient(tmp_path / "no-gateway.sock", timeout_s=1.0)
    with pytest.raises(ControlError) as caught:
        await client.call("config.check", text="水位 = 1\udcff", actor="tanaka")
    assert caught.value.code == "malformed"
    assert caught.value.message == (
        "request config.check.args.text: cannot be sent, got str is not valid UTF-8: surrogates not allowed; text "
        "that is not valid Unicode (a lone surrogate: bytes a file name, a terminal or a file's encoding did not "
        "decode) or a value JSON has no form for"
    )
    await client.close()

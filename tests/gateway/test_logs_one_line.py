"""A text log line stays one line whatever its message holds (log_format = "text", or a terminal).

Before, a stranger's `GET /x%0A12:00:00 INFO    [web] …` wrote the web UI's access line as two journal lines, the
second one a forged entry of the attacker's wording, and an ESC in a device's MQTT topic drove the technician's
terminal. The JSON lines (the journal's default) escaped both already.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway import redact
from gateway.logs import TextFormatter, one_line
from tests.web.test_refusal_spells_access_log import start, stop

CONTROLS = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0))} - {"\t"}


def formatted(message: str, *args: object) -> str:
    record = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, args or None, None)
    return TextFormatter().format(record)


@given(st.text())
def test_no_control_character_reaches_a_text_line(text: str) -> None:
    line = formatted("topic %s refused", text)
    assert not CONTROLS & set(line), repr(line)
    shown = f"topic {one_line(text)} refused"
    if redact.text(shown) == shown:  # else the redactor masked a part of it (an e-mail address, a MAC)
        assert line.endswith(shown)


@given(st.text().filter(lambda t: "\\" not in t), st.text().filter(lambda t: "\\" not in t))
def test_escaping_keeps_texts_apart_and_leaves_clean_ones_alone(a: str, b: str) -> None:
    if a != b:
        assert one_line(a) != one_line(b)
    if not CONTROLS & set(a):
        assert one_line(a) == a


def test_the_escapes_read_as_python_writes_them() -> None:
    assert one_line("a\nb\rc\x1b[2J\td\x7f\x9b") == "a\\nb\\rc\\x1b[2J\td\\x7f\\x9b"


async def test_a_url_with_a_line_break_is_one_access_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    access = logging.getLogger("aiohttp.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        env = await start(tmp_path)
        forged = "12:00:00 INFO    [web] admin logged in"
        response = await env.client.get("/x%0A" + forged.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D"))
        assert response.status == 404
        await stop(env)
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert f"GET /x\\n{forged} 404" in lines[0]

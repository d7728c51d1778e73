"""The config page's errors at their lines: one scan of the text for all errors, the lines `line_of` gives.

Regression case of a review: `problems()` called `line_of` per error, which scans the whole text each time;
41 KB with 1346 errors took 15 s, and at the 1 MiB limit it would have taken hours, in the web UI's event loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.control.ops_config import parse_text
from gateway.errors import ConfigError
from gateway.web.viewmodels.configtext import problems
from gateway.web.viewmodels.tomllines import assignments, line_of

ROOT = Path(__file__).resolve().parents[2]
HEAD = '[gateway]\nid = "gw"\n\n[[uplinks]]\nname = "u"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
NESTED = """\
[gateway]
id = "gw"

[[adapters]]
name = "bus"
type = "modbus"
location = { lat = 32.2, lon = 130.7 }
[[adapters.devices]]
name = "d0"
[[adapters.devices]]
name = "d1"
[adapters.devices.extra]
x = 1

[[adapters]]
name = "bus2"
[[adapters.devices]]
name = "e0"
"headers"."Fiware-Service" = "river"
"""


def with_bad_adapters(size: int) -> str:
    """HEAD and simulated adapters with two errors each (written as in the review's case) up to `size` characters."""
    text = HEAD
    i = 0
    while len(text) < size:
        text += f'[[adapters]]\nname="a{i}"\ntype="simulated"\nentities=0\nrate=-1\n'
        i += 1
    return text


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_text(text)
    return caught.value.errors


def paths_about(text: str) -> list[str]:
    """Every path the text assigns, its tables, keys it lacks below them, indices it does not have, no key."""
    out: list[str] = []
    for a in assignments(text):
        out.append(a.path)
        out.append(f"{a.path}.below")
        head = a.path.rsplit(".", 1)[0]
        out.extend([head, f"{head}.missing", f"{head}[7].x"])
    out.extend(["adapters[99].port", "nothing", "nothing.here", "gateway"])
    return list(dict.fromkeys(out))


@pytest.mark.parametrize(
    "name", ["config/gateway.example.toml", "config/demo.toml", "config/river-http.toml", "nested", "bad adapters"]
)
def test_each_error_is_at_the_line_line_of_gives(name: str) -> None:
    if name == "nested":
        text = NESTED
    elif name == "bad adapters":
        text = with_bad_adapters(4000)
    else:
        text = (ROOT / name).read_text(encoding="utf-8")
    paths = paths_about(text)
    assert len(paths) > 20
    found = problems([f"{p}: is wrong, got 1" for p in paths], text)
    assert [(f.path, f.line) for f in found] == [(p, line_of(p, text)) for p in paths]


def test_1344_errors_in_40_kb_take_well_under_a_second() -> None:
    text = with_bad_adapters(40 * 1024)
    errors = errors_of(text)
    assert len(errors) == 1344
    started = time.perf_counter()
    found = problems(errors, text)
    assert time.perf_counter() - started < 1.0  # was 15 s
    assert sum(1 for f in found if f.line) == 1344


def test_every_error_of_a_megabyte_is_placed_in_seconds_not_hours() -> None:
    text = with_bad_adapters(1024 * 1024 - 100)
    errors = errors_of(text)
    assert len(errors) > 30_000
    started = time.perf_counter()
    found = problems(errors, text)
    assert time.perf_counter() - started < 5.0  # about 0.6 s; was hours
    assert found[-1].line == len(text.splitlines())

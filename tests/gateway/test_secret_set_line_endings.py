"""`edgegw secret set --stdin` takes a token file whatever its line ending: the ending is not part of the secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.secrets import resolve


def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    return cfg


def edgegw(tmp_path: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "-c", str(config(tmp_path))],
        input=stdin,  # bytes: a text pipe could translate the line endings under test
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        (b"kintone-token-0123\r\n", "kintone-token-0123"),  # a file saved on Windows
        (b"kintone-token-0123\n", "kintone-token-0123"),
        (b"kintone-token-0123", "kintone-token-0123"),  # no line ending at all (printf, echo -n)
        (b" pass word\t\n", " pass word\t"),  # only the line ending: spaces and tabs may be the secret's
        (b"kintone-token-0123\r\r\n", "kintone-token-0123\r"),  # one line ending, not every CR
        (b"the value\r\n\r\n", "the value"),  # blank lines after it are no second line (tests/cli: refused)
    ],
)
def test_secret_set_stdin_strips_one_line_ending(tmp_path: Path, written: bytes, stored: str) -> None:
    run = edgegw(tmp_path, "secret", "set", "kintone_token", "--stdin", stdin=written)
    assert run.returncode == 0, run.stderr
    assert resolve("secret:kintone_token", tmp_path / "data") == stored


def test_a_line_ending_alone_is_an_empty_value(tmp_path: Path) -> None:
    run = edgegw(tmp_path, "secret", "set", "kintone_token", "--stdin", stdin=b"\r\n")
    assert (run.returncode, run.stderr.decode()) == (1, "secret kintone_token: empty value refused\n")


def test_the_help_says_what_is_stripped(tmp_path: Path) -> None:
    run = edgegw(tmp_path, "secret", "set", "--help")
    assert run.returncode == 0
    help_text = " ".join(run.stdout.decode().split())
    assert 'a trailing "\\r\\n" or "\\n" (only the line ending) is not part of the value' in help_text

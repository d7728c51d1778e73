"""A reader gone (`| head`) while a store's command prints is the pipe's end, not the store's: these commands'
own `except OSError` said "cannot use … run it as the gateway's user" with exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.edgegw import config, edgegw
from tests.cli.test_main_one_line import with_reader_gone

PASSWORD = b"correct horse battery staple 42\n"


@pytest.mark.parametrize(
    "command", [("pseudonym", "list"), ("user", "list"), ("audit", "show")], ids=["pseudonym", "user", "audit"]
)
def test_a_store_command_to_a_reader_gone_ends_quietly(tmp_path: Path, command: tuple[str, ...]) -> None:
    cfg = str(config(tmp_path))
    (tmp_path / "data").mkdir()
    # something to print: a key ring, an account, its audit entry
    assert edgegw("pseudonym", "rotate", "-c", cfg).returncode == 0
    made = edgegw("user", "add", "admin1", "--role", "admin", "--password-stdin", "-c", cfg, stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    done = with_reader_gone(*command, "-c", cfg)
    assert (done.returncode, done.stderr.decode()) == (141, "")

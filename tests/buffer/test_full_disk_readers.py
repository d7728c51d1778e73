"""`edgegw buffer stats | dead-letters` and the web UI's reader on a really full disk (a 4 MiB tmpfs), gateway stopped.

A cleanly closed buffer has no -shm: reading it needs SQLite to make one (32 KiB), which a full disk
refuses with an I/O error. The technician must read that the disk is full, not that the file is
broken (and delete a good buffer).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.buffer import cli
from gateway.buffer.config import BufferConfig
from gateway.buffer.outbox import Outbox
from gateway.buffer.reader import BufferReader
from gateway.errors import BufferUnavailable
from tests.buffer.readings import reading
from tests.support.tmpfs import fill, free_bytes


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgegw")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["buffer", *argv])


async def _full_disk_with_a_buffer(tmpfs: Callable[..., Path]) -> Path:
    disk = tmpfs("4m")
    db = disk / "buffer.db"
    box = await Outbox.open(db, BufferConfig(reserve_bytes=0), ["orion"])
    await box.append_many([reading(i, pad=300) for i in range(2000)])
    await box.close()
    fill(disk)
    assert free_bytes(disk) == 0
    return db


def _message(db: Path) -> str:
    return (
        f"buffer: cannot read {db}, got a full disk in {db.parent} (disk I/O error); opening the buffer needs "
        f"about 32 KiB free there: free space in {db.parent} (the file itself is fine: keep it)"
    )


@pytest.mark.parametrize("command", ["stats", "dead-letters"])
async def test_the_cli_says_the_disk_is_full(
    tmpfs: Callable[..., Path], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    db = await _full_disk_with_a_buffer(tmpfs)
    before = db.read_bytes()
    out = io.StringIO()
    assert cli.run(_args(command), db, out) == 1
    assert (out.getvalue(), capsys.readouterr().err) == ("", _message(db) + "\n")
    assert db.read_bytes() == before


async def test_the_web_readers_error_says_the_disk_is_full(tmpfs: Callable[..., Path]) -> None:
    db = await _full_disk_with_a_buffer(tmpfs)
    reader = BufferReader(db)
    try:
        with pytest.raises(BufferUnavailable) as err:
            await reader.backlog()
    finally:
        await reader.close()
    assert str(err.value) == _message(db)

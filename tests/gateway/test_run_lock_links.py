"""`edgegw run` takes its data directory's lock without writing through anything planted there.

The gateway's user owns the data directory, so it can put a link at gateway.lock to a file only root may write
(/etc/shadow); a root `edgegw run` (a technician's, or an old unit) then truncated that file and wrote its pid
into it, and truncated it again at its stop. The lock is now opened O_NOFOLLOW and must be a regular file of one
name; anything else is refused with the one line that says what to remove.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import BufferUnavailable
from gateway.run_lock import LOCK_FILE, DataDirLock

SHADOW = "root:$y$j9T$secret:19000:0:99999:7:::\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    victim = tmp_path / "shadow"
    victim.write_text(SHADOW)
    return victim


def test_a_link_at_the_lock_is_refused_and_its_target_left_as_it_was(data: Path, victim: Path) -> None:
    (data / LOCK_FILE).symlink_to(victim)
    with pytest.raises(BufferUnavailable) as refused:
        DataDirLock.take(data)
    assert str(refused.value) == (
        f"data directory {data}: cannot lock {data / LOCK_FILE}, got a symbolic link; remove it (the gateway makes "
        "its own, and never writes through a link)"
    )
    assert victim.read_text() == SHADOW


def test_a_dangling_link_at_the_lock_makes_no_file_at_its_target(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "etc-cron.d-job"
    (data / LOCK_FILE).symlink_to(target)
    with pytest.raises(BufferUnavailable, match="got a symbolic link"):
        DataDirLock.take(data)
    assert not target.exists()


def test_a_hard_link_at_the_lock_is_refused_and_its_other_name_left_as_it_was(data: Path, victim: Path) -> None:
    os.link(victim, data / LOCK_FILE)
    with pytest.raises(BufferUnavailable, match="got a hard link to another file; remove it"):
        DataDirLock.take(data)
    assert victim.read_text() == SHADOW


def test_a_fifo_at_the_lock_is_refused_without_hanging(data: Path) -> None:
    os.mkfifo(data / LOCK_FILE)
    with pytest.raises(BufferUnavailable, match="got not a regular file; remove it"):
        DataDirLock.take(data)


def test_the_gateways_own_lock_file_is_taken_again_after_a_stop(data: Path) -> None:
    first = DataDirLock.take(data)
    first.release()
    again = DataDirLock.take(data)
    assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    again.release()

"""The config versions' file is made as every store's is: private from its first byte, a foreign file refused.

ConfigVersions let sqlite create the file under the umask and chmod'ed it afterwards, failed with SQLite's
"unable to open database file" where its directory was missing, and on a file that is no database SQLite
deleted the rollback journal beside it (the last transaction of the right file) before saying so.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.control.config_versions import FILE, ConfigVersions
from gateway.storage.files import STORE_FIX, StoreUnreadable

GARBAGE = bytes(range(256)) * 32


@pytest.fixture
def open_umask() -> Iterator[None]:
    # the widest umask: whatever mode the file gets is the store's doing
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_a_new_file_and_its_directory_are_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / FILE
    versions = ConfigVersions(path)
    try:
        assert versions.record("[gateway]\n", actor="file", at=0.0) == 1
    finally:
        versions.close()
    assert (_mode(path.parent), _mode(path)) == (0o700, 0o600)
    # every file beside it that sqlite made has the file's mode
    assert {p.name: _mode(p) for p in path.parent.iterdir()} == {FILE: 0o600}


def test_a_file_that_is_no_database_is_refused_and_nothing_beside_it_touched(tmp_path: Path) -> None:
    path = tmp_path / FILE
    path.write_bytes(GARBAGE)
    beside = {f"{FILE}{suffix}": f"the right file's {suffix}".encode() for suffix in ("-journal", "-wal", "-shm")}
    for name, data in beside.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(StoreUnreadable) as info:
        ConfigVersions(path)
    assert str(info.value) == (
        f"config versions {path}: not an SQLite database, got 8192 bytes without SQLite's header; {STORE_FIX}"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {FILE: GARBAGE, **beside}

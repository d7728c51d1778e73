"""Reading the kernel's lock table (/proc/locks) for the gateway's lock, which `edgegw status` asks without taking."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.run_lock import LOCK_FILE, DataDirLock, flock_listed, held

KINDS = ["FLOCK  ADVISORY ", "POSIX  ADVISORY ", "OFDLCK ADVISORY ", "LEASE  ACTIVE   ", "DELEG  ACTIVE   "]


@dataclass(frozen=True, kw_only=True)
class Entry:
    kind: str
    waiting: bool
    major: int
    minor: int
    inode: int

    def line(self, position: int) -> str:
        # as fs/locks.c lock_get_status() prints it: "%lld:%s ", the kind, then "%d %02x:%02x:%lu "
        prefix = " ->" if self.waiting else ""
        return f"{position}:{prefix} {self.kind} WRITE 1234 {self.major:02x}:{self.minor:02x}:{self.inode} 0 EOF"


majors = st.integers(0, 4095)  # the kernel's 12-bit major, 20-bit minor
minors = st.integers(0, (1 << 20) - 1)
inodes = st.integers(1, 2**64 - 1)
entries = st.builds(Entry, kind=st.sampled_from(KINDS), waiting=st.booleans(), major=majors, minor=minors, inode=inodes)


@given(st.lists(entries, max_size=8), majors, minors, inodes, st.data())
def test_a_lock_is_found_where_the_table_lists_an_flock_held_on_the_file(
    others: list[Entry], major: int, minor: int, inode: int, data: st.DataObject
) -> None:
    # the file's own entries, to be mixed in with the others: held or waiting, on this device or another
    ours = data.draw(
        st.lists(
            st.builds(
                Entry,
                kind=st.sampled_from(KINDS),
                waiting=st.booleans(),
                major=st.sampled_from([major, (major + 1) % 4096]),
                minor=st.just(minor),
                inode=st.just(inode),
            ),
            max_size=3,
        )
    )
    table = data.draw(st.permutations([*others, *ours]))
    text = "\n".join(entry.line(n) for n, entry in enumerate(table, 1))
    holding = [e for e in table if e.kind.startswith("FLOCK") and not e.waiting and e.inode == inode]
    expected = True if any((e.major, e.minor) == (major, minor) for e in holding) else None if holding else False
    assert flock_listed(text, os.makedev(major, minor), inode) is expected


@given(st.text(), st.integers(0, 2**32 - 1), inodes)
def test_any_text_is_read_without_an_error(text: str, device: int, inode: int) -> None:
    assert flock_listed(text, device, inode) in (True, False, None)


def test_a_lock_on_no_inode_and_an_unknown_format_are_not_taken_for_the_gateways() -> None:
    table = "1: FLOCK  ADVISORY  WRITE 1234 <none>:0 0 EOF\n2: FLOCK  ADVISORY  WRITE 1234 fe:00:7:1 0 EOF\n"
    assert flock_listed(table, os.makedev(0xFE, 0), 7) is False


def test_held_reads_the_kernels_table(tmp_path: Path) -> None:
    assert held(tmp_path) is None  # no lock file: no `edgegw run` here yet
    lock = DataDirLock.take(tmp_path)
    try:
        assert held(tmp_path) is True
        assert held(tmp_path, proc_locks=tmp_path / "no-proc") is None
    finally:
        lock.release()
    assert held(tmp_path) is False
    (tmp_path / LOCK_FILE).unlink()
    (tmp_path / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
    assert held(tmp_path) is None

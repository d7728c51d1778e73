"""Disk space for the outbox: the reserve file, and the check that keeps new readings off the disk's last megabytes.

Theory of operation, from what SQLite 3.40 did on a full 4 MiB tmpfs (tests/buffer/test_full_disk.py):

- In WAL mode a commit writes only the -wal; a checkpoint later copies its pages into the database
  file, which then grows by the pages that are new. With the disk full, a commit that needs a longer
  -wal fails (SQLITE_FULL), and so does the checkpoint that would let the -wal be reused: from then on
  even an acknowledgement cannot be written (a cursor update and its deletes: about one -wal page per
  8 rows of 0.4 KB, since this SQLite zeroes deleted content), and the backlog can never be delivered.
- A clean close checkpoints and deletes the -wal and the -shm. Opening again needs 32 KiB for the
  -shm before anything can be read (SQLITE_IOERR_SHMSIZE on a full disk), and the first write needs
  room for the -wal. After kill -9 both files are still there, with their space.
- A fresh buffer on a small disk kept everything in the -wal (SQLite checkpoints at 1,000 pages, 4 MiB,
  which never came): its first checkpoint needed as much room again as the data, and never got it.
- Rows deleted after delivery leave free pages inside the file, which inserts reuse without growing it.

So:

1. With CAREFUL_BELOW or more free in the data directory, commits run unchecked: a byte budget (the
   free space above CAREFUL_BELOW, spent at twice the bytes each commit stores) says when to look
   again, and the writer also looks once a second. No system call per commit.
2. Below that the buffer is careful. Before each insert it works out how much the -wal and the file
   must grow for it (the file's free pages count) and refuses the group (BufferFull, as when the caps
   are reached) unless FLOOR stays free for delivery afterwards — FLOOR plus the reserve while the
   reserve file is not there (released, or never made for want of room). An insert that fits in the
   file's free pages and in the -wal as it is needs no new space and is always accepted. The -wal is
   checkpointed after every commit (SQLite's wal_autocheckpoint 1), so it stays one transaction long
   and the file absorbs each commit at once.
3. The reserve file (`<buffer file>.reserve`, `[buffer] reserve_bytes`) holds space that no other
   program can take. When a write that delivery needs (opening, an acknowledgement, an age drop)
   fails for want of space, the file is deleted (WARNING) and the write retried; it is made again
   once the disk has room for it and FLOOR. Deleting it by hand is safe.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.logs import StateLog, component_logger

log = component_logger(__name__, "buffer")

T = TypeVar("T")

MIB = 1024 * 1024
CAREFUL_BELOW = 32 * MIB  # above a -wal checkpoint (schema.WAL_BYTES, 16 MiB) plus a large commit, with margin
FLOOR = 1 * MIB  # kept free for acknowledgements: one of 1,000 rows of 0.4 KB wrote 122 -wal pages
_PAGE_OVERHEAD = 24  # a -wal frame header per page
_ROW_OVERHEAD = 32  # per row on top of body and entity id: cell and record headers, the integer columns
# Pages an insert rewrites besides its new ones: the right edges of the table and its indexes (the last
# leaf and each interior level), page 1, the counters. Measured 3-11 (a 3,000-row group on 20,000 rows:
# 11); 8 had left a -wal up to 3 frames longer than the estimate allowed.
MODIFIED_PAGES = 16

# Errors that mean "no space left", from SQLite or the OS. The -shm is grown with ftruncate and
# written through a mapping, so SQLite reports its lack of space as an I/O error of its own.
_DISK_FULL_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_SHMSIZE})
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, says the disk (or quota) is full."""
    while exc is not None:
        if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) in _DISK_FULL_CODES:
            return True
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__
    return False


# A reader of a cleanly closed buffer (no -shm) needs this much free for the -shm before it reads anything.
OPEN_BYTES = 32 * 1024


def full_disk_on_open(path: Path, exc: BaseException) -> str:
    """What a reader (the CLI, the web UI) says when `path` cannot be read for want of disk space: the
    disk, not the file, is the problem (a technician told "not a readable outbox" might delete a good one)."""
    return (
        f"buffer: cannot read {path}, got a full disk in {path.parent} ({exc}); opening the buffer needs about "
        f"{OPEN_BYTES // 1024} KiB free there: free space in {path.parent} (the file itself is fine: keep it)"
    )


def with_room(make_room: Callable[[], bool] | None, fn: Callable[[], T]) -> T:
    """`fn()`, once more if it failed for want of disk space and `make_room` (deleting the reserve) freed some."""
    try:
        return fn()
    except (sqlite3.Error, OSError) as exc:
        if not is_disk_full(exc) or make_room is None or not make_room():
            raise
    return fn()


def reserve_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".reserve")


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def insert_pages(*, rows: int, record_bytes: int, page_size: int) -> int:
    """Pages an insert of `rows` rows holding `record_bytes` of bodies and entity ids may take.

    Rows appended in seq order fill leaf pages as far as whole rows go (SQLite's quick balance at
    the right edge). A row longer than a leaf may keep (page size - 35) leaves only its first few
    hundred bytes there and the rest on overflow pages; near that length either may happen, so the
    larger count is taken. Checked against what SQLite writes in tests/buffer/test_space.py.
    """
    if rows == 0:
        return 0
    per_row = -(-record_bytes // rows) + _ROW_OVERHEAD
    most = page_size - 35
    whole = max(1, (page_size - 8) // (per_row + 2))  # rows per leaf: page header, a cell pointer per row
    in_leaves = -(-rows // whole)
    local = (page_size - 12) * 32 // 255 - 23  # SQLite's minimum local payload
    overflow = -(-max(0, per_row - local) // (page_size - 4))  # an overflow page holds page size - 4
    spilled = rows * overflow + -(-rows // max(1, (page_size - 8) // (local + 2 * _ROW_OVERHEAD)))
    if per_row <= most - 2 * _ROW_OVERHEAD:
        table = in_leaves
    elif per_row <= most:
        table = max(in_leaves, spilled)  # the estimate of per_row is too rough to tell which
    else:
        table = spilled
    index = -(-rows * 16 // page_size)  # (lane, seq) entries of the lane index
    return table + index + 8  # interior pages that split, a partly filled first leaf


def shortfall(*, pages: int, free_pages: int, page_size: int, wal_bytes: int, free_bytes: int, keep: int) -> int:
    """Bytes missing for an insert of `pages` new pages: 0 when it fits and leaves `keep` free.

    The file grows by the pages its free-list cannot hold; the -wal (reused from its start after
    each checkpoint) grows by what the transaction's frames need beyond its current size.
    """
    frames = pages + MODIFIED_PAGES
    wal_growth = max(0, frames * (page_size + _PAGE_OVERHEAD) + 32 - wal_bytes)
    file_growth = max(0, pages - free_pages) * page_size
    need = wal_growth + file_growth
    if need == 0:
        return 0  # room inside the file and the -wal: takes nothing from the disk
    return max(0, need + keep - free_bytes)


class Space:
    """The data directory's free space as the outbox's writer sees it, and the reserve file.

    Used from one thread at a time: the one opening the outbox, then its writer thread.
    """

    def __init__(
        self, db_path: Path, reserve_bytes: int, *, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs
    ) -> None:
        self.directory = db_path.parent
        self.reserve_path = reserve_path(db_path)
        self.reserve_bytes = reserve_bytes
        self._wal = Path(str(db_path) + "-wal")
        self._statvfs = statvfs
        self.careful = False
        self.free = 0  # bytes free at the last look
        self._budget = 0
        self._released = StateLog(log)  # failing while the reserve is deleted for want of space, until made again

    # --- looking -------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        st = self._statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def held(self) -> int:
        try:
            return self.reserve_path.stat().st_size
        except FileNotFoundError:
            return 0

    def look(self) -> bool:
        """Read the free space, make or resize the reserve when there is room; True when `careful` changed."""
        try:
            free = self.free_bytes()
        except OSError as exc:
            log.debug("buffer: free space of %s unknown: %s", self.directory, exc)
            return False
        held = self.held()
        if held != self.reserve_bytes:
            try:
                free = self._fit_reserve(held, free)
            except OSError as exc:
                log.debug("buffer: reserve file %s not resized: %s", self.reserve_path, exc)
        self.free = free
        self._budget = free - CAREFUL_BELOW
        careful = free < CAREFUL_BELOW
        changed = careful != self.careful
        self.careful = careful
        return changed

    def spend(self, nbytes: int) -> bool:
        """Count a commit of `nbytes` against the budget; True when it is spent and the caller must look again."""
        self._budget -= 2 * nbytes
        return self._budget < 0

    def keep(self) -> int:
        """Bytes an insert must leave free: FLOOR, plus whatever part of the reserve the file does not hold
        (released, or never made for want of room): new readings never take the space meant for delivery."""
        return FLOOR + max(0, self.reserve_bytes - self.held())

    def wal_bytes(self) -> int:
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    # --- the reserve file ----------------------------------------------------------------------

    def release(self, why: str) -> bool:
        """Delete the reserve so that `why` (e.g. "delivery") can go on; False when there was none to delete."""
        held = self.held()
        if held == 0:
            return False
        try:
            self.reserve_path.unlink()
        except OSError as exc:
            log.error("buffer: cannot delete the reserve file %s: %s", self.reserve_path, exc)
            return False
        # said each time: a reserve made again in between makes each deletion news
        self._released.ok()
        self._released.fail(
            "released",
            logging.WARNING,
            "buffer: disk full in %s; deleted the reserve file %s (%s) so that %s can go on. "
            "It is made again once there is room; free space in %s",
            self.directory,
            self.reserve_path,
            mib(held),
            why,
            self.directory,
        )
        return True

    def _fit_reserve(self, held: int, free: int) -> int:
        """Bring the reserve file to reserve_bytes when the disk has room; returns the free space after."""
        if self.reserve_bytes == 0:
            try:
                self.reserve_path.unlink()
            except OSError as exc:
                log.debug("buffer: reserve file %s not deleted: %s", self.reserve_path, exc)
            return self.free_bytes()
        if held > self.reserve_bytes:
            os.truncate(self.reserve_path, self.reserve_bytes)
            return self.free_bytes()
        if free < self.reserve_bytes - held + FLOOR:
            return free
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                # allocated blocks, not a sparse file: the point is space no one else can take
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("buffer: reserve file %s not made: %s", self.reserve_path, exc)
            try:  # do not keep a half-made reserve's blocks
                if held:
                    os.truncate(self.reserve_path, held)
                else:
                    self.reserve_path.unlink()
            except OSError:
                pass
            return self.free_bytes()
        if (
            not self._released.ok(
                "buffer: made the reserve file %s again (%s)", self.reserve_path, mib(self.reserve_bytes)
            )
            and held == 0
        ):
            log.info("buffer: made the reserve file %s (%s)", self.reserve_path, mib(self.reserve_bytes))
        return self.free_bytes()

"""Read-only bind mounts: a path bound onto itself and that bind made read-only, as an SD card's ext4 remounted
read-only after an error, or systemd's ReadOnlyPaths=, leave a store.

The file system itself stays writable: a file opened before the bind keeps its access (a running gateway's
own connections), every open through the path afterwards meets the read-only mount (EROFS), as a process
started under ReadOnlyPaths= does. `writable(path)` binds a path inside one again, writable (ReadWritePaths=).
Mounting needs root (as here and in CI); a test is skipped, saying why, only when the kernel refuses with EPERM.
Also: a store held open by another process, as the gateway holds its stores (SQLite shares one process's
WAL index between its connections to one file, which would hide what a process of its own meets).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.tmpfs import unmount

_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: Path | None, target: Path, flags: int) -> None:
    src = None if source is None else os.fsencode(source)
    if _libc.mount(src, os.fsencode(target), None, flags, None) != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            pytest.skip(f"a bind mount at {target} was refused (EPERM): these tests need root")
        raise OSError(err, os.strerror(err), str(target))


class Binds:
    """Bind mounts made by one test, undone in the reverse order on the way out."""

    def __init__(self) -> None:
        self._mounted: list[Path] = []

    def read_only(self, path: Path) -> Path:
        _mount(path, path, _MS_BIND)
        self._mounted.append(path)
        _mount(None, path, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        return path

    def writable(self, path: Path) -> Path:
        _mount(path, path, _MS_BIND)
        self._mounted.append(path)
        _mount(None, path, _MS_REMOUNT | _MS_BIND)  # a bind takes the flags of the mount it is made from
        return path

    def __enter__(self) -> Binds:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        while self._mounted:
            unmount(self._mounted.pop())


@pytest.fixture
def binds() -> Iterator[Binds]:
    with Binds() as made:
        yield made


_HOLDER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
{setup}
print("ready", flush=True)
sys.stdin.read()  # until the test closes the pipe
{teardown}
print("closed", flush=True)
"""


@contextmanager
def held_open(setup: str, teardown: str = "") -> Iterator[None]:
    """A Python process of its own running `setup` (which opens a store and keeps it), until the block ends;
    then `teardown` (which closes it)."""
    code = _HOLDER.format(setup=setup, teardown=teardown)
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != b"ready\n":
        proc.kill()
        raise AssertionError(f"the holding process did not start: {proc.communicate()[1].decode()}")
    try:
        yield
    finally:
        out, err = proc.communicate(timeout=30)  # closes its stdin: it runs `teardown` and ends
        assert (proc.returncode, out) == (0, b"closed\n"), err.decode()

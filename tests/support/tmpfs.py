"""A small tmpfs mounted by a test, so that a disk can really be full; unmounted in teardown.

Mounting needs root (as here and in CI); a test is skipped, saying why, only when the kernel
refuses the mount with EPERM.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_MNT_DETACH = 2  # umount2(): detach now, free once nothing uses it (a killed gateway may still hold files)
_MS_RDONLY = 1
_libc = ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(target: Path, size: str, *, read_only: bool = False, inodes: int | None = None) -> None:
    """A tmpfs of `size` bytes ("4m") at `target`; with `inodes`, room for that many files and directories only
    (the root directory counts as one), so that a disk can run out of inodes before it runs out of bytes."""
    options = f"size={size},mode=0755" + ("" if inodes is None else f",nr_inodes={inodes}")
    target.mkdir(parents=True, exist_ok=True)
    flags = _MS_RDONLY if read_only else 0
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            pytest.skip(f"mounting a {size} tmpfs at {target} was refused (EPERM): these tests need root")
        raise OSError(err, os.strerror(err), str(target))


def unmount(target: Path) -> None:
    if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            raise OSError(err, os.strerror(err), str(target))


def fill(directory: Path, name: str = "filler") -> int:
    """Write zeros into `directory/name` until the file system is full; returns the bytes written."""
    written = 0
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (1 << 20, 4096, 1):
            chunk = b"\0" * block
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`tmpfs("4m")` mounts a tmpfs of that size at tmp_path/"data" (or `at`, read-only or with `inodes` inodes
    if asked); returns its path."""
    mounted: list[Path] = []

    def make(size: str, at: Path | None = None, *, read_only: bool = False, inodes: int | None = None) -> Path:
        target = at or tmp_path / "data"
        mount_tmpfs(target, size, read_only=read_only, inodes=inodes)
        mounted.append(target)
        return target

    yield make
    for target in reversed(mounted):
        unmount(target)

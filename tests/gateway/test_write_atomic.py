"""write_atomic: a temp file of its own per writer, its mode from the first byte, nothing left behind on failure."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.storage import files
from gateway.storage.files import write_atomic


class PausingOs:
    """`os` as gateway.storage.files sees it, with writer A's rename held until writer B has its temp file open.

    The interleaving of review finding cfg_race: with one shared temp name, B's open truncated the
    inode A was about to rename, so the file was empty (then mixed) and B's rename found nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.b_opened = threading.Event()
        self.a_replaced = threading.Event()
        self.seen_by_b: bytes | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: str, dst: Path) -> None:
        if threading.current_thread().name == "A":
            assert self.b_opened.wait(10)
        os.replace(src, dst)
        if threading.current_thread().name == "A":
            self.a_replaced.set()

    def fchmod(self, fd: int, mode: int) -> None:
        os.fchmod(fd, mode)
        if threading.current_thread().name == "B":
            self.b_opened.set()
            assert self.a_replaced.wait(10)
            self.seen_by_b = self.path.read_bytes()  # what a power cut here would leave


def test_two_writers_at_once_each_write_their_own_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes(b"[gateway]\nid = 'old'\n")
    path.chmod(0o660)
    pausing = PausingOs(path)
    monkeypatch.setattr(files, "os", pausing)
    errors: list[Exception] = []

    def write(data: bytes) -> None:
        try:
            write_atomic(path, data, None, durable=True)
        except Exception as exc:  # said by the assertion below, not lost in the thread
            errors.append(exc)

    a = threading.Thread(target=write, args=(b"[gateway]\nid = 'web-ui-apply'\n",), name="A")
    b = threading.Thread(target=write, args=(b"[gateway]\nid = 'remote'\n",), name="B")
    a.start()
    b.start()
    a.join()
    b.join()
    assert errors == []
    assert pausing.seen_by_b == b"[gateway]\nid = 'web-ui-apply'\n"
    assert path.read_bytes() == b"[gateway]\nid = 'remote'\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.toml"]


def test_a_new_file_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "status.json", b"{}", None)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o600


def test_a_failed_write_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.mkdir()  # a rename over a directory fails, even for root
    with pytest.raises(IsADirectoryError):
        write_atomic(path, b"[gateway]\n", 0o640, durable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.toml"]
    assert path.is_dir()

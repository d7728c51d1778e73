"""Backup files made to hurt the box that restores them: refused during verify, naming the member, before anything stops.

A restore runs as root on a file picked from a network share. Each file here is a real backup of the
0.1.0 box, reworked the way an attacker with write access to the share (or a broken copy) would: names
that climb out of the data directory, a manifest that lies about sizes or sqlite, a gzip bomb, a
config the gateway refuses. Each test also proves that nothing under tmp_path changed (same bytes,
same inode, no `.pre-restore-*`), and the CLI ones that no service was stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.backup import archive
from gateway.backup.archive import BackupError
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError
from tests.backup.conftest import RELEASE, write_config
from tests.support.tmpfs import free_bytes

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
# spelt out rather than imported: the same text must be what these tests expect of the code before the fix
ALTERED = "the file was altered or not made by `edgegw backup`; use another generation"


@pytest.fixture
def deep_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(config, data dir) of a 0.1.0 box whose data dir is as deep below tmp_path as verify's extraction directory.

    /var/lib/edgegw and /tmp/edgegw-verify-XXXX/data are both three levels down: a name climbing three
    levels out of `data/` meets the same file from both. tmp_path/T plays /tmp.
    """
    data_dir = tmp_path / "box" / "lib" / "data"
    shutil.copytree(RELEASE, data_dir)
    (tmp_path / "T").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "T"))
    return write_config(tmp_path / "box" / "gateway.toml", data_dir), data_dir


def _genuine(config: Path, data_dir: Path, share: Path) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The manifest (as parsed JSON) and the other members of a real backup of the box."""
    path = archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=NIGHT)
    with tarfile.open(path) as tar:
        members = [(m.name, _read(tar, m)) for m in tar.getmembers()]
    path.unlink()
    assert members[0][0] == "MANIFEST.json"
    return json.loads(members[0][1]), members[1:]


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    data = tar.extractfile(member)
    assert data is not None
    return data.read()


def _entry(name: str, data: bytes, *, sqlite: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sqlite": sqlite,
        "schema_version": None,
    }


def _write(path: Path, manifest: dict[str, Any] | bytes, members: list[tuple[str, bytes]]) -> Path:
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in [("MANIFEST.json", raw), *members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return path


def _tree(root: Path) -> dict[str, object]:
    """Every file, directory and link under `root`: bytes, inode and mode of files, so a move shows too."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", p.stat().st_mode)
        else:
            st = p.stat()
            out[rel] = (p.read_bytes(), st.st_ino, st.st_mode)
    return out


def _fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `systemctl` on PATH that records what it is asked (as tests/backup/test_cli.py); returns its record."""
    calls = tmp_path / "systemctl.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return calls


def _refused(path: Path, config: Path, data_dir: Path) -> str:
    """What `archive.restore` says, refusing `path`."""
    with pytest.raises(BackupError) as caught:
        archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    return str(caught.value)


def test_a_name_climbing_onto_a_file_of_the_box_is_refused_before_anything_stops(
    deep_box: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listed in the manifest only: verify used to check the box's own file against the hash, and restore moved it."""
    config, data_dir = deep_box
    victim = tmp_path / "victim.conf"  # /etc/… on a box
    victim.write_bytes(b"a file of the box's own\n")
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    manifest["members"].append(_entry("data/../../../victim.conf", victim.read_bytes()))
    path = _write(tmp_path / "share" / "edgegw-fixture-gw-20261203T181200Z.tar.gz", manifest, members)
    calls = _fake_systemctl(tmp_path, monkeypatch)
    before = _tree(tmp_path)
    assert main(["backup", "restore", str(path), "--service-manager", "systemd", "-c", str(config)]) == 1
    expected = f"backup {path}: member 'data/../../../victim.conf' has a '..' part; {ALTERED}"
    assert capsys.readouterr().err.strip() == expected
    assert not calls.exists()  # not even asked what runs: nothing was stopped
    assert _refused(path, config, data_dir) == expected
    assert _tree(tmp_path) == before


def test_a_name_climbing_into_the_config_directory_writes_nothing_there(
    deep_box: tuple[Path, Path], tmp_path: Path
) -> None:
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    payload = b"* * * * * root touch /tmp/pwned\n"
    manifest["members"].append(_entry("data/../config/evil", payload))
    path = _write(tmp_path / "share" / "evil.tar.gz", manifest, [*members, ("data/../config/evil", payload)])
    before = _tree(tmp_path)
    expected = f"backup {path}: member 'data/../config/evil' has a '..' part; {ALTERED}"
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == expected
    assert _refused(path, config, data_dir) == expected
    assert _tree(tmp_path) == before
    assert not (data_dir.parent / "config").exists()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("other/readme.txt", "is neither config/<file> nor data/<path>;"),  # restore used to die half-way on it
        ("config/evil.toml", "is a second config, got 'config/gateway.toml' already; a backup holds one config:"),
        ("/etc/cron.d/edgegw", "is absolute;"),
        ("data\\..\\..\\x", "holds a backslash;"),
        ("data//x", "has an empty part;"),
        ("data/./x", "has a '.' part;"),
        (
            "data/buffer.db-wal",  # replayed into the restored buffer, past its quick_check
            "names a file a backup never holds (a hidden file or directory, a sqlite side file, a lock, a socket, "
            "a temporary or damaged file, a status file);",
        ),
        (
            "data/.pre-restore-20261203T181200Z/data/buffer.db",  # over what the restore moves aside
            "names a file a backup never holds (a hidden file or directory, a sqlite side file, a lock, a socket, "
            "a temporary or damaged file, a status file);",
        ),
    ],
)
def test_a_name_a_backup_never_holds_is_refused(
    deep_box: tuple[Path, Path], tmp_path: Path, name: str, problem: str
) -> None:
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    manifest["members"].append(_entry(name, b"x"))
    path = _write(tmp_path / "share" / "named.tar.gz", manifest, [*members, (name, b"x")])
    before = _tree(tmp_path)
    expected = f"backup {path}: member {name!r} {problem} {ALTERED}"
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == expected
    assert _refused(path, config, data_dir) == expected
    assert _tree(tmp_path) == before


def test_a_name_that_is_a_file_and_a_directory_at_once_is_refused(deep_box: tuple[Path, Path], tmp_path: Path) -> None:
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    manifest["members"].append(_entry("data/web", b"x"))
    path = _write(tmp_path / "share" / "both.tar.gz", manifest, [*members, ("data/web", b"x")])
    before = _tree(tmp_path)
    expected = (
        f"backup {path}: member 'data/web/accounts.db' needs data/web to be a directory, got it as a file in the "
        f"backup too; {ALTERED}"
    )
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == expected
    assert _refused(path, config, data_dir) == expected
    assert _tree(tmp_path) == before


def test_a_symbolic_link_in_the_data_directory_leads_no_member_out_of_it(
    deep_box: tuple[Path, Path], tmp_path: Path
) -> None:
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    path = _write(tmp_path / "share" / "genuine.tar.gz", manifest, members)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(data_dir / "web", elsewhere)
    (data_dir / "web").symlink_to(elsewhere)
    before = _tree(tmp_path)
    assert _refused(path, config, data_dir) == (
        f"backup {path}: member 'data/web/accounts.db' would be written outside the data directory {data_dir}, got "
        f"{elsewhere / 'accounts.db'} through the symbolic link {data_dir / 'web'}: a data directory holds no link "
        "out of it; replace the link by what it points to; nothing was stopped or changed"
    )
    assert _tree(tmp_path) == before


def _corrupt_sqlite() -> bytes:
    """A 0.1.0 store with its third page overwritten: it opens, and quick_check finds the damage."""
    data = bytearray((RELEASE / "web" / "accounts.db").read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[2 * page : 3 * page] = b"\xa5" * page
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        # the manifest calls the store no sqlite, so quick_check used to be skipped: the web UI then died on it
        ("data/web/accounts.db", b"\x17" * 4096, "is not a usable sqlite file, got file is not a database"),
        # neither called sqlite nor named .db: its first bytes say what it is
        (
            "data/web/notes.bin",
            _corrupt_sqlite(),
            "fails sqlite's quick_check, got *** in database main ***\nPage 3: btreeInitPage() returns error code 11",
        ),
    ],
)
def test_a_store_is_checked_whatever_the_manifest_says(
    deep_box: tuple[Path, Path], tmp_path: Path, name: str, data: bytes, problem: str
) -> None:
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    manifest["members"] = [m for m in manifest["members"] if m["name"] != name] + [_entry(name, data, sqlite=False)]
    members = [(n, d) for n, d in members if n != name] + [(name, data)]
    path = _write(tmp_path / "share" / "lie.tar.gz", manifest, members)
    before = _tree(tmp_path)
    expected = f"backup {path}: {name} {problem}; use another generation"
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == expected
    assert _refused(path, config, data_dir) == expected
    assert _tree(tmp_path) == before


def _zeros(tar: tarfile.TarFile, name: str, size: int) -> None:
    """A member of `size` zero bytes, streamed: the test never holds it in memory."""

    class Zeros(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    tar.addfile(info, io.BufferedReader(Zeros()))


def _with_zeros(path: Path, manifest: dict[str, Any], members: list[tuple[str, bytes]], name: str, size: int) -> Path:
    raw = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
        for n, d in members:
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
        _zeros(tar, name, size)
    return path


def test_a_member_larger_than_declared_is_refused_before_a_byte_of_it_is_written(
    deep_box: tuple[Path, Path], tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    """A gzip bomb: 10 bytes in the manifest, 50 MiB of zeros (50 KiB compressed) in the tar.

    verify used to extract it all into /tmp before any check. The extraction directory here is a
    20 MiB tmpfs, so it can never hold more; the message proves the size check refused it, not a full disk.
    """
    config, data_dir = deep_box
    tmp = tmpfs("20m", at=tmp_path / "T")
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    manifest["members"].append(_entry("data/extra.bin", bytes(10)))
    path = _with_zeros(tmp_path / "share" / "bomb.tar.gz", manifest, members, "data/extra.bin", 50 << 20)
    assert path.stat().st_size < 1 << 20
    free = free_bytes(tmp)
    before = _tree(data_dir.parent)
    started = time.monotonic()
    expected = (
        f"backup {path}: member 'data/extra.bin' is declared 10 bytes in MANIFEST.json, got {50 << 20} in the tar; "
        f"nothing of it was extracted: {ALTERED}"
    )
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == expected
    assert time.monotonic() - started < 5  # the 50 MiB were never inflated
    assert _refused(path, config, data_dir) == expected
    assert free_bytes(tmp) == free and not list(tmp.iterdir())
    assert _tree(data_dir.parent) == before


def test_members_the_extraction_directory_cannot_hold_are_refused_before_extraction(
    deep_box: tuple[Path, Path], tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    """Sizes that agree, but more than /tmp holds: 8 MiB of zeros declared honestly, 20 MiB free."""
    config, data_dir = deep_box
    tmp = tmpfs("20m", at=tmp_path / "T")
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    manifest["members"].append(_entry("data/extra.bin", bytes(8 << 20)))
    path = _with_zeros(tmp_path / "share" / "big.tar.gz", manifest, members, "data/extra.bin", 8 << 20)
    free = free_bytes(tmp)
    declared = sum(m["size"] for m in manifest["members"])
    before = _tree(data_dir.parent)
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == (
        f"backup {path}: its {len(manifest['members'])} files need {declared} bytes ({declared / (1 << 20):.1f} "
        f"MiB) and a 16.0 MiB margin in {tmp} to be checked, got {free} bytes (20.0 MiB) free there; nothing was "
        "extracted: free space there or point TMPDIR at a larger directory"
    )
    assert not list(tmp.iterdir())
    assert _tree(data_dir.parent) == before


def test_an_oversized_tar_header_is_refused_before_it_is_read_into_memory(
    deep_box: tuple[Path, Path], tmp_path: Path
) -> None:
    """tarfile reads a pax header whole into memory: a 64 MiB one (64 KiB compressed) in front of MANIFEST.json."""
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    raw = json.dumps(manifest).encode()
    path = tmp_path / "share" / "pax.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=9, format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(raw)
        info.pax_headers = {"comment": "x" * (64 << 20)}
        tar.addfile(info, io.BytesIO(raw))
        for n, d in members:
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    tracemalloc.start()
    try:
        with pytest.raises(BackupError) as caught:
            archive.verify(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    limit = (16 << 10) + (4 << 20) + 4 * tarfile.RECORDSIZE  # a header's room, the largest manifest, the end
    assert str(caught.value) == (
        f"backup {path}: holds more than its MANIFEST.json declares, got over {limit} bytes of tar after its start; "
        f"nothing more was read: {ALTERED}"
    )
    assert peak < 16 << 20


_NESTED = b"[" * 100_000 + b"]" * 100_000


def _field(index: int, key: str, cast: Callable[[Any], object]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The manifest with one field of members[index] cast to another JSON type (0 is the config, 1 the buffer)."""

    def change(manifest: dict[str, Any]) -> dict[str, Any]:
        members = list(manifest["members"])
        members[index] = {**members[index], key: cast(members[index][key])}
        return {**manifest, "members": members}

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: b"[1, 2]", "MANIFEST.json: must be a JSON object, got an array"),
        (lambda m: b'"x"', "MANIFEST.json: must be a JSON object, got a string"),
        (lambda m: _NESTED, "MANIFEST.json: must be the JSON a backup writes, got arrays or objects nested too deep"),
        (lambda m: {**m, "format": True}, "unknown backup format, got True; expected 1"),
        (
            _field(0, "size", str),
            "MANIFEST.json members[0].size: must be a whole number, got a string",
        ),
        (
            _field(1, "sqlite", int),  # the buffer's true as 1
            "MANIFEST.json members[1].sqlite: must be true or false, got a whole number",
        ),
        (
            lambda m: {**m, "created_at": "2026-12-03T18:12:00"},
            "MANIFEST.json created_at: must carry its UTC offset, got '2026-12-03T18:12:00'",
        ),
    ],
)
def test_a_manifest_of_another_shape_is_refused_without_a_traceback(
    deep_box: tuple[Path, Path],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], dict[str, Any] | bytes],
    problem: str,
) -> None:
    config, data_dir = deep_box
    manifest, members = _genuine(config, data_dir, tmp_path / "share")
    path = _write(tmp_path / "share" / "shape.tar.gz", change(manifest), members)
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    suffix = "" if problem.startswith("unknown") else f"; {ALTERED}"
    assert str(caught.value) == f"backup {path}: {problem}{suffix}"


def test_a_manifest_that_is_a_directory_is_refused(deep_box: tuple[Path, Path], tmp_path: Path) -> None:
    config, data_dir = deep_box
    _, members = _genuine(config, data_dir, tmp_path / "share")
    path = tmp_path / "share" / "dir.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("MANIFEST.json")
        info.type = tarfile.DIRTYPE
        info.mode = 0o700
        tar.addfile(info)
        for n, d in members:
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == f"backup {path}: MANIFEST.json must be a regular file, got a directory; {ALTERED}"


def _backup_with_config(config: Path, data_dir: Path, text: str, share: Path) -> Path:
    """A genuine backup whose config was `text` when it was taken; the box's config is back as it was."""
    current = config.read_text()
    config.write_text(text)
    try:
        return archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=NIGHT)
    finally:
        config.write_text(current)


def test_a_config_that_fails_check_config_is_refused_before_anything_stops(
    deep_box: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data_dir = deep_box
    bad = config.read_text().replace('kind = "weather"', 'kind = "weather"\nrate = -1')
    path = _backup_with_config(config, data_dir, bad, tmp_path / "share")
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(ConfigError) as parsed:
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").unlink()
    errors = parsed.value.errors
    calls = _fake_systemctl(tmp_path, monkeypatch)
    before = _tree(tmp_path)
    assert main(["backup", "restore", str(path), "--service-manager", "systemd", "-c", str(config)]) == 1
    expected = (
        f"backup {path}: config/gateway.toml fails check-config, got {len(errors)} error(s): {'; '.join(errors)}; "
        "nothing was stopped or changed: use another generation, or make this box able to run that config (the "
        "errors say what it lacks) and restore again"
    )
    assert capsys.readouterr().err.strip() == expected
    assert not calls.exists()
    assert _refused(path, config, data_dir) == expected
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("force", [False, True])
def test_a_config_naming_another_data_directory_is_refused_before_anything_stops(
    deep_box: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    force: bool,
) -> None:
    """The restored gateway would run on /srv/edgegw while the data went to this box's data directory."""
    config, data_dir = deep_box
    elsewhere = config.read_text().replace(f'data_dir = "{data_dir}"', 'data_dir = "/srv/edgegw"')
    path = _backup_with_config(config, data_dir, elsewhere, tmp_path / "share")
    calls = _fake_systemctl(tmp_path, monkeypatch)
    before = _tree(tmp_path)
    argv = ["backup", "restore", str(path), "--service-manager", "systemd", "-c", str(config)]
    assert main(argv + ["--force"] * force) == 1
    assert capsys.readouterr().err.strip() == (
        f'backup {path}: config/gateway.toml has gateway.data_dir = "/srv/edgegw", got this restore\'s data '
        f"directory {data_dir} (gateway.data_dir of {config}); the restored gateway would not find the restored "
        f'data: nothing was stopped or changed: set gateway.data_dir = "/srv/edgegw" in {config} and restore again'
    )
    assert not calls.exists()
    assert _tree(tmp_path) == before

"""What a backup must not carry (key files stay on the box) and the modes of what it writes, whatever the umask."""

from __future__ import annotations

import configparser
import os
import secrets
import sqlite3
import stat
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.web.certs import CERT_FILE, KEY_FILE, material, server_context
from gateway.web.config import WebConfig

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)  # 03:12 JST
CONF = Path(__file__).parents[2] / "systemd" / "supervisor-edgegw.conf"
# what the box writes beside its stores and never lets leave it (adapters/locker/pickup.py, gateway/web/certs.py)
KEYS = ("locker-lobby.key", f"web/{KEY_FILE}", f"web/{CERT_FILE}")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def root_shell_umask() -> Iterator[None]:
    """`sudo edgegw backup now` from a root shell: umask 022, not the services' 077."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def keyed_box(box: tuple[Path, Path]) -> tuple[Path, Path]:
    """The 0.1.0 box with a locker store and its code key, the web UI's self-signed pair, a Wi-Fi log public key."""
    config, data_dir = box
    with sqlite3.connect(data_dir / "locker-lobby.db") as db:
        db.execute("CREATE TABLE assignments (id INTEGER PRIMARY KEY, code_hash TEXT)")
        db.execute("INSERT INTO assignments (code_hash) VALUES ('9f86d081884c7d65')")
    db.close()
    (data_dir / "locker-lobby.key").write_bytes(secrets.token_bytes(32))
    material(WebConfig(listen=("127.0.0.1",)), data_dir / "web")  # the real tls-key.pem and tls-cert.pem
    (data_dir / "wifilog").mkdir()
    (data_dir / "wifilog" / "signing-public.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\n")
    return config, data_dir


def _backup(config: Path, data_dir: Path, now: datetime = NIGHT, *, include_secret_key: bool = False) -> Path:
    return archive.create(
        data_dir=data_dir,
        config_path=config,
        gateway_id="fixture-gw",
        out_dir=data_dir / "backups",
        now=now,
        include_secret_key=include_secret_key,
    )


def test_key_files_stay_on_the_box_and_everything_else_is_in_the_backup(keyed_box: tuple[Path, Path]) -> None:
    config, data_dir = keyed_box
    path = _backup(config, data_dir)
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert names == {
        "MANIFEST.json",
        "config/gateway.toml",
        "data/buffer.db",
        "data/config_versions.db",
        "data/locker-lobby.db",  # the store: its codes are hashes, useless without the key that stays
        "data/secrets.enc",
        "data/web/accounts.db",
        "data/web/audit.db",
        "data/web/audit.head",
        "data/wifilog/signing-public.pem",  # public, and rewritten from the secret store's key when it differs
    }
    assert {m.name for m in archive.verify(path).members} == names - {"MANIFEST.json"}
    # include_secret_key brings the secret store's key, and no other key file
    with_key = _backup(config, data_dir, NIGHT + timedelta(days=1), include_secret_key=True)
    with tarfile.open(with_key) as tar:
        assert set(tar.getnames()) == names | {"data/secrets.key"}


def test_a_restore_on_the_same_box_keeps_its_keys(keyed_box: tuple[Path, Path]) -> None:
    config, data_dir = keyed_box
    keys = {k: (data_dir / k).read_bytes() for k in KEYS}
    path = _backup(config, data_dir)
    with sqlite3.connect(data_dir / "locker-lobby.db") as db:
        db.execute("DELETE FROM assignments")
    db.close()
    aside = archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert {k: (data_dir / k).read_bytes() for k in KEYS} == keys
    assert not [k for k in KEYS if (aside / "data" / k).exists()]
    with sqlite3.connect(data_dir / "locker-lobby.db") as db:
        assert db.execute("SELECT code_hash FROM assignments").fetchall() == [("9f86d081884c7d65",)]
    db.close()
    tls = material(WebConfig(listen=("127.0.0.1",)), data_dir / "web", create=False)
    server_context(tls)  # the web UI starts with its own pair


def test_a_replacement_box_keeps_its_own_web_pair_and_the_web_ui_starts(
    keyed_box: tuple[Path, Path], tmp_path: Path
) -> None:
    config, data_dir = keyed_box
    path = _backup(config, data_dir)
    new_box = tmp_path / "replacement"
    new_box.mkdir()
    web = WebConfig(listen=("127.0.0.1",))
    own = material(web, new_box / "web")  # its web UI ran once before the restore
    archive.restore(path, data_dir=new_box, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert not (new_box / "locker-lobby.key").exists()  # the store makes a new one: pending codes no longer verify
    tls = material(web, new_box / "web", create=False)
    assert tls.fingerprint == own.fingerprint
    server_context(tls)


def test_a_backup_from_before_the_rule_brings_its_keys_back_and_the_boxs_go_aside(
    keyed_box: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, data_dir = keyed_box
    monkeypatch.setattr(archive, "KEPT_ON_BOX", ())  # the release that still put key files into backups
    old = _backup(config, data_dir)
    monkeypatch.undo()
    then = {k: (data_dir / k).read_bytes() for k in KEYS}
    (data_dir / "locker-lobby.key").write_bytes(secrets.token_bytes(32))
    now = (data_dir / "locker-lobby.key").read_bytes()
    aside = archive.restore(old, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert {k: (data_dir / k).read_bytes() for k in KEYS} == then  # the store and its key belong together
    assert (aside / "data" / "locker-lobby.key").read_bytes() == now
    assert _mode(data_dir / "locker-lobby.key") == 0o600


def test_the_rule_matches_by_file_name() -> None:
    assert archive.kept_on_box("locker-returns-2.key")
    assert archive.kept_on_box("secrets.key")
    assert not archive.kept_on_box("secrets.key", include_secret_key=True)
    assert archive.kept_on_box("tls-key.pem") and archive.kept_on_box("tls-cert.pem")
    assert not archive.kept_on_box("signing-public.pem")
    assert not archive.kept_on_box("locker-lobby.db")


@pytest.mark.usefixtures("root_shell_umask")
def test_the_share_copy_is_private_under_umask_022(box: tuple[Path, Path], tmp_path: Path) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    mount = tmp_path / "mnt"
    mount.mkdir(mode=0o755)  # the share's mount point: its admin's mode, left alone
    share = mount / "edgegw" / "gw-01"
    copy = archive.copy_verified(path, share)
    assert (_mode(mount), _mode(mount / "edgegw"), _mode(share), _mode(copy)) == (0o755, 0o700, 0o700, 0o600)
    # a `.part` a crashed run of an older release left at 0644 does not pass its mode on through O_TRUNC
    later = _backup(config, data_dir, NIGHT + timedelta(days=1))
    leftover = share / f".{later.name}.part"
    leftover.write_bytes(b"half a file")
    leftover.chmod(0o644)
    assert _mode(archive.copy_verified(later, share)) == 0o600
    assert not leftover.exists()


@pytest.mark.usefixtures("root_shell_umask")
def test_the_backup_and_a_restore_are_private_under_umask_022(box: tuple[Path, Path], tmp_path: Path) -> None:
    config, data_dir = box
    out_dir = tmp_path / "srv" / "backups"
    path = archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT)
    assert (_mode(out_dir.parent), _mode(out_dir), _mode(path)) == (0o700, 0o700, 0o600)
    new_box = tmp_path / "replacement"
    new_box.mkdir(mode=0o700)
    aside = archive.restore(path, data_dir=new_box, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert (_mode(new_box / "web"), _mode(aside)) == (0o700, 0o700)
    restored = [p for p in new_box.rglob("*") if p.is_file() and aside not in p.parents]
    modes = {str(p.relative_to(new_box)): _mode(p) for p in restored}
    assert modes == {
        "buffer.db": 0o640,  # group-readable for the web UI
        "config_versions.db": 0o600,
        "secrets.enc": 0o600,
        "web/accounts.db": 0o600,
        "web/audit.db": 0o600,
        "web/audit.head": 0o600,
    }


def test_every_supervisor_program_runs_with_the_units_umask() -> None:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(CONF)
    assert {s: parser[s].get("umask") for s in parser.sections()} == {
        "program:edgegw": "077",
        "program:edgegw-web": "077",
        "program:edgegw-kiosk": "077",
        "program:edgegw-backup": "077",
    }

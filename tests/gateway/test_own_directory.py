"""A `chown -R` is advised only for a data directory seen to be the gateway's own: never for /var/lib (a typo in
gateway.data_dir), a shared directory holding other files, nor one of another user's (a home), which the advice
would hand to the service user. Closed directories: test_data_dir_not_theirs.py."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.scanner.adapter import STORE_FILE as STATIONS
from gateway import secrets
from gateway.app import STATUS_FILE as APP_STATUS
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import STATUS_FILE as BACKUP_STATUS
from gateway.buffer.location import BUFFER_FILE
from gateway.config import GatewaySection
from gateway.control.config_versions import FILE as CONFIG_VERSIONS
from gateway.fleet.availability import AVAILABILITY_FILE
from gateway.fleet.remote import STATE_FILE as REMOTE_STATE
from gateway.fleet.safemode import STARTS_FILE
from gateway.fleet.service import ALARMS_FILE
from gateway.mail.queue import QUEUE_FILE
from gateway.own_directory import GATEWAY_FILES, gateways_name, gateways_own, instead_of_chown, not_own
from gateway.processing.river import STATE_FILE as RIVER_STATE
from gateway.run_lock import LOCK_FILE as RUN_LOCK
from gateway.uplinks.kintone.uplink import STATE_DIR as KINTONE
from gateway.web.config import WebConfig
from gateway.wifilog.store import STORE_DIR as WIFILOG
from tests.gateway.secret_files import GATEWAY_USER, data_dir, edgegw, gateway_box, needs_root
from tests.gateway.test_secret_data_dir_root import give_to_root

__all__ = ["data_dir"]  # the fixture


# what a data directory holds after a season of running: every file's name, side files and leftovers included
RUN_IN = [
    *("buffer.db", "buffer.db-wal", "buffer.db-shm", "buffer.db.reserve", "buffer.db.corrupt-20250101T000000"),
    *("buffer.db.corrupt-20250101T000000-2-wal", "buffer.db.salvage", "buffer.db.salvaged"),
    *("buffer.db.salvage-wal-reader-wal", "gateway.lock", "secrets.key", "secrets.enc", "secrets.lock"),
    *(".secrets.enc.k3j_9x.tmp", "mail.db", "mail.db-journal", "config_versions.db", "river_state.db"),
    *("status.json", ".status.json.a1b2c3.tmp", "backup-status.json", "remote_config.json", "control.sock"),
    *("web", "backups", ".edgegw-probe-abc123"),
]


# how the gateway names what it puts beside one of its files: SQLite's side files, the reserve, a salvage's files,
# a damaged buffer moved aside, an atomic write's temporary file
DECORATIONS = [
    *("{}", "{}-wal", "{}-shm", "{}-journal", "{}.reserve", "{}.salvage", "{}.salvaged", "{}.salvage-wal-reader"),
    *("{}.corrupt-20250101T000000", "{}.corrupt-20250101T000000-2-wal", ".{}.k3j_9x.tmp"),
]
NAME = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]), min_size=1, max_size=30)


@pytest.mark.parametrize("system", ["/", "/var/lib", "/etc", "/srv", "/usr/local", "/home", "/tmp"])
def test_a_system_directory_is_never_the_gateways(system: str) -> None:
    assert gateways_own(Path(system)) is False


def test_a_link_to_a_system_directory_is_judged_by_what_it_leads_to(tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to("/var/lib")
    assert gateways_own(tmp_path / "data") is False


def test_an_empty_directory_or_one_holding_the_gateways_files_is_its_own(tmp_path: Path) -> None:
    assert gateways_own(tmp_path) is True
    for name in RUN_IN:
        (tmp_path / name).write_bytes(b"")
    assert gateways_own(tmp_path) is True


def test_the_gateways_files_beside_anything_else_are_not_its_own(tmp_path: Path) -> None:
    # a home the gateway once ran in: its buffer beside the user's files does not make the home the gateway's
    (tmp_path / "buffer.db").write_bytes(b"")
    (tmp_path / ".bashrc").write_text("")
    assert gateways_own(tmp_path) is False
    assert instead_of_chown(tmp_path) == not_own(tmp_path)


@needs_root
def test_an_empty_directory_of_another_user_is_not_its_own(tmp_path: Path) -> None:
    # /home/pi before pi's first login: empty, and still pi's
    os.chown(tmp_path, 1000, 1000)
    tmp_path.chmod(0o755)
    assert gateways_own(tmp_path) is False
    assert (instead_of_chown(tmp_path) or "").startswith(
        f"{tmp_path} is not the gateway's own directory, got one owned by {pwd.getpwuid(1000).pw_name}:"
    )


def test_every_file_the_gateway_names_in_its_data_directory_is_known_as_its() -> None:
    # each module's own constant, so a file added to the data directory is not taken for a stranger's
    made = {
        BUFFER_FILE,
        RUN_LOCK,
        secrets.STORE_FILE,
        secrets.KEY_FILE,
        secrets.LOCK_FILE,
        QUEUE_FILE,
        CONFIG_VERSIONS,
        RIVER_STATE,
        APP_STATUS,
        BACKUP_STATUS,
        REMOTE_STATE,
        GatewaySection(id="gw").control_path().name,
        WebConfig().state_path(Path("/d")).name,
        BackupConfig().backup_dir(Path("/d")).name,
        STATIONS,
        WIFILOG,
        KINTONE,
        STARTS_FILE,
        ALARMS_FILE,
        AVAILABILITY_FILE,
    }
    assert made == GATEWAY_FILES


@pytest.mark.parametrize("name", ["locker-lib1.db", "locker-lib1.db-wal", "locker-lib1.key", "locker-east-2.db"])
def test_a_locker_adapters_store_and_key_are_the_gateways(name: str) -> None:
    # adapters/locker: `<data_dir>/locker-<adapter>.db`, its key beside it (PickupStore: path.with_suffix(".key"))
    assert gateways_name(name) is True


def test_a_library_boxs_data_directory_is_its_own(tmp_path: Path) -> None:
    """A box that ran the scanner, a locker, the Wi-Fi log and the fleet: every name at the top is the gateway's,
    so the chown is advised, never \"give the gateway a directory of its own\" (which would strand the backlog)."""
    for name in ("buffer.db", "secrets.key", "secrets.enc", "stations.db", "locker-lib1.db", "locker-lib1.key"):
        (tmp_path / name).write_text("")
    for name in ("starts.json", "alarms.json", "availability.json"):
        (tmp_path / name).write_text("{}")
    for name in ("wifilog", "kintone", "web", "backups"):
        (tmp_path / name).mkdir()
    assert instead_of_chown(tmp_path) is None


@given(st.sampled_from(sorted(GATEWAY_FILES)), st.sampled_from(DECORATIONS))
def test_the_gateways_files_are_known_with_whatever_is_beside_them(own: str, decoration: str) -> None:
    assert gateways_name(decoration.format(own)) is True


@given(
    NAME.filter(
        lambda n: not any(own in n for own in GATEWAY_FILES) and "edgegw-probe" not in n and "locker-" not in n
    ),
    st.sampled_from(DECORATIONS),
)
def test_no_name_of_anothers_passes_for_the_gateways_by_its_ending(base: str, decoration: str) -> None:
    assert gateways_name(decoration.format(base)) is False


def test_a_directory_holding_other_files_only_is_not(tmp_path: Path) -> None:
    (tmp_path / "dpkg").mkdir()
    (tmp_path / "passwd").write_text("")
    assert gateways_own(tmp_path) is False
    assert not_own(tmp_path).startswith(f"{tmp_path} is not the gateway's own directory")


@needs_root
def test_run_on_a_shared_directory_it_may_not_write_advises_a_directory_of_its_own(data_dir: Path) -> None:
    # gateway.data_dir names a directory of root's that holds other things (the parent by mistake): no chown
    config = gateway_box(data_dir)
    shared = data_dir.parent / "shared"
    shared.mkdir()
    (shared / "other-service.conf").write_text("")
    give_to_root(shared, 0o755)
    config.write_text(config.read_text(encoding="utf-8").replace(str(data_dir), str(shared)), encoding="utf-8")
    run = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.endswith(
        f"got Permission denied (EACCES) at {shared}; {os.path.realpath(shared)} is not the gateway's own directory "
        "(it holds other files, or is one of the system's): do not give it to the gateway's user; give the gateway "
        "a directory of its own, e.g. `sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, and set "
        "gateway.data_dir to it"
    ), run.stderr
    assert "chown" not in line
    stored = edgegw("secret", "set", "uplink.password", "--stdin", "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    assert (stored.returncode, "chown" in stored.stderr, "not the gateway's own directory" in stored.stderr) == (
        2,
        False,
        True,
    ), stored.stderr

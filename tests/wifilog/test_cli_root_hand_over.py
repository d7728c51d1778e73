"""`sudo edgegw wifi search | export | certificates` leaves nothing the gateway's user cannot use: what root made
or touched in the web state directory (audit log, its secret store) and in the Wi-Fi log's directory is given to
the data directory's owner, as `edgegw user` and `edgegw audit` do (gateway.accounts.cli.hand_over). Before, a root
inquiry left web/, audit.db, its secrets and wifilog/ root's 0700/0600, and the gateway's user then got
"Permission denied" from `user list`, `wifi certificates` and the web UI (review s20, F1).
The gateway's user is played by uid 65534 with a real switch of user (setpriv)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.secret_files import GATEWAY_USER, data_dir, edgegw, needs_root, run_as, write_config

__all__ = ["data_dir"]  # the fixture
pytestmark = needs_root

MAC = "aa:bb:cc:01:02:03"
MAKE_LOG = """
from datetime import UTC, datetime
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
store = WifiLogStore(data)
store.apply([SessionEvent(nas="id:ap1", session_id="s1", kind=EventKind.START,
                          time=datetime(2026, 1, 15, 10, tzinfo=UTC), client_mac="aa:bb:cc:01:02:03")])
store.publish_public_key()
store.close()
"""
COMMANDS = {
    "certificates": ("certificates",),
    "search": ("search", "--reference", "R-1", "--mac", MAC),
    "export": ("export", "--reference", "R-1", "--mac", MAC),
}


def wifi_box(data_dir: Path) -> Path:
    """The config of a gateway whose data directory holds a Wi-Fi log with one session, all of it the gateway's."""
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    made = run_as(GATEWAY_USER, data_dir, MAKE_LOG)
    assert made.returncode == 0, made.stderr
    return config


def roots(data_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.lstat().st_uid != GATEWAY_USER)


def inquiry(command: str, config: Path, uid: int | None = None) -> tuple[int, str]:
    extra = ("--out", str(config.parent / f"{command}-{uid}.csv")) if command == "export" else ()
    r = edgegw("wifi", *COMMANDS[command], *extra, "-c", str(config), uid=uid)
    return r.returncode, r.stderr


@pytest.mark.parametrize("command", ["export", "search"])
def test_a_root_inquiry_leaves_every_file_to_the_gateways_user(data_dir: Path, command: str) -> None:
    config = wifi_box(data_dir)
    assert inquiry(command, config) == (0, "")
    assert roots(data_dir) == []
    # the gateway's user goes on using the log, the audit log and the accounts after root's inquiry
    assert inquiry("search", config, uid=GATEWAY_USER) == (0, "")
    assert inquiry("certificates", config, uid=GATEWAY_USER) == (0, "")
    users = edgegw("user", "list", "-c", str(config), uid=GATEWAY_USER)
    assert users.returncode == 0, users.stderr


def test_a_root_inquiry_into_a_state_directory_the_gateways_user_made_leaves_it_theirs(data_dir: Path) -> None:
    # web/ and the audit log exist already, the gateway's: root's append rewrote audit.head
    config = wifi_box(data_dir)
    assert inquiry("search", config, uid=GATEWAY_USER) == (0, "")
    assert inquiry("search", config) == (0, "")
    assert roots(data_dir) == []
    verify = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_root_inquiry_on_a_box_without_a_wifi_log_makes_nothing(data_dir: Path, command: str) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    code, _ = inquiry(command, config)
    assert list(data_dir.iterdir()) == []
    assert code == 1

"""A data directory the gateway's user may not write is given to it (`chown -hR`) only when it is seen to be the
gateway's own: never a home (Debian 12 makes them 0700), nor /etc/ssl/private (root:ssl-cert 0710), nor one of
root's the gateway's user cannot list.

Before, a directory closed to the gateway's user counted as "made private for it", and `edgegw run`,
`check-config` and `edgegw secret set` told the technician to hand a home or the TLS private keys to the service
account. The gateway's user is played by uid 65534 with a real switch of user (setpriv).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.secret_files import GATEWAY_USER, data_dir, edgegw, gateway_box, needs_root, write_config
from tests.gateway.test_secret_data_dir_root import give_to_root

__all__ = ["data_dir"]  # the fixture
pytestmark = needs_root
OTHER_USER = 1000  # the box's first login user (pi on Raspberry Pi OS)
SSL_CERT_GROUP = 111  # any group but root's and the gateway's
OWN_DIR = (
    "give the gateway a directory of its own, e.g. `sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, "
    "and set gateway.data_dir to it"
)


def names(uid: int, gid: int) -> str:
    return f"{pwd.getpwuid(uid).pw_name}:{grp.getgrgid(gid).gr_name}"


def someone_elses(path: Path, uid: int, gid: int, mode: int) -> str:
    return (
        f"{path} is not the gateway's own directory, got one owned by {names(uid, gid)} (mode {mode:04o}), neither "
        f"root nor the gateway's user: do not give it to the gateway's user; {OWN_DIR}"
    )


def unseen(path: Path, uid: int, gid: int, mode: int) -> str:
    return (
        f"user nobody may not see what {path} holds, got a directory owned by {names(uid, gid)} (mode {mode:04o}): "
        f"check who owns it and what it holds (`sudo ls -la {path}`); only if it holds nothing but the gateway's "
        f"files (buffer.db, secrets.key, secrets.enc and the like) give it and all in it to the gateway's user, "
        f"else {OWN_DIR}"
    )


@pytest.fixture
def top() -> Iterator[Path]:
    # outside pytest's own temporary tree, which only root may enter
    with tempfile.TemporaryDirectory(prefix="edgegw-notheirs-") as name:
        Path(name).chmod(0o755)
        yield Path(name)


def private(directory: Path, uid: int, gid: int, mode: int) -> Path:
    """`directory` made with someone's keys in it, then given to uid:gid with `mode`."""
    directory.mkdir()
    (directory / ".ssh").mkdir()
    (directory / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA pi\n")
    (directory / "ssl-cert-snakeoil.key").write_text("KEY\n")
    os.chown(directory, uid, gid)
    directory.chmod(mode)
    return directory


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr).strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_home_of_another_user_is_never_given_to_the_gateway(top: Path, command: str) -> None:
    home = private(top / "home-pi", OTHER_USER, OTHER_USER, 0o700)
    config = write_config(top / "gw.toml", home)
    done = edgegw(command, "-c", str(config), uid=GATEWAY_USER)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "chown" not in done.stdout + done.stderr
    assert last_line(done).endswith(
        f"got Permission denied (EACCES) at {home}; {someone_elses(home, OTHER_USER, OTHER_USER, 0o700)}"
    ), done.stderr


@pytest.mark.parametrize(
    ("command", "ending"),
    [
        (("run",), "got Permission denied (EACCES) at {d}; {advice}"),
        (("check-config",), "got Permission denied (EACCES) at {d}; {advice}"),
        (
            ("secret", "set", "uplink.password", "--stdin"),
            "{d}: not accessible to user nobody, got a directory owned by root:avahi (mode 0710); {advice}",
        ),
    ],
    ids=["run", "check-config", "secret-set"],
)
def test_a_private_directory_of_roots_the_gateway_cannot_list_is_not_given_to_it(
    top: Path, command: tuple[str, ...], ending: str
) -> None:
    # /etc/ssl/private: root:ssl-cert 0710, the box's TLS private keys in it
    keys = private(top / "ssl-private", 0, SSL_CERT_GROUP, 0o710)
    config = write_config(top / "gw.toml", keys)
    done = edgegw(*command, "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "chown" not in done.stdout + done.stderr
    advice = unseen(keys, 0, SSL_CERT_GROUP, 0o710)
    assert last_line(done).endswith(ending.format(d=keys, advice=advice)), done.stderr


def test_the_gateways_own_directory_left_roots_and_closed_is_not_chowned_blind(data_dir: Path) -> None:
    # a `sudo install -d -m 0700` without -o: what it holds cannot be seen from here, so the technician looks
    config = gateway_box(data_dir)
    give_to_root(data_dir, 0o700)
    for command in ("run", "check-config"):
        done = edgegw(command, "-c", str(config), uid=GATEWAY_USER)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert last_line(done).endswith(
            f"got Permission denied (EACCES) at {data_dir}; {unseen(data_dir, 0, 0, 0o700)}"
        ), done.stderr
        assert "chown" not in done.stdout + done.stderr


def test_a_listable_directory_holding_a_buffer_among_other_files_is_not_given(top: Path) -> None:
    # a home the gateway once ran in: buffer.db beside the user's files
    home = private(top / "home-pi", 0, 0, 0o755)
    (home / "buffer.db").write_bytes(b"")
    config = write_config(top / "gw.toml", home)
    done = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert done.returncode == 2, done.stderr
    assert "chown" not in done.stderr
    assert "is not the gateway's own directory (it holds other files, or is one of the system's)" in done.stderr

"""The chown the secret store's file checks tell a technician to run gives away no file a link points to.

The gateway's user owns the data directory: between the message and the technician's `sudo`, it can put a link
where the key (or the store, or the lock) was, to any file root owns. `sudo chown <user>:<group> <path>` followed
that link and handed the file over (a root-owned 0644 file such as /etc/passwd, given to the gateway's user, is
root for it); `chown -h` changes the link itself. A key reached through a link when the message is made gets no
chown at all, from any user. The gateway's user is played by uid 65534 with a real switch of user (setpriv).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.gateway.secret_files import (
    GATEWAY_USER,
    data_dir,
    edgegw,
    gateway_box,
    needs_root,
    owner,
    run_as,
    write_config,
)
from tests.gateway.test_secret_key_file_mode import GATEWAY

__all__ = ["data_dir"]  # the fixture, shared with the owner tests
pytestmark = needs_root
USER = GATEWAY.partition(":")[0]


def advised(stderr: str) -> str:
    """The command in the message's last backquotes."""
    return stderr.rpartition("run `")[2].partition("`")[0]


def swap_in_link(path: Path, victim: Path) -> None:
    """What the gateway's user may do in its own directory: the file renamed away, a link put in its place."""
    path.rename(path.with_name(f"{path.name}.aside"))
    path.symlink_to(victim)


@pytest.fixture
def victim(data_dir: Path) -> Path:
    """A file root owns outside the data directory, readable by all (as /etc/passwd is)."""
    path = data_dir.parent / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    path.chmod(0o644)
    return path


@pytest.mark.parametrize("name", ["secrets.key", "secrets.enc", "secrets.lock"])
def test_the_chown_for_a_file_left_root_s_does_not_follow_a_link_swapped_in(
    data_dir: Path, victim: Path, name: str
) -> None:
    config = gateway_box(data_dir)
    os.chown(data_dir / name, 0, 0)
    refused = edgegw("secret", "set", "b", "--stdin", "-c", str(config), stdin="2\n", uid=GATEWAY_USER)
    assert refused.returncode == 2, refused.stderr
    swap_in_link(data_dir / name, victim)
    subprocess.run(advised(refused.stderr).removeprefix("sudo ").split(), check=True)  # as root already
    assert owner(victim) == (0, 0, 0o644)


def test_the_chown_for_a_key_root_copied_does_not_follow_a_link_swapped_in(data_dir: Path, victim: Path) -> None:
    config = gateway_box(data_dir)
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)  # `sudo cp secrets.key /var/lib/edgegw/` under a 022 umask
    key.chmod(0o644)
    refused = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert refused.returncode == 2, refused.stderr
    swap_in_link(key, victim)
    chown = advised(refused.stderr).partition(" && ")[0]  # the chmod after it cannot give anything away
    subprocess.run(chown.removeprefix("sudo ").split(), check=True)
    assert owner(victim)[:2] == (0, 0)


def test_a_key_reached_through_a_link_that_the_gateway_may_not_tighten_is_given_no_chown(
    data_dir: Path, victim: Path
) -> None:
    # the link there already when the message is made: `chown -h` would change the link and fix nothing, a plain
    # chown would give the file it points to away
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    key = data_dir / "secrets.key"
    victim.write_bytes(key.read_bytes())  # root's, 0644: readable by the gateway, not changeable by it
    key.unlink()
    key.symlink_to(victim)
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    refused = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert (refused.returncode, refused.stderr) == (
        2,
        f"secret list: {key}: readable or writable by others than its owner, so anyone on this box could decrypt "
        f"{data_dir / 'secrets.enc'}, got mode 0644 on a file reached through a link, which user {USER} may not "
        f"change (Operation not permitted); put a copy of the key there instead of the link, with mode 0600 and "
        f"owned by {GATEWAY}\n",
    )
    assert owner(victim) == (0, 0, 0o644)


def test_the_chmod_after_the_chown_does_not_follow_a_link_swapped_in(data_dir: Path, victim: Path) -> None:
    # chmod has no -h: run as the root's-key's rightful owner (the gateway's user), it cannot change root's file
    config = gateway_box(data_dir)
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    key.chmod(0o644)
    refused = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert refused.returncode == 2, refused.stderr
    chmod = advised(refused.stderr).partition(" && ")[2]
    assert chmod == f"sudo -u {USER} chmod 600 {key}"
    swap_in_link(key, victim)
    # what `sudo -u <user> chmod` does, with runuser (no sudo on the test box)
    user, _, command = chmod.removeprefix("sudo -u ").partition(" ")
    subprocess.run(["runuser", "-u", user, "--", *command.split()], check=False, capture_output=True)
    assert owner(victim) == (0, 0, 0o644)

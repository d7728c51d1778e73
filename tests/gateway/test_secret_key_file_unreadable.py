"""A file of the secret store that the gateway's user may not read, left root's at 0600 (an older release's crash
between making the key and giving it away, `sudo cp -p` of a backup): one line saying the exact chown, from every
way in.

`edgegw run` stopped with "Please report this traceback" (PermissionError), and `edgegw secret` and `edgegw
pseudonym` said "run it as the gateway's user (or root)" to the gateway's user itself. The gateway's user is
played by uid 65534 with a real switch of user (setpriv).
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
    every_store_command,
    gateway_box,
    needs_root,
    owner,
)
from tests.gateway.test_secret_key_file_mode import GATEWAY, OTHER_USER

__all__ = ["data_dir"]  # the fixture, shared with the owner tests
pytestmark = needs_root
USER = GATEWAY.partition(":")[0]


def not_readable(path: Path, by: str = USER, how: str = "readable") -> str:
    return (
        f"{path}: not {how} by user {by}, got a file owned by root:root (mode 0600); give it to the owner of "
        f"{path.parent}: run `sudo chown -h {GATEWAY} {path}`"
    )


def test_edgegw_run_says_the_chown_for_a_key_left_root_s(data_dir: Path) -> None:
    config = gateway_box(data_dir)
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    run = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert (run.returncode, run.stderr) == (2, f"{not_readable(key)}\n")
    assert owner(key) == (0, 0, 0o600)  # left for the technician, as the message says


@every_store_command
def test_every_command_says_the_chown_for_a_key_left_root_s(
    data_dir: Path, command: tuple[str, ...], what: str
) -> None:
    config = gateway_box(data_dir)
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    run = edgegw(*command, "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    assert (run.returncode, run.stderr) == (2, f"{what}: {not_readable(key)}\n")


@pytest.mark.parametrize("name", ["secrets.enc", "secrets.lock"])
def test_a_store_or_lock_left_root_s_is_named_with_its_chown(data_dir: Path, name: str) -> None:
    # an older release's `sudo edgegw pseudonym rotate` left secrets.enc root's 0600; its crash, secrets.lock
    config = gateway_box(data_dir)
    os.chown(data_dir / name, 0, 0)
    run = edgegw("secret", "set", "uplink.password", "--stdin", "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    how = "writable" if name == "secrets.lock" else "readable"  # the lock is opened for writing
    assert (run.returncode, run.stderr) == (2, f"secret set: {not_readable(data_dir / name, how=how)}\n")


def test_the_chown_fixes_it(data_dir: Path) -> None:
    config = gateway_box(data_dir)
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    refused = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert refused.returncode == 2, refused.stderr
    fix = refused.stderr.rpartition("run `")[2].removesuffix("`\n")
    subprocess.run(fix.removeprefix("sudo ").split(), check=True)  # as root already
    listed = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "orion_token\n", "")


def test_another_user_is_told_the_chown_and_who_to_run_as(data_dir: Path) -> None:
    config = gateway_box(data_dir)
    data_dir.chmod(0o755)
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    run = edgegw("secret", "list", "-c", str(config), uid=OTHER_USER)
    assert (run.returncode, run.stderr) == (
        2,
        f"secret list: {not_readable(key, by=str(OTHER_USER))}, then run this command as {USER} (or root)\n",
    )


def test_a_user_who_cannot_enter_the_data_directory_is_told_whom_to_run_as(data_dir: Path) -> None:
    # guard: a private data directory hides who owns what in it; the message stays the one it was
    config = gateway_box(data_dir)
    os.chown(data_dir / "secrets.key", 0, 0)
    run = edgegw("secret", "list", "-c", str(config), uid=OTHER_USER)
    assert (run.returncode, run.stderr) == (
        1,
        f"secret list: cannot use the secret store in {data_dir}, got Permission denied; "
        "run it as the gateway's user (or root)\n",
    )


def test_a_key_reached_through_a_link_is_not_given_a_chown(data_dir: Path) -> None:
    # a chown follows the link: the gateway's user could point it at any file root owns (/etc/shadow)
    config = gateway_box(data_dir)
    key, elsewhere = data_dir / "secrets.key", data_dir.parent / "elsewhere.key"
    key.rename(elsewhere)
    os.chown(elsewhere, 0, 0)
    key.symlink_to(elsewhere)
    run = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert (run.returncode, run.stderr) == (
        2,
        f"secret list: {key}: not readable by user {USER}, got a file owned by root:root (mode 0600) reached "
        f"through a link; put a copy of the file there instead of the link, with mode 0600 and owned by {GATEWAY}\n",
    )
    assert owner(elsewhere) == (0, 0, 0o600)

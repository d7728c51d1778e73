"""A data directory that is root's (made by `sudo mkdir`, or by a root `edgegw secret set` on a new box) while the
gateway runs as its own user: one line naming the directory, its owner and the chown that gives it back, from every
way into the store. One the gateway's user may not list (0700) gets no chown: what it holds cannot be seen from
here, so the line says how to look first (a home or /etc/ssl/private is closed too; test_data_dir_not_theirs.py).

Before, every way in raised a bare PermissionError (a traceback for any caller without its own handler), and
`edgegw secret` and `edgegw pseudonym` told the gateway's user to "run it as the gateway's user (or root)". The
gateway's user is played by uid 65534 with a real switch of user (setpriv).
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
    run_as,
)
from tests.gateway.test_secret_key_file_mode import GATEWAY

__all__ = ["data_dir"]  # the fixture, shared with the owner tests
pytestmark = needs_root
USER = GATEWAY.partition(":")[0]


def roots(data: Path, how: str = "writable by", mode: int = 0o755) -> str:
    return (
        f"{data}: not {how} user {USER}, got a directory owned by root:root (mode {mode:04o}); give it to the "
        f"gateway's user: run `sudo chown -hR {GATEWAY} {os.path.realpath(data)}` if the gateway runs as {USER}, "
        "else with its user and group"
    )


def closed(data: Path) -> str:
    """The refusal for a directory of root's that the gateway's user may not list: what it holds cannot be seen,
    so no chown -R is said (see test_data_dir_not_theirs.py)."""
    return (
        f"{data}: not accessible to user {USER}, got a directory owned by root:root (mode 0700); user {USER} may "
        f"not see what {data} holds, got a directory owned by root:root (mode 0700): check who owns it and what "
        f"it holds (`sudo ls -la {data}`); only if it holds nothing but the gateway's files (buffer.db, "
        "secrets.key, secrets.enc and the like) give it and all in it to the gateway's user, else give the gateway "
        "a directory of its own, e.g. `sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, and set "
        "gateway.data_dir to it"
    )


def give_to_root(data: Path, mode: int = 0o700) -> None:
    """The directory root's, as `sudo mkdir` makes it; what is in it as root's `edgegw secret set` makes it."""
    for path in (data, *data.iterdir()):
        os.chown(path, 0, 0)
    data.chmod(mode)


EVERY_WAY = """
from gateway.errors import ConfigError
from tests.gateway.secret_files import ways_into
for name, use in ways_into(SecretStore(data)).items():
    try:
        use()
    except ConfigError as exc:
        print(name, exc.errors)
"""


@pytest.mark.parametrize("mode", [0o755, 0o700], ids=["0755", "0700"])
def test_every_way_into_the_store_names_the_directory_and_its_chown(data_dir: Path, mode: int) -> None:
    gateway_box(data_dir)
    give_to_root(data_dir, mode)
    done = run_as(GATEWAY_USER, data_dir, EVERY_WAY)
    assert done.returncode == 0, done.stderr
    ways = ["names", "migrate", "schema_version", "get", "set", "get_or_create"]
    said = roots(data_dir) if mode == 0o755 else closed(data_dir)
    assert done.stdout == "".join(f"{name} {[said]!r}\n" for name in ways)


@every_store_command
def test_every_command_names_the_directory_and_its_chown(data_dir: Path, command: tuple[str, ...], what: str) -> None:
    config = gateway_box(data_dir)
    give_to_root(data_dir, 0o755)
    run = edgegw(*command, "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    assert (run.returncode, run.stderr) == (2, f"{what}: {roots(data_dir)}\n")
    give_to_root(data_dir, 0o700)
    run = edgegw(*command, "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    assert (run.returncode, run.stderr) == (2, f"{what}: {closed(data_dir)}\n")


def test_a_directory_the_gateway_may_enter_but_not_write_is_named_too(data_dir: Path) -> None:
    # root's and 0755: the key in it root's 0600, unreadable; chowning the key alone would leave no lock to take
    config = gateway_box(data_dir)
    give_to_root(data_dir, 0o755)
    run = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert (run.returncode, run.stderr) == (2, f"secret list: {roots(data_dir)}\n")


def test_the_command_it_says_gives_the_gateway_its_store_back(data_dir: Path) -> None:
    config = gateway_box(data_dir)
    victim = data_dir.parent / "passwd"  # root's, as /etc/passwd is: a link in the directory must not give it away
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    # named as what an atomic write leaves, so the directory still holds nothing but the gateway's files
    (data_dir / ".secrets.key.x1y2z3.tmp").symlink_to(victim)
    give_to_root(data_dir, 0o755)
    refused = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert refused.returncode == 2, refused.stderr
    fix = refused.stderr.partition("run `")[2].partition("`")[0]
    subprocess.run(fix.removeprefix("sudo ").split(), check=True)  # as root already
    changed = edgegw("secret", "set", "b", "--stdin", "-c", str(config), stdin="2\n", uid=GATEWAY_USER)
    assert changed.returncode == 0, changed.stderr
    listed = edgegw("secret", "list", "-c", str(config), uid=GATEWAY_USER)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "b\norion_token\n", "")
    assert (victim.stat().st_uid, victim.stat().st_gid) == (0, 0)


def test_root_is_not_refused_its_own_directory(data_dir: Path) -> None:
    # guard: `sudo edgegw secret list` on such a box still works
    config = gateway_box(data_dir)
    give_to_root(data_dir)
    listed = edgegw("secret", "list", "-c", str(config))
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "orion_token\n", "")

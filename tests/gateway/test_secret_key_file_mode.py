"""A `secrets.key` that others than its owner may read (restored with `sudo cp`, copied with a 022 umask) is never
used as it is: anyone on the box could decrypt every secret with it.

Like ssh with an unprotected private key, but a box in the field must keep running: a process that may change the
file's mode makes it 0600 and says so in a WARNING naming the file and the mode it had; one that may not refuses
the store, saying the exact command to run. The mode of `secrets.enc` is not looked at: it is encrypted, readable
by nobody without the key, and written 0600 at every change.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from tests.gateway.secret_files import GATEWAY_USER, data_dir, needs_root, owner, run_as, write_config

__all__ = ["data_dir"]  # the fixture, shared with the owner tests
OTHER_USER = 1234  # a technician's own account, neither root nor the gateway's user
GATEWAY = f"{pwd.getpwuid(GATEWAY_USER).pw_name}:{grp.getgrgid(GATEWAY_USER).gr_name}"
USER = pwd.getpwuid(GATEWAY_USER).pw_name  # whom the chmod advice runs as


def test_a_key_readable_by_others_is_made_0600_by_its_owner_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(tmp_path).set("a", "1")
    key = tmp_path / "secrets.key"
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="gateway.secrets"):
        assert SecretStore(tmp_path).get("a") == "1"
    assert owner(key) == (os.geteuid(), os.getegid(), 0o600)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"{key}: was readable or writable by others than its owner (mode 0644), so anyone on this box could decrypt "
            f"{tmp_path / 'secrets.enc'}; changed to 0600",
        )
    ]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666])
def test_any_group_or_other_bit_is_taken_away(tmp_path: Path, mode: int) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.key").chmod(mode)
    assert SecretStore(tmp_path).names() == ["a"]
    assert owner(tmp_path / "secrets.key")[2] == 0o600


def test_a_key_only_its_owner_may_read_is_left_as_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.key").chmod(0o400)  # made read-only on purpose: not widened to 0600
    with caplog.at_level(logging.WARNING, logger="gateway.secrets"):
        assert SecretStore(tmp_path).get("a") == "1"
    assert owner(tmp_path / "secrets.key")[2] == 0o400
    assert caplog.records == []


@needs_root
def test_the_gateway_tightens_its_own_key_and_keeps_running(data_dir: Path) -> None:
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    key = data_dir / "secrets.key"
    key.chmod(0o644)
    read = run_as(GATEWAY_USER, data_dir, 'print(SecretStore(data).get("a"))')
    assert (read.returncode, read.stdout) == (0, "1\n"), read.stderr
    assert owner(key) == (GATEWAY_USER, GATEWAY_USER, 0o600)
    assert f"{key}: was readable or writable by others than its owner (mode 0644)" in read.stderr


REFUSED = """
from gateway.errors import ConfigError
try:
    SecretStore(data).get("a")
except ConfigError as exc:
    print(exc.errors)
"""


@needs_root
def test_the_gateway_refuses_a_key_root_copied_and_says_the_chown_and_chmod(data_dir: Path) -> None:
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)  # `sudo cp secrets.key /var/lib/edgegw/` under a 022 umask
    key.chmod(0o644)
    read = run_as(GATEWAY_USER, data_dir, REFUSED)
    assert read.returncode == 0, read.stderr
    user = pwd.getpwuid(GATEWAY_USER).pw_name
    assert (
        read.stdout
        == repr(
            [
                f"{key}: readable or writable by others than its owner, so anyone on this box could decrypt {data_dir / 'secrets.enc'}, "
                f"got mode 0644, which user {user} may not change (Operation not permitted); "
                f"run `sudo chown -h {GATEWAY} {key} && sudo -u {USER} chmod 600 {key}`"
            ]
        )
        + "\n"
    )
    assert owner(key) == (0, 0, 0o644)  # left for the technician, as the message says


@needs_root
def test_another_user_is_refused_a_key_the_gateway_owns_and_told_the_chmod(data_dir: Path) -> None:
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    data_dir.chmod(0o755)
    key = data_dir / "secrets.key"
    key.chmod(0o644)
    read = run_as(OTHER_USER, data_dir, REFUSED)
    assert read.returncode == 0, read.stderr
    assert (
        read.stdout
        == repr(
            [
                f"{key}: readable or writable by others than its owner, so anyone on this box could decrypt {data_dir / 'secrets.enc'}, "
                f"got mode 0644, which user {OTHER_USER} may not change (Operation not permitted); "
                f"run `sudo -u {USER} chmod 600 {key}`"
            ]
        )
        + "\n"
    )
    assert owner(key) == (GATEWAY_USER, GATEWAY_USER, 0o644)


@needs_root
def test_root_tightening_a_key_it_copied_gives_it_to_the_gateway(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # made 0600 and left root's, the key would lock the gateway out of the store it could read before
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="gateway.secrets"):
        assert SecretStore(data_dir).names() == ["a"]  # `sudo edgegw secret list`
    assert owner(key) == (GATEWAY_USER, GATEWAY_USER, 0o600)
    assert [r.getMessage() for r in caplog.records] == [
        f"{key}: was readable or writable by others than its owner (mode 0644), so anyone on this box could decrypt "
        f"{data_dir / 'secrets.enc'}; changed to 0600 and given to {GATEWAY}, the owner of {data_dir}"
    ]
    read = run_as(GATEWAY_USER, data_dir, 'print(SecretStore(data).get("a"))')
    assert (read.returncode, read.stdout) == (0, "1\n"), read.stderr


@needs_root
def test_edgegw_run_refuses_a_key_it_may_not_tighten_in_one_line(data_dir: Path) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    key = data_dir / "secrets.key"
    os.chown(key, 0, 0)
    key.chmod(0o644)
    run = run_as(
        GATEWAY_USER, data_dir, f"from gateway.cli import main\nraise SystemExit(main(['run', '-c', {str(config)!r}]))"
    )
    user = pwd.getpwuid(GATEWAY_USER).pw_name
    assert (run.returncode, run.stderr) == (
        2,
        f"{key}: readable or writable by others than its owner, so anyone on this box could decrypt {data_dir / 'secrets.enc'}, "
        f"got mode 0644, which user {user} may not change (Operation not permitted); "
        f"run `sudo chown -h {GATEWAY} {key} && sudo -u {USER} chmod 600 {key}`\n",
    )


@needs_root
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_root_changes_no_key_it_reaches_through_a_link(data_dir: Path, link: str) -> None:
    # the gateway's user can put a link to any file (/etc/shadow) where the key goes: root must not give it away
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("a", "1")')
    assert made.returncode == 0, made.stderr
    key, elsewhere = data_dir / "secrets.key", data_dir.parent / "elsewhere"
    elsewhere.write_bytes(key.read_bytes())
    elsewhere.chmod(0o644)
    key.unlink()
    if link == "symbolic":
        key.symlink_to(elsewhere)
    else:
        key.hardlink_to(elsewhere)
    with pytest.raises(ConfigError) as info:
        SecretStore(data_dir).names()
    # refused before it is read: the data directory is the gateway's user's, who could have put the link there
    got = (
        f"a symbolic link to {elsewhere}" if link == "symbolic" else "a file with 2 names (a hard link to another file)"
    )
    assert info.value.errors == [
        f"{key}: not a secret store key, got {got}; root follows no link nor uses another file's name in {data_dir}, "
        f"which uid {GATEWAY_USER} may change, and nothing was read or written through it: move it aside and put back "
        f"the key file that belongs to {data_dir / 'secrets.enc'} (kept apart from backups)"
    ]
    assert owner(elsewhere) == (0, 0, 0o644)

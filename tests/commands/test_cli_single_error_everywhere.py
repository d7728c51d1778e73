"""Every `edgegw` subcommand refused by one configuration problem says it in one line, as `run` does.

`profile validate`, `web`, `mail`, `audit`, `user`, `pseudonym` and `locker` had their own copies of the old
"<file>: 1 error(s)" with the problem indented on a second line, which a journal or a technician's terminal
showed apart from what failed. Several problems keep the count and the list. Each command runs as the
installed `edgegw` does (a subprocess), so its real stderr and exit code are what is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.secrets import SecretStore
from tests.commands.test_cli_config_errors import write_config

ROOT = Path(__file__).resolve().parents[2]
PROFILE_CASES = ROOT / "tests" / "profiles" / "cases"

BAD_ID = 'gateway.id: must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit, got "Bad ID"'
UNKNOWN_KEY = "gateway.colour: unknown key; valid keys here: control_socket, data_dir, id, log_format, log_level, status_interval_s"

# argv before -c, what the command puts before the file, and the exit code it had before (which stays)
COMMANDS = {
    "web": (["web"], "", 2),
    "web fingerprint": (["web", "fingerprint"], "", 2),
    "mail test": (["mail", "test", "--to", "tech@example.com"], "mail test: ", 2),
    "audit verify": (["audit", "verify"], "audit verify: ", 2),
    "audit show": (["audit", "show"], "audit show: ", 2),
    "user list": (["user", "list"], "user list: ", 2),
    "pseudonym list": (["pseudonym", "list"], "pseudonym list: ", 2),
    "pseudonym rotate": (["pseudonym", "rotate"], "pseudonym rotate: ", 2),
    "locker status": (["locker", "status"], "locker status: ", 2),
}


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEGW_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_one_problem_is_one_line_led_by_the_command_and_the_file(name: str, tmp_path: Path) -> None:
    argv, lead, code = COMMANDS[name]
    config = write_config(tmp_path, gateway_id="Bad ID")
    run = edgegw(*argv, "-c", str(config))
    assert (run.returncode, run.stdout, run.stderr) == (code, "", f"{lead}{config}: {BAD_ID}\n")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_missing_file_is_one_line(name: str, tmp_path: Path) -> None:
    argv, lead, code = COMMANDS[name]
    missing = tmp_path / "none.toml"
    run = edgegw(*argv, "-c", str(missing))
    assert (run.returncode, run.stderr) == (code, f"{lead}{missing}: file not found; create it or pass --config\n")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_two_problems_keep_the_count_and_the_list(name: str, tmp_path: Path) -> None:
    argv, lead, code = COMMANDS[name]
    config = write_config(tmp_path, gateway_id="Bad ID", extra="colour = 1")
    run = edgegw(*argv, "-c", str(config))
    assert (run.returncode, run.stdout) == (code, "")
    assert run.stderr == f"{lead}{config}: 2 error(s)\n  {BAD_ID}\n  {UNKNOWN_KEY}\n"


def test_pseudonym_says_a_key_file_that_does_not_fit_in_one_line(tmp_path: Path) -> None:
    """A problem without a file of its own (the secret store's key) names its path itself: no "configuration:"."""
    config = write_config(tmp_path)
    data = tmp_path / "data"
    SecretStore(data).set("orion_token", "tok-1")
    (data / "secrets.key").write_bytes(b"not-a-fernet-key\n")
    run = edgegw("pseudonym", "list", "-c", str(config))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        f"pseudonym list: {data / 'secrets.key'}: not a secret store key, got 16 bytes (expected 32 url-safe "
        f"base64-encoded bytes, 44 characters); put back the key file that belongs to {data / 'secrets.enc'} "
        "(kept apart from backups)\n"
    )


def test_profile_validate_one_problem_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    run = edgegw("profile", "validate", str(missing))
    assert (run.returncode, run.stdout, run.stderr) == (2, "", f"{missing}: file not found\n")


def test_profile_show_one_problem_is_one_line(tmp_path: Path) -> None:
    run = edgegw("profile", "show", "acme/none", "--profiles-dir", str(tmp_path))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        f'acme/none: no such profile, got "acme/none"; searched {tmp_path}, /etc/edgegw/profiles, '
        f"{ROOT / 'firmware_profiles'}; `edgegw profile list` shows the known names\n"
    )


def test_profile_validate_several_problems_keep_the_count_and_the_list() -> None:
    path = PROFILE_CASES / "address_notation" / "profile.toml"
    expected = (PROFILE_CASES / "address_notation" / "expected.txt").read_text().splitlines()
    assert len(expected) > 1
    run = edgegw("profile", "validate", str(path))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"{path}: {len(expected)} error(s)\n" + "".join(f"  {line}\n" for line in expected)

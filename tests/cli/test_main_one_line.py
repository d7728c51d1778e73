"""`edgegw`'s main and argument parsing: a reader gone, an option before the subcommand, numbers out of range.

Each of these ended in a traceback (or a wrong answer) before: `status | head -1` a BrokenPipeError, `-c FILE status`
"invalid choice", `--limit 99999999999999999999` SQLite's OverflowError, `--id` that many a TypeError, `config sign
--serial -5` a bundle every box refuses, `commission --timeout inf` an OverflowError.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.buffer.location import BUFFER_FILE
from gateway.buffer.schema import connect
from tests.cli.edgegw import ROOT, config, edgegw, env


def with_reader_gone(*args: str) -> subprocess.CompletedProcess[bytes]:
    """`edgegw args | true`, the reader gone before the first write: always, not 4 runs in 5."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "command",
    [("version",), ("secret", "list"), ("check-config",)],
    ids=["version", "secret-list", "check-config"],
)
def test_a_reader_gone_ends_quietly_with_the_sigpipe_code(tmp_path: Path, command: tuple[str, ...]) -> None:
    cfg = config(tmp_path)
    (tmp_path / "data").mkdir()
    if command == ("secret", "list"):
        assert edgegw("secret", "set", "a.b", "--stdin", "-c", str(cfg), stdin=b"tok\n").returncode == 0
    args = command if command == ("version",) else (*command, "-c", str(cfg))
    done = with_reader_gone(*args)
    assert (done.returncode, done.stderr.decode()) == (141, "")


def test_help_to_a_reader_gone_is_quiet() -> None:
    done = with_reader_gone("--help")  # argparse's own printing, which ignores the error: exit 0 as it was
    assert (done.returncode, done.stderr.decode()) == (0, "")


def test_an_empty_secret_list_says_so_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    run = edgegw("secret", "list", "-c", str(config(tmp_path)))
    assert (run.returncode, run.stdout, run.stderr) == (
        0,
        "",
        f"secret list: no secrets stored in {tmp_path / 'data'}\n",
    )


def test_the_config_option_before_the_subcommand_is_taken(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    for first in (["-c", str(cfg)], ["--config", str(cfg)], [f"--config={cfg}"]):
        run = edgegw(*first, "check-config", "--offline")
        assert (run.returncode, run.stdout) == (0, f"{cfg}: OK — gateway gw1, 0 adapter(s), 1 uplink(s)\n"), run.stderr


def test_check_config_with_a_file_and_another_c_refuses_the_ambiguity(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run = edgegw("check-config", str(cfg), "-c", "/etc/other.toml", "--offline")
    assert (run.returncode, run.stdout, run.stderr) == (
        2,
        "",
        f"check-config: two configurations given, got {cfg} and -c /etc/other.toml; name one\n",
    )


def _buffer(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    connect(data / BUFFER_FILE, durability=None).close()
    return config(tmp_path)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("buffer", "dead-letters", "--limit", "99999999999999999999"),
            "argument --limit: must be 1..1000000, got 99999999999999999999",
        ),
        (
            ("buffer", "dead-letters", "--limit", "1e20"),
            "argument --limit: must be a whole number 1..1000000, got '1e20'",
        ),
        (
            ("buffer", "retry-dead-letters", "--id", "99999999999999999999"),
            "argument --id: must be 1..9223372036854775807 (the ids `edgegw buffer dead-letters` shows), "
            "got 99999999999999999999",
        ),
        (("commission", "--timeout", "inf"), "argument --timeout: must be seconds 1..600, got inf"),
        (("commission", "--timeout", "nan"), "argument --timeout: must be seconds 1..600, got nan"),
    ],
    ids=["limit-huge", "limit-float", "id-huge", "timeout-inf", "timeout-nan"],
)
def test_numbers_out_of_range_are_refused_by_the_parser_in_one_line(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    run = edgegw(*args, "-c", str(_buffer(tmp_path)))
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1].endswith(f": error: {said}")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("serial", ["-5", "0", str(10**23)])
def test_config_sign_refuses_a_serial_no_box_should_take(tmp_path: Path, serial: str) -> None:
    key = tmp_path / "k.pem"
    assert edgegw("config", "keygen", str(key)).returncode == 0
    run = edgegw("config", "sign", str(config(tmp_path)), "--key", str(key), "--serial", serial)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.splitlines()[-1].endswith(
        f"argument --serial: must be 1..9007199254740991 (a box accepts only serials above the last, from 1), "
        f"got {serial}"
    )


def test_commission_says_a_config_error_on_stderr_even_with_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = ""\n')
    run = edgegw("commission", "--json", "-c", str(bad))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.startswith(f"commission: the configuration is not valid: {bad}")

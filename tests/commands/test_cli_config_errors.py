"""`edgegw` subcommands refused by one configuration problem say it in one line led by what failed.

"configuration: 1 error(s)" with the message indented below it hid what failed (a key file, a store, a
key path) on a second line that a journal or a field technician's terminal showed apart; several problems
keep the count and the list, as check-config has them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli
from gateway.secrets import SecretStore

BAD_ID = 'gateway.id: must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit, got "Bad ID"'


def write_config(tmp_path: Path, gateway_id: str = "gw1", extra: str = "") -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "{gateway_id}"\ndata_dir = "{tmp_path / "data"}"\n{extra}\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    return config


def edgegw(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [["run"], ["check-config"], ["buffer", "stats"], ["secret", "list"], ["status"]])
def test_one_key_error_is_one_line_led_by_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = write_config(tmp_path, gateway_id="Bad ID")
    assert edgegw(capsys, *command, "-c", str(config)) == (2, "", f"{config}: {BAD_ID}\n")


def test_run_says_a_key_file_that_does_not_fit_in_one_line_led_by_the_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    data = tmp_path / "data"
    SecretStore(data).set("orion_token", "tok-1")
    (data / "secrets.key").write_bytes(b"not-a-fernet-key\n")
    code, out, err = edgegw(capsys, "run", "-c", str(config))
    assert (code, out) == (2, "")
    assert err == (
        f"{data / 'secrets.key'}: not a secret store key, got 16 bytes (expected 32 url-safe base64-encoded "
        f"bytes, 44 characters); put back the key file that belongs to {data / 'secrets.enc'} (kept apart from backups)\n"
    )


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.toml"
    code, _, err = edgegw(capsys, "run", "-c", str(missing))
    assert (code, err) == (2, f"{missing}: file not found; create it or pass --config\n")


def test_several_errors_keep_the_count_and_the_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, gateway_id="Bad ID", extra="colour = 1")
    code, _, err = edgegw(capsys, "run", "-c", str(config))
    assert code == 2
    assert err.splitlines() == [
        f"{config}: 2 error(s)",
        f"  {BAD_ID}",
        "  gateway.colour: unknown key; valid keys here: control_socket, data_dir, id, log_format, log_level, status_interval_s",
    ]

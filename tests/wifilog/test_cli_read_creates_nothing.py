"""`edgegw wifi search | export | certificates` read the Wi-Fi log: on a box without one they say so (exit 1) and
make nothing, neither the log nor its directory nor a data directory, and audit no inquiry. Before, they made an
empty log (and a missing data directory, as root), then answered as if it had been there (review s20, F6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MAC = "aa:bb:cc:01:02:03"
COMMANDS = {
    "certificates": ("certificates",),
    "search": ("search", "--reference", "R-1", "--mac", MAC),
    "export": ("export", "--reference", "R-1", "--mac", MAC),
}


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "wifi", *args], capture_output=True, text=True, timeout=60, check=False
    )


def config_for(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "gw-1"\ndata_dir = "{data_dir}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    return path


def missing(command: str, data_dir: Path) -> str:
    log = data_dir / "wifilog" / "wifilog.db"
    return (
        f"wifi {command}: Wi-Fi log {log}: not found, got no such file; the gateway makes it when a radius or "
        "wifi_syslog adapter runs, so check [gateway] data_dir (or --data-dir); nothing was made\n"
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_box_without_a_wifi_log_gets_one_line_and_nothing_made(tmp_path: Path, command: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    out = tmp_path / "x.csv"
    extra = ("--out", str(out)) if command == "export" else ()
    r = edgegw(*COMMANDS[command], *extra, "-c", str(config_for(tmp_path, data_dir)))
    assert r.returncode == 1, r.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == []  # no wifilog/, no web/ (audit log), no secret store
    assert not out.exists()
    assert r.stderr == missing(command, data_dir)


def test_a_missing_data_directory_is_not_made(tmp_path: Path) -> None:
    data_dir = tmp_path / "box" / "x"
    r = edgegw("certificates", "-c", str(config_for(tmp_path, data_dir)))
    assert r.returncode == 1, r.stderr
    assert not (tmp_path / "box").exists()
    assert r.stderr == missing("certificates", data_dir)


def test_data_dir_option_names_the_log_it_did_not_find(tmp_path: Path) -> None:
    r = edgegw("certificates", "--data-dir", str(tmp_path / "elsewhere"))
    assert (r.returncode, r.stderr) == (1, missing("certificates", tmp_path / "elsewhere"))
    assert not (tmp_path / "elsewhere").exists()

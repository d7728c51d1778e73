"""`edgegw check-config` exits 0 for a good file and lists every error with its key path otherwise (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "cases"


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", ["demo.toml", "gateway.example.toml", "river-http.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    run = check_config(ROOT / "config" / name)
    assert run.returncode == 0, run.stderr
    assert "OK" in run.stdout


def test_every_error_is_listed_with_its_key_path() -> None:
    case = CASES / "check_config_every_error"
    run = check_config(case / "gateway.toml")
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines[0] == f"{case / 'gateway.toml'}: 9 error(s)"
    assert lines[1:] == (case / "expected.txt").read_text().splitlines()


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "g.toml"
    bad.write_text("[gateway\nid = 1\n")
    run = check_config(bad)
    assert run.returncode == 2
    assert "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 9)" in run.stderr


def test_missing_file(tmp_path: Path) -> None:
    run = check_config(tmp_path / "none.toml")
    assert run.returncode == 2
    assert run.stderr == f"{tmp_path / 'none.toml'}: file not found; create it or pass --config\n"


def _doc(**extra: object) -> dict[str, object]:
    return {
        "gateway": {"id": "gw1"},
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1026"}],
        **extra,
    }


def test_names_must_be_unique_across_adapters_and_uplinks() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(adapters=[{"name": "o", "type": "simulated"}]))
    assert err.value.errors == ["uplinks[0].name: must be unique, got 'o'; adapters[0] has it already"]


def test_no_uplink_and_missing_type() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"gateway": {"id": "gw1"}, "adapters": [{"name": "a"}]})
    assert err.value.errors == [
        "adapters[0].type: required key is missing; valid: http_poll, locker, modbus, mqtt, radius, scanner, simulated, wifi_syslog",
        "uplinks: at least one [[uplinks]] entry is needed, got none",
    ]


def test_sections_become_typed_objects(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "config" / "demo.toml")
    assert cfg.gateway.id == "demo-gw"
    assert [a.type for a in cfg.adapters] == ["simulated"] * 3
    assert {type(u).__name__ for u in cfg.uplinks} == {"MqttUplinkConfig"}
    assert cfg.buffer.durability.value == "full"


def test_a_secret_written_in_clear_is_never_echoed() -> None:
    doc = _doc()
    doc["uplinks"][0]["x_auth_token"] = "hunter2-very-secret"  # type: ignore[index]
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert "hunter2" not in str(err.value)
    assert err.value.errors[0].endswith("never the secret in clear, got a value that is not shown here")

"""TOML that tomllib refuses with ValueError or RecursionError is a config error like any other, never a traceback.

Regression cases of a review: an integer of more than 4300 digits (Python's limit on converting decimal
strings, CVE-2020-10735) and arrays nested 3000 deep escaped as tracebacks from `edgegw check-config`,
the control socket's config.check/apply and the profile loader (so GET /devices answered 500). Also:
`type = ["modbus"]` in an adapter said "required key is missing".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.configbase import read_toml
from gateway.control.ops_config import parse_text
from gateway.errors import ConfigError
from gateway.profiles.loader import find_profiles, load_profile

ROOT = Path(__file__).resolve().parents[2]
GOOD = '[gateway]\nid = "gw"\n\n[[uplinks]]\nname = "u"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
BIG_INT = "1" + "0" * 5000
TOO_MANY_DIGITS = (
    "not valid TOML: an integer may have at most 4300 digits, got one with 5001 (at line {line}, column {column})"
)
TOO_DEEP = (
    "not valid TOML: arrays or inline tables nested too deeply for this reader, got more than a few hundred "
    "levels; a configuration needs only a few"
)
CASES = {
    "integer": (GOOD + f"\n[buffer]\nmax_bytes = {BIG_INT}\n", TOO_MANY_DIGITS.format(line=10, column=13)),
    "integer-with-underscores": (f"x = -1_{BIG_INT[1:]}\n" + GOOD, TOO_MANY_DIGITS.format(line=1, column=6)),
    "array": (GOOD + "x = " + "[" * 3000 + "]" * 3000 + "\n", TOO_DEEP),
    "inline-table": (GOOD + "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", TOO_DEEP),
}


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.mark.parametrize("case", CASES)
def test_check_config_lists_it_and_exits_2(case: str, tmp_path: Path) -> None:
    text, error = CASES[case]
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    run = edgegw("check-config", str(path))
    assert (run.returncode, run.stderr.splitlines()) == (2, [f"{path}: {error}"])
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("case", CASES)
def test_the_control_sockets_parse_says_it(case: str) -> None:
    text, error = CASES[case]
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "edited")
    assert (caught.value.source, caught.value.errors) == ("edited", [error])


def test_a_string_of_as_many_digits_is_not_taken_for_the_integer(tmp_path: Path) -> None:
    """The line is that of the integer Python counted, past a (legal) string of digits before it."""
    path = tmp_path / "gateway.toml"
    path.write_text(f'note = "{"7" * 4400}"\n' + GOOD + f"x = {BIG_INT}\n")
    with pytest.raises(ConfigError) as caught:
        read_toml(path)
    assert caught.value.errors == [TOO_MANY_DIGITS.format(line=9, column=5)]


@pytest.mark.parametrize("case", ["integer", "array"])
def test_a_local_profile_like_that_is_listed_as_invalid(case: str, tmp_path: Path) -> None:
    """As the devices page and `edgegw profile list` list it: one invalid profile, the others still shown."""
    text, error = CASES[case]
    (tmp_path / "acme").mkdir()
    bad = tmp_path / "acme" / "deep.toml"
    bad.write_text(text)
    search = (tmp_path,)
    assert [r.name for r in find_profiles(search)] == ["acme/deep"]
    with pytest.raises(ConfigError) as caught:
        load_profile("acme/deep", search)
    assert (caught.value.source, caught.value.errors) == (str(bad), [error])

    run = edgegw("profile", "list", "--profiles-dir", str(tmp_path))
    assert run.returncode == 2, run.stderr
    [row] = [line.split() for line in run.stdout.splitlines() if line.startswith("acme/deep ")]
    assert row == ["acme/deep", "-", "-", "INVALID", "(1", "error(s))", "-", str(bad)]
    assert run.stderr == "profile list: 1 profile(s) invalid; run `edgegw profile validate FILE` for details\n"
    run = edgegw("profile", "validate", str(bad))
    assert (run.returncode, run.stderr) == (2, f"{bad}: {error}\n")


@pytest.mark.parametrize(
    ("value", "shown"), [('["modbus"]', "a list"), ("5", "5"), ("true", "true"), ("{ kind = 'modbus' }", "a table")]
)
def test_a_type_that_is_no_string_says_so(value: str, shown: str) -> None:
    valid = "http_poll, locker, modbus, mqtt, radius, scanner, simulated, wifi_syslog"
    text = GOOD + f'\n[[adapters]]\nname = "a"\ntype = {value}\n'
    with pytest.raises(ConfigError) as caught:
        parse_text(text)
    assert caught.value.errors == [f"adapters[0].type: must be a string, got {shown}; valid: {valid}"]
    with pytest.raises(ConfigError) as caught:
        parse_text(text.replace("[[adapters]]", "[[uplinks]]"))
    assert caught.value.errors[0].startswith(f"uplinks[1].type: must be a string, got {shown}; valid: ")


def test_a_missing_type_is_still_a_missing_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "gateway": {"id": "gw"},
                "uplinks": [{"name": "u", "type": "orion", "url": "http://h"}],
                "adapters": [{"name": "a"}],
            }
        )
    assert caught.value.errors[0].startswith("adapters[0].type: required key is missing; valid: http_poll, ")

"""Every shipped profile validates, names its public source, and `list` / `show` describe them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.profiles import SHIPPED_DIR, find_profiles, load_profile, load_profile_file
from gateway.profiles.loader import ProfileNotFound
from tests.profiles.test_cases import run

SHIPPED = sorted(SHIPPED_DIR.glob("*/*.toml"))
ONLY_SHIPPED = ("--profiles-dir", str(SHIPPED_DIR))


def test_at_least_eight_models_are_shipped() -> None:
    assert len(SHIPPED) >= 8


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_profile_is_valid_and_sourced(path: Path) -> None:
    profile = load_profile_file(path)
    assert len(profile.source) > 20, "source must name the public document the map comes from"
    assert profile.points
    code, out, err = run("profile", "validate", str(path))
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: OK — {profile.vendor} {profile.model}, {len(profile.points)} point(s)")


def test_list_shows_every_shipped_profile() -> None:
    code, out, err = run("profile", "list", *ONLY_SHIPPED)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VENDOR", "MODEL", "ENTITY", "TYPE", "POINTS", "FILE"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(f"{p.parent.name}/{p.stem}" for p in SHIPPED)
    s8 = next(line for line in lines if line.startswith("senseair/s8 "))
    assert s8.split()[1:5] == ["Senseair", "S8", "AirQualityObserved", "6"]


def test_a_local_profile_overrides_the_shipped_one_and_a_broken_one_is_flagged(tmp_path: Path) -> None:
    local = tmp_path / "senseair"
    local.mkdir()
    (local / "s8.toml").write_text(
        (SHIPPED_DIR / "senseair" / "s8.toml").read_text().replace('model = "S8"', 'model = "S8 local"')
    )
    (local / "broken.toml").write_text('vendor = "x"\n')
    refs = {r.name: r for r in find_profiles((tmp_path, SHIPPED_DIR))}
    assert refs["senseair/s8"].path == local / "s8.toml"
    assert refs["senseair/broken"].root == tmp_path
    code, out, err = run("profile", "list", "--profiles-dir", str(tmp_path))
    assert code == 2
    assert "S8 local" in next(line for line in out.splitlines() if line.startswith("senseair/s8 "))
    broken = next(line for line in out.splitlines() if line.startswith("senseair/broken "))
    assert "INVALID (4 error(s))" in broken
    assert err == "profile list: 1 profile(s) invalid; run `edgegw profile validate FILE` for details\n"
    assert load_profile("senseair/s8", (tmp_path, SHIPPED_DIR)).model == "S8 local"


def test_show_prints_interface_points_and_commands() -> None:
    code, out, err = run("profile", "show", "generic/pressure-level-transmitter", *ONLY_SHIPPED)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "generic/pressure-level-transmitter: Generic RS-485 pressure level transmitter"
    assert (
        "  interface:   rtu 9600 8N1, unit id 1, timeout 0.5 s, delay 0 s, max 125 registers per read, max gap 0"
        in lines
    )
    level = next(line for line in lines if line.strip().startswith("level "))
    assert level.split() == [
        "level",
        "03",
        "4",
        "(0x0004)",
        "int16",
        "ABCD",
        "1",
        "/10^decimals",
        "MTR",
        "waterLevel",
        "(Number)",
        "60",
        "s",
    ]
    decimals = next(line for line in lines if line.strip().startswith("decimals "))
    assert "- (not published)" in decimals
    command = next(line for line in lines if line.strip().startswith("set_zero_offset"))
    assert command.split() == ["set_zero_offset", "06", "12", "(0x000C)", "int16", "-32768..32767"]


def test_show_json_is_the_validated_profile() -> None:
    code, out, _ = run("profile", "show", "waveshare/modbus-rtu-relay-d", "--json", *ONLY_SHIPPED)
    doc = json.loads(out)
    assert code == 0
    assert doc["interface"]["baud"] == 9600
    assert [c["address"] for c in doc["commands"]][-1] == 0x00FF
    assert {p["function_code"] for p in doc["points"]} == {1, 2}


def test_show_unknown_name_says_where_it_looked(tmp_path: Path) -> None:
    code, out, err = run("profile", "show", "acme/none", "--profiles-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert err == (
        f'acme/none: no such profile, got "acme/none"; searched {tmp_path}, /etc/edgegw/profiles, {SHIPPED_DIR}; '
        "`edgegw profile list` shows the known names\n"
    )


def test_a_bad_name_is_refused_before_any_lookup() -> None:
    with pytest.raises(ProfileNotFound) as err:
        load_profile("../etc/passwd")
    assert err.value.errors == [
        "profile name must be <vendor>/<model> in lower case a-z 0-9 _ - (the model may also hold .), "
        'e.g. eastron/sdm120, got "../etc/passwd"'
    ]

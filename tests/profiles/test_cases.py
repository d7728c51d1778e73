"""`edgegw profile validate` on broken profiles prints every key-path error (cases as data) and exits 2."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from gateway.profiles import cli

CASES = Path(__file__).parent / "cases"


def run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="edgegw")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(parser.parse_args(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_broken_profile_lists_every_error(case: str) -> None:
    path = CASES / case / "profile.toml"
    expected = (CASES / case / "expected.txt").read_text().splitlines()
    code, out, err = run("profile", "validate", str(path))
    assert code == 2
    assert out == ""
    if len(expected) == 1:  # one problem is one line, led by the file
        assert err == f"{path}: {expected[0]}\n"
    else:
        assert err == f"{path}: {len(expected)} error(s)\n" + "".join(f"  {line}\n" for line in expected)


def test_validate_mixes_good_and_bad_files_and_still_exits_2(tmp_path: Path) -> None:
    good = Path(cli.__file__).resolve().parents[2] / "firmware_profiles" / "senseair" / "s8.toml"
    missing = tmp_path / "nope.toml"
    code, out, err = run("profile", "validate", str(good), str(missing))
    assert code == 2
    assert out == f"{good}: OK — Senseair S8, 6 point(s), 3 command(s)\n"
    assert err == f"{missing}: file not found\n"


def test_the_ambiguous_address_message_names_both_fixes() -> None:
    text = (CASES / "address_notation" / "expected.txt").read_text()
    assert (
        'points[2].address: is ambiguous: 40010 looks like 1-based 4xxxx notation; write address = "40010" '
        'for register 40010 of that notation (0-based 9), or address = "0x9C4A" if 40010 really is the '
        "0-based protocol address, got 40010"
    ) in text

"""Numbers out of range are refused by the parser in one line, before any work: a purge of 99999999999 days
raised ValueError after the purge had run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["audit", "show", "--limit", "1e20"], "argument --limit: must be a whole number 1..1000000, got '1e20'"),
        (["audit", "show", "--limit", "0"], "argument --limit: must be 1..1000000, got 0"),
        (["audit", "purge", "--days", "99999999999"], "argument --days: must be 1..36500, got 99999999999"),
        (["locker", "probe", "--port", "/dev/null", "--timeout", "-1"], "argument --timeout: must be seconds"),
        (["locker", "probe", "--port", "/dev/null", "--baud", "0"], "argument --baud: must be 300..921600, got 0"),
    ],
)
def test_an_out_of_range_number_is_one_line_before_any_work(args: list[str], said: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2
    assert said in run.stderr and "Traceback" not in run.stderr

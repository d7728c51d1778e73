"""lintian on the built package: no error, no warning but those config/debian/lintian-overrides explains.

The package is built once per run (conftest.py): e2e. Skipped where lintian is not installed (`make deps`
installs it: Makefile DEB_PACKAGES).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

OVERRIDES = Path(__file__).parents[2] / "config" / "debian" / "lintian-overrides"
LINTIAN = shutil.which("lintian")


def test_every_override_says_why() -> None:
    paragraphs = [p.splitlines() for p in OVERRIDES.read_text().split("\n\n")]
    unexplained = [
        line
        for lines in paragraphs
        if not any(line.startswith("#") for line in lines)
        for line in lines
        if line.startswith("edgegw:")
    ]
    assert unexplained == []
    overrides = [line for lines in paragraphs for line in lines if not line.startswith("#")]
    assert all(re.fullmatch(r"edgegw: [a-z0-9.+-]+( .+)?", line) for line in overrides), overrides


@pytest.mark.e2e
@pytest.mark.skipif(LINTIAN is None, reason="lintian is not installed (apt-get install lintian)")
def test_lintian_finds_no_error_and_no_unexplained_warning(deb: Path) -> None:
    assert LINTIAN is not None
    # --no-cfg: the host's lintianrc must not hide or add tags; infos are shown so an unused override
    # (a tag that went away) fails too, and the file stays a true list
    done = subprocess.run(
        [LINTIAN, "--no-cfg", "--display-info", "--tag-display-limit", "0", str(deb)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    findings = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("E: ", "W: ")) or " unused-override " in line or " mismatched-override " in line
    ]
    assert findings == [], "\n".join(findings)
    assert done.returncode == 0, done.stderr
    # the overrides ship in the package, where lintian (and a reviewer) finds them
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "./usr/share/lintian/overrides/edgegw\n" in listing

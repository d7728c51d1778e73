"""The package on a fresh Debian 12 as a box gets it: the root booted with systemd as PID 1, `apt install
./edgegw_….deb` resolving Depends from the mirror, the units started, stopped, upgraded and purged live.

The root is debootstrap's, cached per machine and day (debian_root.py): the first run on a machine makes
it (about 2 minutes), later ones unpack it in seconds. Needs root and the network to the host's Debian
mirror: e2e, skipped with the reason where either is missing.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .debian_root import CachedRoot, Container, FreshRoot, cached_root, nspawn_usable, usable
from .installed import repack

WHY_NOT = usable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(WHY_NOT is not None, reason=f"no fresh Debian root: {WHY_NOT}")]


@pytest.fixture(scope="session")
def cached() -> CachedRoot:
    made = cached_root()
    if made.made_in_s is not None:  # the figure CI on a new machine pays once
        sys.stderr.write(f"\n{made.tarball}: made in {made.made_in_s:.0f} s\n")
    return made


@pytest.fixture
def fresh(cached: CachedRoot, tmp_path: Path, deb: Path) -> Iterator[FreshRoot]:
    root = FreshRoot(cached, tmp_path)
    shutil.copyfile(deb, root.path / "root" / deb.name)
    yield root
    root.remove()


WHY_NO_BOOT = nspawn_usable()
# the gateway unit's properties, one a line in the order asked (`systemctl show -P a,b` keeps its own order)
SHOW = "for p in {}; do systemctl show -P $p edgegw.service; done"
STATUS = (
    "/opt/edgegw/.venv/bin/python -c 'import asyncio, json, pathlib; from gateway.control.client import ControlClient\n"
    + (
        "async def main():\n"
        '    async with ControlClient(pathlib.Path("/var/lib/edgegw/control.sock")) as c:\n'
        '        print(json.dumps(await c.call("status"))[:2000])\n'
        "asyncio.run(main())'"
    )
)


def _wait_for(container: Container, script: str, expected: str, timeout_s: float = 60) -> str:
    """Run `script` in the container until its output contains `expected` (a service coming up is real time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = container.run(script, check=False).stdout
        if expected in out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@dataclass
class Booted:
    box: Container
    before: list[str]  # dpkg's status of the fresh box, before the package: what a purge must bring back
    installed: str  # what apt said installing it


@pytest.fixture
def booted(fresh: FreshRoot, deb: Path, tmp_path: Path) -> Iterator[Booted]:
    """The root booted with systemd as PID 1 and the package installed in it with apt, as on a live box."""
    before = fresh.packages()
    assert {"python3.11", "ca-certificates"}.isdisjoint(line.split()[-1] for line in before)  # Depends bring them
    # the Depends fetched into the shared .deb cache first: the container has loopback only, apt finds them there
    fresh.run(f"chroot $R apt-get install -y --no-install-recommends --download-only /root/{deb.name}")
    with Container(fresh, tmp_path / "nspawn.log") as box:
        state = box.wait_booted()
        assert state.split("\n")[0] in ("running", "degraded"), state
        # postinst under a running systemd: enabled, and started because the shipped config passes check-config
        installed = box.run(f"apt-get install -y --no-install-recommends /root/{deb.name}").stdout
        yield Booted(box, before, installed)


@pytest.mark.skipif(WHY_NO_BOOT is not None, reason=f"cannot boot the root: {WHY_NO_BOOT}")
def test_under_systemd_apt_install_starts_the_gateway_and_web_ui_stop_is_clean_upgrade_restarts_purge_stops(
    booted: Booted, fresh: FreshRoot, deb: Path, tmp_path: Path
) -> None:
    """Remove (data kept) and purge (nothing left) file by file: tests/packaging/test_deb.py, with dpkg."""
    box = booted.box
    for dependency in ("python3.11", "ca-certificates"):  # HTTPS uplinks verify with Debian's CA bundle
        assert re.search(rf"^Setting up {re.escape(dependency)} ", booted.installed, re.MULTILINE), booted.installed
    assert "Setting up edgegw (0.1.0-1)" in booted.installed
    units = "systemctl is-active edgegw.service edgegw-web.service edgegw-backup.timer || true"
    assert _wait_for(box, units, "active\nactive\nactive\n") == "active\nactive\nactive\n", box.journal()
    pid = box.run("systemctl show -P MainPID edgegw.service").stdout.strip()
    status = _wait_for(box, "edgegw status", f"pid {pid})")
    assert status.startswith(f"gateway kumamoto-river-001 (edgegw 0.1.0, pid {pid})"), status + box.journal()
    assert box.run(
        "test -S /var/lib/edgegw/control.sock && stat -c '%U:%G %a' /var/lib/edgegw/control.sock"
    ).stdout == ("edgegw:edgegw 660\n")
    assert ":8443 " in _wait_for(box, "ss -Hltn", ":8443 ")  # the web UI listens
    # stop: SIGTERM, a clean exit within TimeoutStopSec, not a kill
    box.run("systemctl stop edgegw.service")
    assert box.run(SHOW.format("ActiveState Result")).stdout == "inactive\nsuccess\n"
    stopped = box.run("journalctl -b -u edgegw.service -o cat --no-pager").stdout
    assert "SIGKILL" not in stopped and "Failed with result" not in stopped, stopped
    # start again by hand: up, and answering
    box.run("systemctl start edgegw.service")
    assert box.run("systemctl is-active edgegw.service").stdout == "active\n"
    pid = box.run("systemctl show -P MainPID edgegw.service").stdout.strip()
    assert f"pid {pid})" in _wait_for(box, "edgegw status", f"pid {pid})")
    assert "edgegw" not in box.run("systemctl --failed --plain --no-legend").stdout, box.journal()
    # an upgrade on a live box: prerm stops the old code, postinst starts the new one
    shutil.copyfile(repack(deb, "0.1.1-1", tmp_path), box.root.path / "root" / "next.deb")
    box.run("apt-get install -y /root/next.deb")
    assert box.run(
        "dpkg-query -W -f '${Version}' edgegw; echo; systemctl is-active edgegw.service edgegw-web.service"
    ).stdout == ("0.1.1-1\nactive\nactive\n")
    new_pid = box.run("systemctl show -P MainPID edgegw.service").stdout.strip()
    assert new_pid != pid
    # the control socket, asked as the web UI asks it: the gateway's user, the status op
    answered = box.run(f"runuser -u edgegw -- {STATUS}", check=False).stdout
    survived = box.run(SHOW.format("MainPID NRestarts")).stdout == f"{new_pid}\n0\n"
    # the web UI polls status every second: a seccomp kill (status=31/SYS) here once took the gateway down
    journal = box.run("journalctl -b -u edgegw.service -o cat --no-pager").stdout
    # purge on a live box: prerm stops everything, postrm leaves no unit, process, user or data
    box.run("apt-get purge -y edgegw")
    left = box.run(
        "systemctl list-units --all --plain --no-legend 'edgegw*'; ps -eo args= | grep '[/]opt/edgegw' || true;"
        " ls /var/lib | grep edgegw || true; getent passwd edgegw || true"
    ).stdout
    assert left == "", left
    # what apt installed for it went with it: dpkg's status is the fresh box's again, but for what apt keeps
    # as its own Recommends (ca-certificates, and openssl under it), as it would on any box
    box.run("apt-get autoremove --purge -y")
    after = fresh.packages()
    assert set(booted.before) - set(after) == set()
    assert set(after) - set(booted.before) <= {"ii  ca-certificates", "ii  openssl"}
    assert "kumamoto-river-001" in answered and survived and "status=31/SYS" not in journal, (answered, journal)

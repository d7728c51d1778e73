"""`make deb`'s package installed with the real dpkg into a throwaway root: files, user, permissions, remove, purge, upgrade, downgrade.

Slow (the package is built once per run, ~1 min, conftest.py): e2e. Needs root and mount namespaces (see throwaway_root.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .throwaway_root import Root, usable

WHY_NOT = usable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(WHY_NOT is not None, reason=f"no throwaway root here: {WHY_NOT}")]


def _repack(deb: Path, version: str, out: Path) -> Path:
    """The same package as another version: what the next (or an older) release's upgrade looks like to dpkg."""
    tree = out / f"tree-{version}"
    subprocess.run(["fakeroot", "sh", "-c", f"dpkg-deb -R {deb} {tree}"], check=True)
    for name in ("control", "preinst"):
        f = tree / "DEBIAN" / name
        f.write_text(f.read_text().replace("0.1.0-1", version))
    new = out / f"edgegw_{version}.deb"
    subprocess.run(["fakeroot", "dpkg-deb", "--root-owner-group", "-b", tree, new], check=True, capture_output=True)
    return new


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path)


def test_install_checks_files_user_permissions_then_remove_keeps_data_and_purge_deletes_it(
    deb: Path, root: Root
) -> None:
    installed = root.dpkg("-i", str(deb))
    assert "edit /etc/edgegw/gateway.toml" not in installed.stdout  # no systemd in the root: nothing started
    out = root.run(
        """
        readlink $R/usr/bin/edgegw
        chroot $R /usr/bin/edgegw version
        chroot $R /opt/edgegw/.venv/bin/python -c 'from gateway.profiles import SHIPPED_DIR; print(SHIPPED_DIR); print(len(list(SHIPPED_DIR.glob("*/*.toml"))))'
        chroot $R /opt/edgegw/.venv/bin/python -c 'import importlib.resources as r; print(r.files("gateway.web").joinpath("templates/base.html").is_file())'
        grep '^edgegw:' $R/etc/passwd | cut -d: -f6,7
        chroot $R stat -c '%U:%G %a %n' /var/lib/edgegw /etc/edgegw /etc/edgegw/gateway.toml
        ls $R/lib/systemd/system | grep edgegw
        ls $R/usr/share/edgegw/supervisor
        dpkg-query --admindir=$R/var/lib/dpkg -W -f '${Status} ${Version}\n${Conffiles}\n' edgegw
        find $R/opt/edgegw -newer $R/var/lib/dpkg/status -name '*.pyc' | wc -l
        """
    ).stdout.split("\n")
    assert out[0] == "/opt/edgegw/.venv/bin/edgegw"
    assert out[1].startswith("edgegw 0.1.0") or out[1] == "0.1.0"
    assert out[2] == "/opt/edgegw/.venv/lib/python3.11/site-packages/firmware_profiles"
    assert int(out[3]) >= 10  # every shipped profile is in the wheel
    assert out[4] == "True"
    assert out[5] == "/var/lib/edgegw:/usr/sbin/nologin"
    assert out[6:9] == [
        "edgegw:edgegw 750 /var/lib/edgegw",
        "root:edgegw 770 /etc/edgegw",
        "root:edgegw 660 /etc/edgegw/gateway.toml",
    ]
    assert out[9:13] == ["edgegw-backup.service", "edgegw-backup.timer", "edgegw-web.service", "edgegw.service"]
    assert out[13] == "edgegw.conf"
    assert out[14] == "install ok installed 0.1.0-1"
    assert out[15].split()[0] == "/etc/edgegw/gateway.toml"
    # the units as installed: their ExecStart, User and sandboxing checked where the binary exists
    verified = root.run(
        "chroot $R systemd-analyze verify --man=no /lib/systemd/system/edgegw.service"
        " /lib/systemd/system/edgegw-web.service /lib/systemd/system/edgegw-backup.service"
        " /lib/systemd/system/edgegw-backup.timer 2>&1"
    )
    assert verified.stdout == ""
    # data and a local edit, then remove: both stay; purge: both go
    root.run("echo data > $R/var/lib/edgegw/buffer.db && echo '# local' >> $R/etc/edgegw/gateway.toml")
    root.dpkg("-r", "edgegw")
    left = root.run(
        "test ! -e $R/usr/bin/edgegw && test ! -e $R/opt/edgegw && test ! -e $R/lib/systemd/system/edgegw.service"
        " && cat $R/var/lib/edgegw/buffer.db && tail -1 $R/etc/edgegw/gateway.toml"
    ).stdout
    assert left == "data\n# local\n"
    root.dpkg("-P", "edgegw")
    assert (
        root.run("ls -A $R/var/lib | grep -c edgegw || true; test ! -e $R/etc/edgegw && echo gone").stdout
        == "0\ngone\n"
    )


def test_an_upgrade_keeps_data_and_config_and_a_downgrade_is_refused(deb: Path, root: Root, tmp_path: Path) -> None:
    root.dpkg("-i", str(deb))
    root.run("echo pending > $R/var/lib/edgegw/buffer.db && echo '# tuned' >> $R/etc/edgegw/gateway.toml")
    root.dpkg("-i", str(_repack(deb, "0.1.1-1", tmp_path)))
    kept = root.run(
        "cat $R/var/lib/edgegw/buffer.db; tail -1 $R/etc/edgegw/gateway.toml;"
        " dpkg-query --admindir=$R/var/lib/dpkg -W -f '${Version}\n' edgegw"
    ).stdout
    assert kept == "pending\n# tuned\n0.1.1-1\n"
    refused = root.dpkg("-i", str(deb), check=False)
    assert refused.returncode != 0
    assert "edgegw: refusing to downgrade from 0.1.1-1 to 0.1.0-1" in refused.stderr
    after = root.run(
        "dpkg-query --admindir=$R/var/lib/dpkg -W -f '${Version} ${Status}\n' edgegw; cat $R/var/lib/edgegw/buffer.db"
    )
    assert after.stdout == "0.1.1-1 install ok installed\npending\n"

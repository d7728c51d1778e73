"""The checks of an installed edgegw package, shared by the throwaway root (dpkg) and the fresh Debian 12 root (apt).

Each takes a root whose `run(script)` runs a shell script with $R set to the root's path.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

UNITS = [
    "edgegw-backup.service",
    "edgegw-backup.timer",
    "edgegw-kiosk.service",
    "edgegw-web.service",
    "edgegw.service",
]
ENABLED = [
    "multi-user.target.wants/edgegw-web.service",
    "multi-user.target.wants/edgegw.service",
    "timers.target.wants/edgegw-backup.timer",
]


UNSHARE = ["unshare", "-m", "--propagation", "private"]  # a private mount namespace for a root's mounts
# what a root's scripts run with: the host's tools, no locale surprises, apt never asking
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


class Root(Protocol):
    def run(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]: ...


def run_script(
    enter: list[str],
    script: str,
    *,
    setup: str = "",
    check: bool,
    timeout: float,
    context: Callable[[], str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`setup` then `script` under `sh -ec`, behind `enter` (the command that puts it into the root's
    namespaces; `setup` mounts what the script needs there).

    With `check`, a failure is an AssertionError with the script, its output and `context()` (what
    else tells why, e.g. the container's journal)."""
    done = subprocess.run(
        [*enter, "sh", "-ec", setup + script], capture_output=True, text=True, check=False, env=ENV, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"exit {done.returncode}:\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            + (context() if context is not None else "")
        )
    return done


def check_installed(root: Root) -> None:
    """Files, the user, permissions, the units (enabled, and valid to systemd-analyze), the command as the user runs it."""
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
        chroot $R runuser -u edgegw -- edgegw check-config /etc/edgegw/gateway.toml
        cd $R/etc/systemd/system && ls -d */*edgegw* | sort
        chroot $R dpkg --verify edgegw && echo verified
        chroot $R id -nG edgegw
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
    k = 9 + len(UNITS)  # the lines after the unit listing
    assert out[9:k] == UNITS
    assert out[k] == "edgegw.conf"
    assert out[k + 1] == "install ok installed 0.1.0-1"
    assert out[k + 2].split()[0] == "/etc/edgegw/gateway.toml"
    assert out[k + 3] == "0"  # bytecode came with the package: nothing under /opt written at install time
    # the shipped example configuration is valid, and readable by the user the units run as
    assert out[k + 4].startswith("/etc/edgegw/gateway.toml: OK")
    # enabled without a running systemd: the box starts them at boot (the kiosk only where enabled by hand)
    assert out[k + 5 : k + 5 + len(ENABLED)] == ENABLED
    k += 5 + len(ENABLED)
    assert out[k] == "verified"  # every file as md5sums lists it
    # the groups edgegw.service names (SupplementaryGroups=): a missing one stops the unit with 216/GROUP
    assert sorted(out[k + 1].split()) == ["dialout", "edgegw", "input"]
    # the units as installed: their ExecStart, User and sandboxing checked where the binary exists
    verified = root.run(
        "chroot $R systemd-analyze verify --man=no "
        + " ".join(f"/lib/systemd/system/{unit}" for unit in UNITS)
        + " 2>&1"
    )
    assert verified.stdout == ""


def add_data_and_a_local_edit(root: Root) -> None:
    root.run("echo data > $R/var/lib/edgegw/buffer.db && echo '# local' >> $R/etc/edgegw/gateway.toml")


def check_removed(root: Root) -> None:
    """After remove: the code and units gone, the data and the edited configuration kept, the units masked."""
    left = root.run(
        "test ! -e $R/usr/bin/edgegw && test ! -e $R/opt/edgegw && test ! -e $R/lib/systemd/system/edgegw.service"
        " && cat $R/var/lib/edgegw/buffer.db && tail -1 $R/etc/edgegw/gateway.toml && grep -c '^edgegw:' $R/etc/passwd"
        " && readlink $R/etc/systemd/system/edgegw.service"
    ).stdout
    assert left == "data\n# local\n1\n/dev/null\n"


def check_purged(root: Root) -> None:
    """After purge: no data, configuration, user, group, unit state or dpkg record left."""
    gone = root.run(
        "ls -A $R/var/lib | grep -c edgegw || true; test ! -e $R/etc/edgegw && echo config gone;"
        " cat $R/etc/passwd $R/etc/group $R/etc/shadow $R/etc/gshadow | grep -c '^edgegw:' || true;"
        " find $R/etc/systemd $R/var/lib/systemd -name '*edgegw*' | wc -l;"
        " dpkg-query --admindir=$R/var/lib/dpkg -W edgegw 2>&1 || true"
    ).stdout
    assert gone.splitlines() == [
        "0",
        "config gone",
        "0",
        "0",
        "dpkg-query: no packages found matching edgegw",
    ]


def repack(deb: Path, version: str, out: Path) -> Path:
    """The same package as another version: what the next (or an older) release's upgrade looks like to dpkg."""
    tree = out / f"tree-{version}"
    subprocess.run(["fakeroot", "sh", "-c", f"dpkg-deb -R {deb} {tree}"], check=True)
    for name in ("control", "preinst"):
        f = tree / "DEBIAN" / name
        f.write_text(f.read_text().replace("0.1.0-1", version))
    new = out / f"edgegw_{version}.deb"
    # uncompressed: xz on the venv takes half a minute, and only dpkg reads this file
    subprocess.run(
        ["fakeroot", "dpkg-deb", "--root-owner-group", "-Znone", "-b", tree, new], check=True, capture_output=True
    )
    return new

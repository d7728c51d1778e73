"""A throwaway Debian 12 root for installing the package with the real dpkg and its maintainer scripts.

The host's /usr is the lower layer of an overlay (what the package writes there lands in the root's
own upper directory), /etc, /var and /opt are fresh copies of the host's, and everything runs in a
private mount namespace (`unshare -m`), so nothing of the host changes. dpkg itself runs with
`--root`, which chroots into the root for the maintainer scripts. There is no systemd inside: the
scripts take their "no systemd" path (`/run/systemd/system` absent), as in a container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .installed import UNSHARE, run_script


def usable() -> str | None:
    """Why a throwaway root cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, chroot)"
    for tool in ("unshare", "dpkg", "dpkg-deb", "fakeroot"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return None if probe.returncode == 0 else f"unshare -m refused: {probe.stderr.decode().strip()}"


class Root:
    def __init__(self, base: Path) -> None:
        self.path = base / "root"
        self._upper = base / "usr-upper"
        self._work = base / "usr-work"
        for d in (self.path, self._upper, self._work):
            d.mkdir(parents=True)
        for link in ("bin", "lib", "lib64", "sbin"):
            target = os.readlink(f"/{link}") if os.path.islink(f"/{link}") else None
            if target is not None:
                (self.path / link).symlink_to(target)
        for sub in ("usr", "dev", "proc", "run", "tmp", "opt", "var/log", "var/cache", "var/lib", "root"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc", self.path / "etc", symlinks=True, ignore_dangling_symlinks=True)
        admin = self.path / "var/lib/dpkg"
        for sub in ("info", "updates", "triggers", "alternatives", "parts"):
            (admin / sub).mkdir(parents=True, exist_ok=True)
        # what the host has installed (python3.11, adduser, libc6 …) so the dependencies are met;
        # their files are the overlay's lower layer
        shutil.copyfile("/var/lib/dpkg/status", admin / "status")
        (admin / "available").touch()
        (admin / "diversions").touch()
        (admin / "statoverride").touch()

    def run(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script in a private mount namespace where the root's /usr and /dev are mounted; $R is the root."""
        setup = (
            f"mount -t overlay overlay -o lowerdir=/usr,upperdir={self._upper},workdir={self._work} {self.path}/usr"
            f" && mount --bind /dev {self.path}/dev && mount -t proc proc {self.path}/proc && R={self.path} && "
        )
        return run_script(UNSHARE, script, setup=setup, check=check, timeout=300)

    def dpkg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("dpkg --root=$R " + " ".join(f"'{a}'" for a in args), check=check)

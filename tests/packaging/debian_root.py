"""A fresh Debian 12 root made by debootstrap, cached per machine, for installing the package with apt as a box would.

The root is what a minimal real box has (minbase, systemd as init, dbus, iproute2, procps), without
python3, CA certificates or anything else the package needs: its Depends must pull them in from the
mirror. The mirror and the other Debian sources are the host's own (/etc/apt/sources.list*), read at
test time, as are the apt settings that reach it (proxy, Release validity).

Making a root takes a minute or two (debootstrap, then `apt-get update`), so the finished root is kept
as a tarball in /var/cache/edgegw-tests/, keyed by the UTC date (a day's package lists stay valid, the
next day's run takes the updates) and by the package list and the sources; each test unpacks its own copy
(a few seconds). Downloaded .debs are kept there too, in apt-archives/, so the Depends are fetched once.

`FreshRoot.run` runs a shell script in a private mount namespace in which $R has /proc, /sys, /dev and
the .deb cache mounted: the mounts die with the namespace, whatever happens to the test (even kill -9).
`FreshRoot.remove` checks that nothing is left mounted under the root before deleting it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .installed import ENV, UNSHARE, run_script

SUITE = "bookworm"
# not python3 nor ca-certificates: the package's Depends must bring them (tzdata, adduser come with minbase)
INCLUDE = ("systemd", "systemd-sysv", "dbus", "iproute2", "procps")
CACHE = Path(os.environ.get("EDGEGW_TEST_CACHE", "/var/cache/edgegw-tests"))
# what reaches the mirror from here: copied into the root's apt configuration
APT_SETTINGS = re.compile(r"^Acquire::(https?|ftp)::Proxy(::[^ ]+)? |^Acquire::Check-(Valid-Until|Date) ")


@dataclass(frozen=True, kw_only=True)
class Source:
    """One `deb` entry of the host's apt sources."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None

    def deb822(self) -> str:
        lines = [
            "Types: deb",
            f"URIs: {self.uri}",
            f"Suites: {' '.join(self.suites)}",
            f"Components: {' '.join(self.components)}",
        ]
        if self.signed_by:
            lines.append(f"Signed-By: {self.signed_by}")
        return "\n".join(lines) + "\n"


def _deb822_sources(text: str) -> Iterator[Source]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                yield Source(
                    uri=uri,
                    suites=tuple(fields.get("suites", "").split()),
                    components=tuple(fields.get("components", "").split()),
                    signed_by=fields.get("signed-by"),
                )


def _one_line_sources(text: str) -> Iterator[Source]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        options: dict[str, str] = {}
        if words[1].startswith("["):
            closing = next(i for i, w in enumerate(words) if w.endswith("]"))
            for opt in " ".join(words[1 : closing + 1]).strip("[]").split():
                key, _, value = opt.partition("=")
                options[key] = value
            words = [words[0], *words[closing + 1 :]]
        yield Source(uri=words[1], suites=(words[2],), components=tuple(words[3:]), signed_by=options.get("signed-by"))


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[Source]:
    """The host's sources for this Debian release (its updates and security suites included), in apt's order."""
    found: list[Source] = []
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    for f in files:
        if f.name.endswith(".sources") and f.is_file():
            found += _deb822_sources(f.read_text())
        elif f.name.endswith(".list") and f.is_file():
            found += _one_line_sources(f.read_text())
    return [s for s in found if any(suite.split("-")[0] == SUITE for suite in s.suites)]


def mirror(sources: list[Source]) -> str | None:
    return next((s.uri for s in sources if SUITE in s.suites and "main" in s.components), None)


def usable() -> str | None:
    """Why a fresh Debian root cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mount namespaces)"
    for tool in ("debootstrap", "tar", "unshare", "chroot", "apt-config"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install {tool})"
    if mirror(host_sources()) is None:
        return f"no Debian mirror for {SUITE} main in /etc/apt/sources.list*"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return None if probe.returncode == 0 else f"unshare -m refused: {probe.stderr.decode().strip()}"


@dataclass(frozen=True, kw_only=True)
class CachedRoot:
    tarball: Path
    made_in_s: float | None  # None: found in the cache


def cached_root(today: datetime.date | None = None) -> CachedRoot:
    """The finished root as a tarball, made with debootstrap unless this machine made it today already."""
    sources = host_sources()
    uri = mirror(sources)
    assert uri is not None, "usable() said so"
    day = (today or datetime.datetime.now(datetime.UTC).date()).isoformat()
    key = hashlib.sha256(repr((SUITE, INCLUDE, sources)).encode()).hexdigest()[:12]
    tarball = CACHE / f"{SUITE}-{day}-{key}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test run waits for the first one's root
        if tarball.exists():
            return CachedRoot(tarball=tarball, made_in_s=None)
        started = time.monotonic()
        work = CACHE / f"making-{key}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            _make(work / "root", uri, sources)
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", work / "root", "--numeric-owner", "-cf", partial, "."], check=True)
            partial.rename(tarball)
            took = time.monotonic() - started
            # the figure a new CI machine pays once, kept beside the root
            tarball.with_suffix(".made").write_text(f"made in {took:.0f} s on {day}, include {','.join(INCLUDE)}\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for old in CACHE.glob(f"{SUITE}-*.tar"):  # yesterday's roots: a root is 300 MB
            if old != tarball:
                old.unlink()
                old.with_suffix(".made").unlink(missing_ok=True)
        return CachedRoot(tarball=tarball, made_in_s=took)


def _make(root: Path, uri: str, sources: list[Source]) -> None:
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, root, uri],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
        timeout=1800,
    )
    if done.returncode != 0:
        raise AssertionError(f"debootstrap failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr}")
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text("\n".join(s.deb822() for s in sources))
    for s in sources:
        if s.signed_by and s.signed_by.startswith("/") and not (root / s.signed_by[1:]).exists():
            shutil.copyfile(s.signed_by, root / s.signed_by[1:])
    dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, check=True).stdout
    settings = [line for line in dump.splitlines() if APT_SETTINGS.match(line)]
    (root / "etc/apt/apt.conf.d/90edgegw-tests").write_text("".join(f"{line}\n" for line in settings))
    (root / "etc/hostname").write_text("edgegw-test\n")
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    subprocess.run(
        ["unshare", "-m", "sh", "-ec", f"mount -t proc proc {root}/proc; chroot {root} apt-get -qq update"],
        check=True,
        capture_output=True,
        env=ENV,
        timeout=600,
    )
    # a box is installed without the downloads; the tarball likewise
    subprocess.run(["chroot", root, "apt-get", "clean"], check=True, env=ENV)


class FreshRoot:
    """A copy of the cached root, for one test."""

    def __init__(self, cached: CachedRoot, base: Path) -> None:
        self.path = base / "root"
        self.path.mkdir(parents=True)
        subprocess.run(["tar", "-C", self.path, "--numeric-owner", "-xf", cached.tarball], check=True)
        shutil.copyfile("/etc/resolv.conf", self.path / "etc/resolv.conf")  # today's resolver, not the cache's
        self.archives = CACHE / "apt-archives"
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)

    def run(self, script: str, *, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a shell script in a private mount namespace where $R (the root) has /proc, /sys, /dev and the .deb cache."""
        r = self.path
        setup = (
            f"mount -t proc proc {r}/proc && mount -t sysfs sysfs {r}/sys && mount --rbind /dev {r}/dev"
            f" && mount --bind {self.archives} {r}/var/cache/apt/archives && R={r} && "
        )
        return run_script(UNSHARE, script, setup=setup, check=check, timeout=timeout)

    def packages(self) -> list[str]:
        """dpkg's status of every package it knows, as `ii name` lines: what a purge must bring back."""
        return self.run(
            "dpkg-query --admindir=$R/var/lib/dpkg -W -f '${db:Status-Abbrev} ${binary:Package}\\n' | sort"
        ).stdout.splitlines()

    def mounts(self) -> list[str]:
        """Mount points under the root in this (the host's) mount namespace: none, unless something leaked."""
        prefix = str(self.path) + "/"
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        return [p for p in points if p.startswith(prefix) or p == str(self.path)]

    def remove(self) -> None:
        """Unmount anything left under the root (deepest first), then delete it; refuses while a mount remains."""
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
        left = self.mounts()
        if left:  # rmtree would descend into the host's /dev or /sys
            raise AssertionError(f"{self.path}: still mounted after teardown, got {left}; not deleting it")
        shutil.rmtree(self.path)


def nspawn_usable() -> str | None:
    """Why the root cannot be booted with systemd as PID 1 here, or None."""
    if shutil.which("systemd-nspawn") is None:
        return "needs systemd-nspawn (apt-get install systemd-container)"
    if shutil.which("nsenter") is None:
        return "needs nsenter (util-linux)"
    return None


class Container:
    """The root booted by systemd-nspawn, systemd as its PID 1, with loopback only; `run` enters it with nsenter.

    No systemd runs on the host, so the container is not registered with machined (--register=no,
    --keep-unit) and commands enter its namespaces directly instead of `machinectl shell`.
    """

    def __init__(self, root: FreshRoot, log: Path) -> None:
        self.root = root
        self.log = log
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def __enter__(self) -> Container:
        with open(self.log, "wb") as out:
            self._nspawn = subprocess.Popen(
                [
                    "systemd-nspawn",
                    f"--directory={self.root.path}",
                    "--boot",
                    "--register=no",
                    "--keep-unit",
                    "--private-network",
                    "--console=passive",
                    "--machine=edgegw-test",
                    f"--bind={self.root.archives}:/var/cache/apt/archives",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        try:
            self.leader = self._find_leader(timeout_s=30)
        except BaseException:
            self._kill()
            raise
        return self

    def _find_leader(self, *, timeout_s: float) -> int:
        """The container's PID 1 on the host: the descendant of systemd-nspawn that is PID 1 in its own namespace."""
        assert self._nspawn is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self._nspawn.returncode}:\n{self.log.read_text()}")
            children: dict[int, list[int]] = {}
            pid1: set[int] = set()
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
                except OSError:  # gone meanwhile
                    continue
                pid = int(status.parent.name)
                children.setdefault(int(fields["PPid"]), []).append(pid)
                # systemd itself: nspawn's inner child is PID 1 too, before it sets up the root and execs it
                if fields.get("NSpid", "").split()[1:] == ["1"] and fields["Name"].strip() == "systemd":
                    pid1.add(pid)
            todo = [self._nspawn.pid]
            while todo:
                pid = todo.pop()
                if pid in pid1:
                    return pid
                todo += children.get(pid, [])
            time.sleep(0.2)
        raise AssertionError(f"no PID 1 under systemd-nspawn after {timeout_s} s:\n{self.log.read_text()}")

    def run(self, script: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the booted container (all its namespaces, as root)."""
        return run_script(
            ["nsenter", f"--target={self.leader}", "--all"],
            script,
            check=check,
            timeout=timeout,
            context=lambda: f"\n--- journal\n{self.journal()}",
        )

    def journal(self) -> str:
        return self.run("journalctl --no-pager -b -n 80 -o short-monotonic", check=False).stdout

    def wait_booted(self, timeout_s: float = 120) -> str:
        """systemd's state once startup is over: running, or degraded (with the failed units listed)."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while not state and time.monotonic() < deadline:  # empty: its manager is not listening yet
            state = self.run("systemctl is-system-running --wait", check=False, timeout=timeout_s).stdout.strip()
            time.sleep(0.2)
        if state != "running":
            state += "\n" + self.run("systemctl --failed --plain --no-legend", check=False).stdout
        return state

    def __exit__(self, *exc: object) -> None:
        """Power the container off (systemd stops every unit), or kill it when it does not go within 60 s."""
        assert self._nspawn is not None
        if self._nspawn.poll() is None:
            self.run("systemctl poweroff --no-block", check=False, timeout=30)
            try:
                self._nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._kill()

    def _kill(self) -> None:
        assert self._nspawn is not None
        if self.leader:  # the namespace's PID 1: every process in it dies with it
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
        self._nspawn.kill()
        self._nspawn.wait(timeout=30)

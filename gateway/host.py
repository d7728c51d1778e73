"""The box's own health for the dashboard: uptime, load, CPU, memory, disk of data_dir, clock sync.

Everything is read from /proc, statvfs and adjtimex(2); a figure that cannot be read is None
(a container without /proc/meminfo, a seccomp filter refusing adjtimex), never an error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_STA_UNSYNC = 0x0040  # <linux/timex.h>: the kernel clock is not synchronised (no NTP discipline)
_TIME_ERROR = 5  # adjtimex's return value while the clock is unsynchronised
# systemd-timesyncd's runtime directory, there while it runs, and the file it creates in it once it has
# synchronised since boot (/run is a tmpfs): read when adjtimex is refused, as under our units, whose
# ProtectClock= filters the whole @clock syscall set, reading included
TIMESYNCD_RUN = Path("/run/systemd/timesync")


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """`struct timex` of <sys/timex.h> (glibc, Linux), with the trailing padding the kernel may write."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    # find_library runs ldconfig (~1.4 ms): once per process, not at every dashboard sample or syslog check
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def clock_synced() -> bool | None:
    """True when the kernel clock is disciplined by NTP (chrony, timesyncd, ntpd); None when unknown."""
    try:
        tx = _Timex()  # modes 0: read only
        state = _libc().adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        state = -1
    if state >= 0:
        return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)
    return timesyncd_synced(TIMESYNCD_RUN)


def timesyncd_synced(run_dir: Path) -> bool | None:
    """What systemd-timesyncd says when adjtimex cannot be asked: True once it has synchronised since boot, False
    while it runs and has not (a box without an RTC before its first NTP answer, at its image's date or 1970),
    None when it does not run (chrony or ntpd keep the clock: they leave no such file) or cannot be read."""
    try:
        if (run_dir / "synchronized").exists():
            return True
        return False if run_dir.is_dir() else None
    except OSError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStatus:
    uptime_s: float | None
    clock_synced: bool | None
    cpu_percent: float | None  # all cores, since the previous sample (None on the first one)
    load1: float | None
    mem_total: int | None  # bytes
    mem_available: int | None
    disk_total: int | None  # bytes, of the file system holding data_dir
    disk_free: int | None  # available to the gateway (not root's reserve)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HostSampler:
    """Samples the host; CPU use is the busy share of /proc/stat's jiffies between two samples."""

    def __init__(self, data_dir: Path, proc: Path = Path("/proc")) -> None:
        self.data_dir = Path(data_dir)
        self.proc = proc
        self._cpu: tuple[int, int] | None = None  # (busy, total) jiffies of the previous sample

    def sample(self) -> HostStatus:
        mem = self._meminfo()
        disk_total = disk_free = None
        try:
            st = os.statvfs(self.data_dir)
            disk_total, disk_free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        except OSError:
            pass
        try:
            load1: float | None = os.getloadavg()[0]
        except OSError:
            load1 = None
        return HostStatus(
            uptime_s=self._uptime(),
            clock_synced=clock_synced(),
            cpu_percent=self._cpu_percent(),
            load1=load1,
            mem_total=mem.get("MemTotal"),
            mem_available=mem.get("MemAvailable"),
            disk_total=disk_total,
            disk_free=disk_free,
        )

    def _uptime(self) -> float | None:
        try:
            return float((self.proc / "uptime").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _meminfo(self) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            text = (self.proc / "meminfo").read_text()
        except OSError:
            return out
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
        return out

    def _cpu_percent(self) -> float | None:
        try:
            first = (self.proc / "stat").read_text().splitlines()[0].split()
            jiffies = [int(v) for v in first[1:]]
        except (OSError, ValueError, IndexError):
            return None
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        total = sum(jiffies[:8])
        idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)
        busy = total - idle
        previous, self._cpu = self._cpu, (busy, total)
        if previous is None or total <= previous[1]:
            return None
        return round(100.0 * (busy - previous[0]) / (total - previous[1]), 1)

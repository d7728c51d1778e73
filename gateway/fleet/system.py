"""What the box itself says about its health: CPU, memory, disk, clock synchronisation, last backup, addresses.

Each probe is cheap (a /proc read, a statvfs, one adjtimex call) and returns None where the box
cannot tell, so a probe that does not apply (no /proc on a developer's laptop) never fails a tick.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["BACKUP_FILE", "SystemFacts", "clock_synchronised", "ip_addresses", "last_backup", "probe"]

# written by the backup tool: {"at": <epoch s>, "ok": true|false, "detail": "..."}
BACKUP_FILE = "backup.json"
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemFacts:
    cpu_load_percent: float | None  # 1-minute load average over the CPU count
    memory_used_percent: float | None
    disk_free_percent: float | None  # in the data directory
    disk_free_bytes: int | None
    clock_synchronised: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clock_synchronised() -> bool | None:
    """The kernel's view (adjtimex's TIME_ERROR state, what `timedatectl` shows as 'synchronized')."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads without changing
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def _memory_used_percent() -> float | None:
    try:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
        return 100.0 * (1 - fields["MemAvailable"] / fields["MemTotal"])
    except (OSError, KeyError, ValueError, IndexError, ZeroDivisionError):
        return None


def probe(data_dir: Path) -> SystemFacts:
    try:
        load: float | None = 100.0 * os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        load = None
    try:
        usage = shutil.disk_usage(data_dir)
        free_pct: float | None = 100.0 * usage.free / usage.total if usage.total else None
        free: int | None = usage.free
    except OSError:
        free_pct, free = None, None
    return SystemFacts(
        cpu_load_percent=load,
        memory_used_percent=_memory_used_percent(),
        disk_free_percent=free_pct,
        disk_free_bytes=free,
        clock_synchronised=clock_synchronised(),
    )


def last_backup(data_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((data_dir / BACKUP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("at"), (int, float)):
        return None
    return {"at": float(doc["at"]), "ok": bool(doc.get("ok", False))}


def ip_addresses() -> list[str]:
    """The box's addresses as the outside sees them: the source address of a route to the internet
    (no packet is sent; a UDP connect only picks the route); empty when there is no route."""
    out: list[str] = []
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                out.append(s.getsockname()[0])
        except OSError:
            continue
    return out

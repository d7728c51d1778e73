"""What the box itself says about its health: CPU, memory, disk, clock synchronisation, last backup, addresses.

Host figures come from gateway/host.py (the dashboard's), the last backup from what gateway/backup records;
each is None where the box cannot tell, so a probe that does not apply never fails a tick.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.backup.schedule import read_status
from gateway.host import HostSampler

__all__ = ["SystemFacts", "ip_addresses", "last_backup", "probe"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemFacts:
    cpu_load_percent: float | None  # 1-minute load average over the CPU count
    memory_used_percent: float | None
    disk_free_percent: float | None  # in the data directory
    disk_free_bytes: int | None
    clock_synchronised: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(data_dir: Path) -> SystemFacts:
    """The Device entity's figures, from the same host sample the dashboard shows (gateway/host.py)."""
    h = HostSampler(data_dir).sample()
    mem = 100.0 * (1 - h.mem_available / h.mem_total) if h.mem_total and h.mem_available is not None else None
    disk = 100.0 * h.disk_free / h.disk_total if h.disk_total and h.disk_free is not None else None
    return SystemFacts(
        cpu_load_percent=None if h.load1 is None else 100.0 * h.load1 / (os.cpu_count() or 1),
        memory_used_percent=mem,
        disk_free_percent=disk,
        disk_free_bytes=h.disk_free,
        clock_synchronised=h.clock_synced,
    )


def last_backup(data_dir: Path) -> dict[str, Any] | None:
    """The newest backup outcome the backup tool recorded: `{"at": epoch s, "ok": bool}`, or None before any."""
    status = read_status(data_dir)
    outcomes = [
        (datetime.fromisoformat(status[key]["at"]).timestamp(), ok)
        for key, ok in (("last_success", True), ("last_failure", False))
        if isinstance(status.get(key), dict) and isinstance(status[key].get("at"), str)
    ]
    if not outcomes:
        return None
    at, ok = max(outcomes)
    return {"at": at, "ok": ok}


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

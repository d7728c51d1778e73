"""Free loopback ports for real peers in tests."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restartable_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a peer stopped and started again on it.

    While such a peer is down, a client connecting to it from an ephemeral port can be given that very
    port and connect to itself (TCP simultaneous open), and then hold it: the race bench's uplink
    broker could not start again after its outage ("Address already in use" for over 10 s). No
    client is ever given a port below the range.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port between {max(1024, low - 12_000)} and {low}")

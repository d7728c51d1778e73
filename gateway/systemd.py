"""sd_notify for `Type=notify` units: READY, RELOADING, STOPPING and watchdog pings over NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time


class Notifier:
    """Does nothing when not started by systemd (no NOTIFY_SOCKET), so the same code runs everywhere."""

    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        self.address = address
        # ping at half the interval systemd expects, as sd_watchdog_enabled(3) advises
        self.watchdog_interval_s = watchdog_usec / 2_000_000 if watchdog_usec else 3600.0
        self._watchdog = bool(watchdog_usec)

    @classmethod
    def from_environment(cls) -> Notifier:
        address = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog = int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(address, watchdog)

    def _send(self, message: str) -> None:
        if not self.address:
            return
        address = self.address
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        # suppress covers the send only (it is entered after the socket is made): systemd gone (shutdown)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(message.encode(), address)

    def ready(self, status: str = "") -> None:
        self._send(f"READY=1\nSTATUS={status}" if status else "READY=1")

    def reloading(self) -> None:
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        if self._watchdog:
            self._send("WATCHDOG=1")

    async def feed_watchdog(self) -> None:
        """Ping every `watchdog_interval_s` until cancelled; returns at once when systemd wants no pings.

        A task of its own, not a step of the gateway's main loop: that loop waits for a reload (stopping
        adapters, the buffer's integrity check, ~5 s per million rows) which may outlast WatchdogSec on
        a healthy box. What systemd must catch is a blocked event loop, and then this task stops too.
        """
        if not self._watchdog:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_interval_s)

"""sd_notify for `Type=notify` units: READY, RELOADING, STOPPING and watchdog pings over NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from gateway.logs import StateLog

log = logging.getLogger(__name__)


class Notifier:
    """Does nothing when not started by systemd (no NOTIFY_SOCKET), so the same code runs everywhere.

    A notification that cannot be sent (no descriptor free for a moment, systemd gone at shutdown) is
    logged and dropped, never raised: a raise would abort the reload or the orderly stop it belongs to,
    or end the watchdog's pings for good and get a recovered gateway killed at WatchdogSec.
    """

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

    def _try_send(self, message: str) -> Exception | None:
        """Send `message`; the error if it could not be sent (None when sent, or when there is no systemd)."""
        if not self.address:
            return None
        address = self.address
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        try:
            # the socket is made here too: EMFILE/ENFILE/ENOBUFS come from socket(), not only from sendto()
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), address)
        except (OSError, ValueError) as exc:  # ValueError: a STATUS text that cannot be encoded
            return exc
        return None

    def _send(self, message: str) -> None:
        error = self._try_send(message)
        if error is not None:  # one line per event: these are rare (start, reload, stop), never repeated
            log.warning("systemd notification %s not sent to %s: %s", message.split("\n")[0], self.address, error)

    def ready(self, status: str = "") -> None:
        self._send(f"READY=1\nSTATUS={status}" if status else "READY=1")

    def reloading(self) -> None:
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        if self._watchdog:
            self._try_send("WATCHDOG=1")

    async def feed_watchdog(self) -> None:
        """Ping every `watchdog_interval_s` until cancelled; returns at once when systemd wants no pings.

        A task of its own, not a step of the gateway's main loop: that loop waits for a reload (stopping
        adapters, the buffer's integrity check, ~5 s per million rows) which may outlast WatchdogSec on
        a healthy box. What systemd must catch is a blocked event loop, and then this task stops too.
        A ping that fails is tried again at the next one; the spell is logged once, and its end.
        """
        if not self._watchdog:
            return
        failing = StateLog(log)
        while True:
            error = self._try_send("WATCHDOG=1")
            if error is None:
                failing.ok("systemd watchdog: pings go through again")
            elif not failing.fail(
                True,
                logging.WARNING,
                "systemd watchdog: ping not sent to %s: %s; systemd stops the gateway if no ping goes through "
                "for %.1f s (WatchdogSec)",
                self.address,
                error,
                self.watchdog_interval_s * 2,
            ):
                log.debug("systemd watchdog: ping not sent again: %s", error)
            await asyncio.sleep(self.watchdog_interval_s)

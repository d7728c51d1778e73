"""A RADIUS accounting server in its own process, for the kill -9 test: `python -m ... DATA_DIR PORT SECRET [die]`.

With `die` it kills itself (SIGKILL) right after the first batch is committed, before any response.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime

from adapters.radius.codec import AccountingRequest
from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog.sessions import SessionEvent
from gateway.wifilog.store import WifiLogStore


class _DyingServer(RadiusAccountingServer):
    def commit(self, requests: list[AccountingRequest]) -> list[SessionEvent]:
        super().commit(requests)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("killed")  # pragma: no cover


async def main(data_dir: str, port: int, secret: str, die: bool) -> None:
    store = WifiLogStore(data_dir)
    cls = _DyingServer if die else RadiusAccountingServer
    server = cls(store, {"127.0.0.1": secret.encode()}, clock=lambda: datetime.now(UTC))
    await server.start("127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], len(sys.argv) > 4))

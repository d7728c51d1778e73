"""The web UI's connections to the gateway's control socket: a few, so that a slow op never holds the pages.

Theory of operation: the gateway answers the requests of one connection in turn, and some ops take seconds by
design: a `command` waits for its device up to the router's deadline (10 s for a locker board that took an
unlock and went quiet), an apply or a rollback reloads the gateway. Over one shared connection every page and
every poll of every open browser waited behind such an op, and a librarian's dashboard stood still.

A call borrows a connection (a ControlClient, which opens its one connection on first use and again after a
failure) that no other call is using: an idle one, else a new one while fewer than `size` are open, else it
waits for one. The ops in SLOW_OPS hold at most `size - 1` connections at once, so one is always left for the
quick ops the pages and their polls make; slow ops wait for each other, never the pages for them. A call waits
for a connection at most the op's own timeout (then ControlUnavailable, which the pages show as the gateway
not answering; counted in `starved`, a WARNING when such a spell starts and an INFO when it ends), and then as
long again for its reply. Connections are kept between calls (the gateway closes one idle for a minute, and its
client opens it again): never more than `size` are open, and `close()` closes them all. A call cancelled midway
(a browser that went away while its page waited) may have left its request unanswered on its connection: the
client closes that connection itself (ControlClient.call), so its late reply never answers another call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway import logs
from gateway.control.client import OP_TIMEOUTS_S, ControlClient
from gateway.control.protocol import ControlUnavailable

log = logging.getLogger(__name__)

# The ops the web UI calls that take seconds by design (see gateway/control/README.md's table).
SLOW_OPS = frozenset({"command", "config.apply", "config.rollback", "reload", "fleet.probe"})
# Three slow ops at once (librarians unlocking, a technician applying a config) and one connection for the
# pages; the gateway takes 64 connections from all its clients together.
DEFAULT_SIZE = 4


class ControlPool:
    """`call(op, **args)` as ControlClient's, over at most `size` connections; see the module's docstring."""

    def __init__(self, path: Path, *, size: int = DEFAULT_SIZE, timeout_s: float = 5.0) -> None:
        if size < 2:
            raise ValueError(f"control pool: size must be 2 or more (one is kept for quick ops), got {size}")
        self.path = Path(path)
        self.size = size
        self.timeout_s = timeout_s
        self._any = asyncio.Semaphore(size)
        self._slow = asyncio.Semaphore(size - 1)
        self._idle: list[ControlClient] = []
        self._lent: set[ControlClient] = set()
        self._starved = logs.StateLog(log)  # a spell of calls that found no connection free
        self.starved = 0  # calls refused so, since the UI started
        self._starved_in_spell = 0

    def timeout_for(self, op: str) -> float:
        """As ControlClient.timeout_for: the longest a call of `op` waits for a connection, and then for its reply."""
        return max(self.timeout_s, OP_TIMEOUTS_S.get(op, 0.0))

    async def call(self, op: str, **args: Any) -> Any:
        """The op's result; ControlError on an error reply, ControlUnavailable when no gateway answers or no
        connection came free within the op's timeout."""
        async with self._borrow(op) as client:
            return await client.call(op, **args)

    @contextlib.asynccontextmanager
    async def _borrow(self, op: str) -> AsyncIterator[ControlClient]:
        timeout_s = self.timeout_for(op)
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout(timeout_s):
                    if op in SLOW_OPS:
                        await held.enter_async_context(self._slow)
                    await held.enter_async_context(self._any)
            except TimeoutError:
                self.starved += 1
                self._starved_in_spell += 1
                self._starved.fail(
                    "starved",
                    logging.WARNING,
                    "web: control socket %s: no connection free for %s within %g s, refusing calls until one is; %s",
                    self.path,
                    op,
                    timeout_s,
                    self._bound(),
                )
                raise ControlUnavailable(
                    f"control socket {self.path}: no connection free for {op} within {timeout_s:g} s; "
                    f"{self._bound()}; try again in a moment"
                ) from None
            if self._starved.ok(
                "web: control socket %s: a connection free again, after %d call(s) refused",
                self.path,
                self._starved_in_spell,
            ):
                self._starved_in_spell = 0
            client = self._idle.pop() if self._idle else ControlClient(self.path, self.timeout_s)
            self._lent.add(client)
            try:
                yield client
            finally:
                self._give_back(client)  # a cancelled call's client has closed its connection itself

    def _bound(self) -> str:
        return f"the web UI opens at most {self.size} connections, {self.size - 1} of them for slow ops ({', '.join(sorted(SLOW_OPS))})"

    def _give_back(self, client: ControlClient) -> None:
        self._lent.discard(client)
        self._idle.append(client)

    async def close(self) -> None:
        """Closes every connection; calls still running finish on theirs first (ControlClient.close waits)."""
        clients = [*self._idle, *self._lent]
        self._idle.clear()
        self._lent.clear()
        for client in clients:
            await client.close()

    async def __aenter__(self) -> ControlPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

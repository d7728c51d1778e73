"""ControlClient: calls an op of the running gateway over its control socket (used by `edgegw web` and tools)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import itertools
from pathlib import Path
from typing import Any

from gateway.commands import CALLER_WAIT_S
from gateway.control.protocol import (
    BUSY,
    ControlError,
    ControlUnavailable,
    LineFramer,
    TooLong,
    decode_reply,
    encode_request,
)

# Replies can be large (the latest values of 100,000 entities): bounded anyway, so a confused peer
# cannot make the web process allocate without end.
MAX_REPLY = 256 * 1024 * 1024
_CHUNK = 256 * 1024
_PAUSE_GC_ABOVE = 64 * 1024
# Ops that run longer than a client's usual timeout by design, and the least each is given: a
# `command` waits out the router's own deadline, so its caller reads the router's answer instead of
# giving up while the device may still act (an unlock after the kiosk said it failed).
OP_TIMEOUTS_S = {"command": CALLER_WAIT_S}
# The group the socket admits besides the gateway's user (systemd/edgegw.service's Group=, the package's user)
GATEWAY_GROUP = "edgegw"


def _decode(line: bytes) -> tuple[Any, Any]:
    """`decode_reply`, without the cyclic GC for a large reply.

    Decoding the latest values of 5,000 entities makes ~100,000 containers at once; in a process
    with the default GC thresholds that starts a pass every 700 of them, over everything alive:
    measured 27-70 ms instead of 11 ms for a 2 MB reply. The objects hold no cycles, so pausing
    the collector during the decode loses nothing (left paused if the caller had paused it).
    """
    if len(line) < _PAUSE_GC_ABOVE or not gc.isenabled():
        return decode_reply(line)
    gc.disable()
    try:
        return decode_reply(line)
    finally:
        gc.enable()


class ControlClient:
    """One connection to the gateway, opened on first use and again after a failure; calls take turns."""

    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = LineFramer(MAX_REPLY)
        self._pending: list[bytes | TooLong] = []
        self._replied = False  # a byte of this call's reply has come: sending it again could run it twice
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    def timeout_for(self, op: str) -> float:
        """Seconds a call of `op` waits for its reply: `timeout_s`, or longer for an op in OP_TIMEOUTS_S."""
        return max(self.timeout_s, OP_TIMEOUTS_S.get(op, 0.0))

    async def call(self, op: str, **args: Any) -> Any:
        """The op's result; ControlError on an error reply, ControlUnavailable when no gateway answers."""
        async with self._lock:
            request_id = next(self._ids)
            request = encode_request(request_id, op, args)
            timeout_s = self.timeout_for(op)
            try:
                async with asyncio.timeout(timeout_s):
                    kept = await self._connect()
                    try:
                        line = await self._exchange(request)
                    except (OSError, EOFError):
                        if not kept or self._replied:
                            raise
                        # The server closes a connection idle for a minute by resetting it; a request
                        # sent in the moment before this side saw that is reset unread, never run.
                        # One new connection serves it, as HTTP clients do for a kept-alive one. The
                        # one case it could have run — the gateway stopping mid-op — has no
                        # listener left, so the retry is refused.
                        await self._drop()
                        await self._connect()
                        line = await self._exchange(request)
            except asyncio.CancelledError:
                # the caller went away (a browser closed, a stop) with the request maybe sent: its reply would
                # answer the next call. Closed at once, not awaited: this task is being cancelled
                self._abandon()
                raise
            except TimeoutError:
                await self._drop()  # a late reply would answer the next call: start afresh
                raise ControlUnavailable(
                    f"control socket {self.path}: no reply to {op} within {timeout_s:g} s; is the gateway busy or stopped?"
                ) from None
            except PermissionError as exc:  # EACCES/EPERM: a gateway is there, this user may not talk to it
                await self._drop()
                code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                raise ControlUnavailable(
                    f"control socket {self.path}: permission denied, got {code} ({exc.strerror or exc}); "
                    f"run as the gateway's user or a member of its group ({GATEWAY_GROUP})"
                ) from None
            except (OSError, EOFError) as exc:
                await self._drop()
                raise ControlUnavailable(
                    f"control socket {self.path}: the gateway is not answering, got {type(exc).__name__}: {exc}; "
                    "is edgegw running?"
                ) from None
            try:
                reply_id, result = _decode(line)  # an error reply raises here
            except ControlError as exc:
                # the cap's refusal closes the connection (a tool's busy does not: reconnecting is cheap)
                if exc.code == BUSY:
                    await self._drop()
                raise
            if reply_id != request_id:
                await self._drop()
                raise ControlError("malformed", f"reply: for request {reply_id!r}, got it for {request_id}")
            return result

    async def _exchange(self, request: bytes) -> bytes:
        assert self._writer is not None
        self._writer.write(request)
        await self._writer.drain()
        return await self._line()

    async def _connect(self) -> bool:
        """True if the connection kept from an earlier call serves this one, False if a new one does."""
        self._replied = False
        if self._writer is not None:
            assert self._reader is not None
            if not (self._reader.at_eof() or self._writer.is_closing()):
                return True
            # closed by the server since the last call (it closes connections idle for a minute):
            # nothing was sent on it, so a new one serves this call instead of failing it
            await self._drop()
        self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        self._framer = LineFramer(MAX_REPLY)
        self._pending = []
        return False

    async def _line(self) -> bytes:
        assert self._reader is not None
        while not self._pending:
            data = await self._reader.read(_CHUNK)
            if not data:
                raise EOFError("the gateway closed the connection")
            self._replied = True
            self._pending.extend(self._framer.feed(data))
        item = self._pending.pop(0)
        if isinstance(item, TooLong):
            raise ControlError("too_large", f"reply: longer than {MAX_REPLY} bytes, got {item.size}")
        return item

    async def _drop(self) -> None:
        writer = self._abandon()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _abandon(self) -> asyncio.StreamWriter | None:
        """The connection closed and forgotten (the next call opens a new one); its writer, to wait for."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
        return writer

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

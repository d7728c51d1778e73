"""The control socket server: a Unix socket (owner and group only) answering the ops of protocol.py.

Theory of operation: `serve()` in gateway/app.py starts one ControlServer before the gateway and
stops it after; it lives across reloads and asks its target for the current `Gateway` on every
request. Each connection reads requests in order and answers each before reading the next. A bad
request (malformed, too long, unknown op, bad arguments) gets an error reply naming what was wrong
and is counted (`status` shows the counts); nothing a client sends or fails to read can stop the
gateway. The data path never waits on the socket: ops read what the gateway keeps in memory, or
go to the buffer's writer thread like any stats call; a large `latest` yields to the loop while
it builds.

Limits: the gateway shares its descriptor table with its devices and the buffer, so clients cannot
hold connections without end. At most `max_connections` are open at once; one more is answered
`busy` (id null) and closed. A connection that waits longer than `idle_timeout_s` for its client —
for the next complete request (a partial line is still waiting) or for it to take a reply — is
closed; the time an op takes to answer is not counted. Both are counted (`refused_busy`,
`idle_closed`); a spell of refusals is logged once at its start and once at its end. A connection
holds at most one unfinished line (MAX_LINE, 6 MiB) and, while its op runs, the decoded arguments;
all connections together hold at most `line_budget` bytes of requests (LINE_BUDGET), counted from a
request's first byte until it is answered: a connection whose bytes would pass it is answered `busy`
and closed (counted in `refused_busy` too). Without it, 64 clients each mid-way through a largest
line peaked at ~460 MiB (measured, x86-64), past the unit's MemoryMax=256M. One limit for every op:
the framer must decide before the op is known (it may follow the text).

Start: a socket file left by a killed gateway (nobody accepts on it) is replaced; one another
gateway answers on is an error (`ControlSocketInUse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway import logs
from gateway.control import args as a
from gateway.control.ops_config import ConfigOps
from gateway.control.ops_fleet import FleetOps
from gateway.control.protocol import (
    BAD_ARGS,
    BUSY,
    INTERNAL,
    MALFORMED,
    MAX_LINE,
    TOO_LARGE,
    UNKNOWN_OP,
    ControlError,
    LineFramer,
    TooLong,
    decode_request,
    encode_error,
    encode_result,
    error_from,
)
from gateway.control.target import ControlTarget
from gateway.control.tools import Jobs, Tool, load_tools
from gateway.errors import GatewayError
from gateway.host import HostSampler
from gateway.records import Command, Reading, iso_utc

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660  # owner and group: the web process runs as another user in the gateway's group
LATEST_LIMIT = 100_000
_LATEST_CHUNK = 5_000  # entities formatted between two yields to the event loop
_CHUNK = 256 * 1024
STOP_WAIT_S = 1.0  # for requests under way at stop, before they are cancelled
# Status is shared by the clients asking within this long: its buffer figures are counted on the
# buffer's writer thread, and five browsers polling must not each add a count between commits.
STATUS_MAX_AGE_S = 1.0
ALERT_TYPE = "Alert"  # gateway.processing.river's Smart Data Model Alert entities
# Long enough for a person typing a request into socat; a client keeping its connection between requests
# (edgegw web, the kiosk) must connect again after a quieter spell. An op's own time (a command waiting
# on its device, fleet.probe's delivery) does not count.
IDLE_TIMEOUT_S = 60.0
# The web UI and the kiosk keep one connection each, a CLI call or a script one while it runs; far
# below the descriptors the devices and the buffer need, far above what those clients use.
MAX_CONNECTIONS = 64
# Bytes of requests held for all connections together (unfinished lines, and lines until their op
# answers): ten largest lines at once, far more than the web UI and the tools send; with it, clients
# cannot take the gateway near edgegw.service's MemoryMax=256M (see the README's figure).
LINE_BUDGET = 64 * 1024 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlSocketError(GatewayError):
    """The socket cannot be opened (a path too long for AF_UNIX, no permission): the gateway runs without it."""

    code = "control_socket_error"


class ControlSocketInUse(ControlSocketError):
    """Another gateway answers on the path: this one must not start (two on one data_dir would share a buffer)."""

    code = "control_socket_in_use"


MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (Linux)


class ControlServer:
    def __init__(
        self,
        path: Path,
        target: ControlTarget,
        *,
        tools: list[Tool] | None = None,
        clock: Callable[[], float] = time.time,
        max_line: int = MAX_LINE,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
        line_budget: int = LINE_BUDGET,
    ) -> None:
        if line_budget < max_line:  # a largest request could never be taken
            raise ValueError(
                f"control socket: line_budget must hold one largest request line, got {line_budget} "
                f"below max_line {max_line}"
            )
        self.path = Path(path)
        self.target = target
        self.clock = clock
        self.max_line = max_line
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.line_budget = line_budget
        self.line_bytes = 0  # of requests held for all connections (the budget's use)
        self.config_ops = ConfigOps(target, clock)
        self.jobs = Jobs(load_tools() if tools is None else tools)
        self.host = HostSampler(Path(target.config.gateway.data_dir))
        self.requests = 0
        self.bad_requests: Counter[str] = Counter()  # error code -> requests refused with it
        self.refused_busy = 0  # connections refused at the cap
        self.idle_closed = 0  # connections closed after idle_timeout_s waiting on their client
        self._full = logs.StateLog(log)  # a spell at the cap
        self._refused_before = 0  # refused_busy when the spell began
        self._over_budget = logs.StateLog(log)  # a spell of connections refused for the line budget
        self._refused_budget = 0  # refused for the budget in the current spell
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._status: tuple[float, Any, dict[str, Any]] | None = None  # (monotonic time, gateway, document)
        self._status_lock = asyncio.Lock()
        c = self.config_ops
        fleet = FleetOps(target)
        self.ops: dict[str, Handler] = {
            "status": self.op_status,
            "latest": self.op_latest,
            "dead_letters": self.op_dead_letters,
            "retry_dead_letters": self.op_retry_dead_letters,
            "discard_dead_letters": self.op_discard_dead_letters,
            "config.get": c.op_get,
            "config.check": c.op_check,
            "config.apply": c.op_apply,
            "config.versions": c.op_versions,
            "config.version": c.op_version,
            "config.rollback": c.op_rollback,
            "reload": c.op_reload,
            "command": self.op_command,
            "logs": self.op_logs,
            "tools": self.op_tools,
            "tool.start": self.op_tool_start,
            "tool.poll": self.op_tool_poll,
            "mail.status": self.op_mail_status,
            "mail.failures": self.op_mail_failures,
            "fleet.config.offer": fleet.op_offer,
            "fleet.alarms": fleet.op_alarms,
            "fleet.safe_mode.clear": fleet.op_safe_mode_clear,
            "fleet.probe": fleet.op_probe,
        }

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        size = len(os.fsencode(self.path))
        if size > MAX_PATH:
            raise ControlSocketError(
                f"control socket {self.path}: path longer than {MAX_PATH} bytes, got {size}; "
                "set [gateway] control_socket to a shorter path",
                path=str(self.path),
            )
        await self._clear_stale()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        except OSError as exc:
            raise ControlSocketError(
                f"control socket {self.path}: cannot listen, got {exc.strerror or exc}; "
                "check that the gateway's user may write in that directory",
                path=str(self.path),
            ) from None
        # after bind: the umask (0077 under systemd) made it owner-only, and the web runs in the group
        os.chmod(self.path, SOCKET_MODE)
        self._inode = self.path.stat().st_ino
        log.info("control socket listening on %s", self.path)

    async def refuse_if_live(self) -> None:
        """ControlSocketInUse if another gateway answers on the path; a stale socket file is removed."""
        await self._clear_stale()

    async def _clear_stale(self) -> None:
        try:
            mode = self.path.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there (its directory may not exist yet: the buffer makes data_dir)
        except OSError as exc:
            raise ControlSocketError(
                f"control socket {self.path}: cannot look at it, got {exc.strerror or exc}", path=str(self.path)
            ) from None
        if not stat.S_ISSOCK(mode):
            raise ControlSocketInUse(
                f"control socket {self.path}: something else is at that path, got a "
                f"{'directory' if stat.S_ISDIR(mode) else 'file'}; remove it or set [gateway] control_socket",
                path=str(self.path),
            )
        try:
            async with asyncio.timeout(1.0):
                _, writer = await asyncio.open_unix_connection(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
            log.info("control socket %s: replacing the one a stopped gateway left", self.path)
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                raise ControlSocketError(
                    f"control socket {self.path}: a stopped gateway's socket cannot be removed, got "
                    f"{exc.strerror or exc}; remove it, or give the gateway's user write access to {self.path.parent}",
                    path=str(self.path),
                ) from None
            return
        except OSError as exc:
            raise ControlSocketError(
                f"control socket {self.path}: cannot tell whether a gateway answers on it, got {exc.strerror or exc}",
                path=str(self.path),
            ) from None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise ControlSocketInUse(
            f"control socket {self.path}: another gateway answers on it, got a connection; "
            "stop that gateway first, or give this one its own data_dir or [gateway] control_socket",
            path=str(self.path),
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()  # an idle connection's read ends; one in the middle of an op finishes it
        if self._tasks:
            _, slow = await asyncio.wait(list(self._tasks), timeout=STOP_WAIT_S)
            for task in slow:
                task.cancel()
            await asyncio.gather(*slow, return_exceptions=True)
        await self.jobs.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            # only our own socket: a gateway started meanwhile on the same path keeps its
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- connections ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit(writer):
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        intake = _Intake(self.max_line)
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout_s):
                    items = await self._requests(reader, intake)
                if items is None:
                    writer.write(self._over_budget_reply(intake))
                    async with asyncio.timeout(self.idle_timeout_s):
                        await self._drop_line(reader, intake)
                    break
                if not items:
                    break
                while items:
                    size = len(items[0]) if isinstance(items[0], bytes) else 0
                    writer.write(await self._reply(items.pop(0)))  # popped, not iterated: see the del in _reply
                    self._release(intake, size)
                    async with asyncio.timeout(self.idle_timeout_s):  # a client that never reads its replies
                        await writer.drain()
        except TimeoutError:  # before OSError, which it is
            self.idle_closed += 1
            log.debug("control socket: closed a connection whose client did nothing for %g s", self.idle_timeout_s)
            writer.transport.abort()  # a reply it never read must not keep the descriptor open
        except (ConnectionError, OSError):
            pass  # a client gone mid-request: nothing to answer, nobody else affected
        except asyncio.CancelledError:
            # the server is stopping; asyncio's callback for a connection task reports a cancelled
            # one as an unhandled error, so the task ends normally instead
            return
        except Exception:  # a bug here must not take the gateway down; the request is lost, the socket stays
            log.exception("control socket: connection handler failed")
        finally:
            self._release(intake, intake.held)
            self._connections.discard(writer)
            self._tasks.discard(task)
            writer.close()

    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        """True if there is room for this connection; else it is answered `busy` and closed."""
        cap = self.max_connections
        if len(self._connections) >= cap:
            if self._full.fail(
                True,
                logging.WARNING,
                "control socket %s: %d connections open, the most it takes; refusing more until some close "
                "(is a client opening connections without closing them?)",
                self.path,
                cap,
            ):
                self._refused_before = self.refused_busy
            self.refused_busy += 1
            busy = ControlError(
                BUSY,
                f"control socket: at most {cap} connections at once, got {cap + 1}; try again in a moment "
                f"(an idle connection is closed after {self.idle_timeout_s:g} s)",
            )
            writer.write(encode_error(None, busy))
            writer.close()
            return False
        self._connections.add(writer)
        # over only with a slot to spare: a client that takes each freed slot at once keeps the spell going
        if len(self._connections) < cap:
            self._full.ok(
                "control socket %s: taking connections again, after refusing %d",
                self.path,
                self.refused_busy - self._refused_before,
            )
        return True

    async def _requests(self, reader: asyncio.StreamReader, intake: _Intake) -> list[bytes | TooLong] | None:
        """The next complete requests (and too-long markers) the client sent; [] once it has hung up, None when
        holding what it sent would pass the line budget."""
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return []
            items = intake.framer.feed(data)
            held = intake.holding(items)
            if held > intake.held:
                wanted = self.line_bytes + held - intake.held
                if wanted > self.line_budget:
                    intake.refused_at = wanted
                    return None
            self.line_bytes += held - intake.held
            intake.held = held
            if items:
                return items

    async def _drop_line(self, reader: asyncio.StreamReader, intake: _Intake) -> None:
        """Read the refused line to its end, keeping none of it: closed with it unread, the client's write
        fails (a broken pipe) before it reads the `busy` it was sent; bounded like a line."""
        if not intake.framer.pending:  # what it sent ended with its line (or one past max_line, skipped)
            return
        left = self.max_line - intake.framer.pending
        while left > 0:
            data = await reader.read(_CHUNK)
            if not data or b"\n" in data:
                return
            left -= len(data)

    def _release(self, intake: _Intake, size: int) -> None:
        """`size` bytes of this connection's requests no longer held: answered, or the connection ended."""
        self.line_bytes -= size
        intake.held -= size
        # over only with room for a largest line: refusals interleaved with small requests are one spell
        if self.line_bytes <= self.line_budget - self.max_line:
            self._over_budget.ok(
                "control socket %s: room for the largest request again, %d connection(s) refused meanwhile",
                self.path,
                self._refused_budget,
            )

    def _over_budget_reply(self, intake: _Intake) -> bytes:
        if self._over_budget.fail(
            True,
            logging.WARNING,
            "control socket %s: requests being received or answered hold %d bytes at most, got %d; refusing "
            "connections that would need more (many large requests at once: a client sending config texts in a loop?)",
            self.path,
            self.line_budget,
            intake.refused_at,
        ):
            self._refused_budget = 0
        self._refused_budget += 1
        self.refused_busy += 1
        busy = ControlError(
            BUSY,
            f"control socket: at most {self.line_budget} bytes of requests held for all clients at once, got "
            f"{intake.refused_at}; try again in a moment (a request is held from its first byte until it is answered)",
        )
        return encode_error(None, busy)

    async def _reply(self, item: bytes | TooLong) -> bytes:
        self.requests += 1
        if isinstance(item, TooLong):
            return self._refuse(
                None,
                ControlError(TOO_LARGE, f"request: longer than {self.max_line} bytes, got {item.size} or more"),
            )
        try:
            request = decode_request(item)
        except ControlError as exc:
            return self._refuse(None, exc)
        # The op needs only the decoded text, not the line beside it (up to 6 MiB): dropping it took
        # 64 connections in a config check at once from ~580 to ~350 MiB.
        del item
        handler = self.ops.get(request.op)
        if handler is None:
            return self._refuse(
                request.id,
                ControlError(UNKNOWN_OP, f'request.op: unknown op, got "{request.op}"; ops: {", ".join(self.ops)}'),
            )
        try:
            result = await handler(request.args)
        except ControlError as exc:
            return self._refuse(request.id, exc)
        except (GatewayError, ValueError) as exc:  # a refusal the gateway explains (an unknown uplink…)
            return self._refuse(request.id, ControlError(getattr(exc, "code", BAD_ARGS), str(exc)))
        except Exception as exc:
            log.warning("control socket: %s failed: %s", request.op, exc, exc_info=True)
            return self._refuse(request.id, error_from(exc))
        return encode_result(request.id, result)

    def _refuse(self, request_id: Any, error: ControlError) -> bytes:
        if error.code in (MALFORMED, TOO_LARGE, UNKNOWN_OP, BAD_ARGS, INTERNAL):
            self.bad_requests[error.code] += 1
            log.debug("control socket: refused a request: %s", error.message)
        return encode_error(request_id, error)

    def counters(self) -> dict[str, Any]:
        return {
            "connections": len(self._connections),
            "requests": self.requests,
            "bad_requests": dict(sorted(self.bad_requests.items())),
            "refused_busy": self.refused_busy,
            "idle_closed": self.idle_closed,
        }

    # --- ops -----------------------------------------------------------------------------------

    async def op_status(self, args: dict[str, Any]) -> dict[str, Any]:
        gw = self.target.gateway
        async with self._status_lock:  # a client asking meanwhile gets this same document
            cached = self._status
            if cached is not None and cached[1] is gw and time.monotonic() - cached[0] < STATUS_MAX_AGE_S:
                doc = dict(cached[2])
            else:
                doc = await gw.status()
                caps = gw.config.buffer
                # sampled with the document: CPU use over polls milliseconds apart would be noise
                self.host.data_dir = Path(gw.config.gateway.data_dir)  # a reload may have moved it
                doc["host"] = (await asyncio.to_thread(self.host.sample)).to_dict()
                doc["buffer_caps"] = {
                    "max_rows": caps.max_rows,
                    "max_bytes": caps.max_bytes,
                    "max_age_s": caps.max_age_s,
                }
                doc["alerts"] = active_alerts(list(gw.latest.values()))
                self._status = (time.monotonic(), gw, doc)
                doc = dict(doc)
        doc["control"] = self.counters()
        return doc

    async def op_latest(self, args: dict[str, Any]) -> dict[str, Any]:
        needle = a.text(args, "filter", "").casefold()
        limit = a.integer(args, "limit", 10_000, hi=LATEST_LIMIT)
        readings = list(self.target.gateway.latest.values())  # a copy: readings keep arriving meanwhile
        if needle:
            readings = [
                r
                for r in readings
                if needle in r.entity_id.casefold()
                or needle in r.entity_type.casefold()
                or needle in r.source.adapter.casefold()
            ]
        total = len(readings)
        readings.sort(key=lambda r: r.entity_id)
        entities: list[dict[str, Any]] = []
        for start in range(0, min(total, limit), _LATEST_CHUNK):
            if start:
                await asyncio.sleep(0)  # let the data path run between chunks
            entities.extend(entity_doc(r) for r in readings[start : min(start + _LATEST_CHUNK, limit)])
        return {"total": total, "entities": entities}

    def _outbox(self) -> Any:
        outbox = self.target.gateway.outbox
        if outbox is None:
            raise ControlError("unavailable", "buffer: not open, got a gateway between two generations; try again")
        return outbox

    async def op_dead_letters(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        uplink = a.optional_text(args, "uplink")
        limit = a.integer(args, "limit", 100, hi=10_000)
        offset = a.integer(args, "offset", 0)
        letters = await self._outbox().dead_letters(uplink, limit, offset)
        return [
            d.to_dict() | {"entity_type": d.reading.entity_type, "failed_at": d.created_at.timestamp()} for d in letters
        ]

    def _mail(self) -> Any:
        gw = self.target.gateway
        if gw.mail_queue is None or gw.mail_sender is None:
            raise ControlError("unavailable", "mail: not configured, got no [mail] section; add one to send e-mail")
        return gw

    async def op_mail_status(self, args: dict[str, Any]) -> dict[str, Any]:
        gw = self._mail()
        if "id" not in args:  # the sender's counters and the queue's counts
            diagnostics: dict[str, Any] = gw.mail_sender.diagnostics()
            return diagnostics
        mail_id = a.integer(args, "id")
        status = await gw.mail_queue.status(mail_id)
        if status is None:
            raise ControlError("not_found", f"mail.status: no such mail, got id {mail_id}")
        result: dict[str, Any] = status.to_dict()
        return result

    async def op_mail_failures(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        gw = self._mail()
        limit = a.integer(args, "limit", 100, lo=1, hi=1000)
        purpose = a.optional_text(args, "purpose")
        return [f.to_dict() for f in await gw.mail_queue.failures(limit, purpose)]

    async def op_retry_dead_letters(self, args: dict[str, Any]) -> dict[str, int]:
        uplink, ids = a.optional_text(args, "uplink"), a.integers(args, "ids")
        return {"count": await self._outbox().retry_dead_letters(uplink, ids)}

    async def op_discard_dead_letters(self, args: dict[str, Any]) -> dict[str, int]:
        uplink, ids = a.optional_text(args, "uplink"), a.integers(args, "ids")
        return {"count": await self._outbox().discard_dead_letters(uplink, ids)}

    async def op_command(self, args: dict[str, Any]) -> dict[str, Any]:
        command = Command(
            command_id=uuid.uuid4().hex,
            entity_id=a.text(args, "entity_id"),
            name=a.text(args, "name"),
            value=args.get("value"),
            uplink="control",
        )
        a.text(args, "actor")  # the web audits who; the gateway's log names the entity and command only
        result = await self.target.gateway.router.dispatch(command)
        return {"command_id": result.command_id, "ok": result.ok, "info": result.info}

    async def op_logs(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        level = a.text(args, "level", "info")
        try:
            return logs.RING.lines(
                level=level, component=a.text(args, "component", ""), limit=a.integer(args, "limit", 500, hi=5_000)
            )
        except ValueError as exc:
            raise ControlError(BAD_ARGS, str(exc).replace("logs.", "args.")) from None

    async def op_tools(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.jobs.describe()

    async def op_tool_start(self, args: dict[str, Any]) -> dict[str, str]:
        job = self.jobs.start(a.text(args, "family"), a.text(args, "tool"), a.mapping(args, "args"))
        return {"job": job}

    async def op_tool_poll(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.jobs.poll(a.text(args, "job"), a.integer(args, "after", 0))


class _Intake:
    """One connection's framer, and the bytes of its requests the server holds for the line budget."""

    __slots__ = ("framer", "held", "refused_at")

    def __init__(self, max_line: int) -> None:
        self.framer = LineFramer(max_line)
        self.held = 0  # counted in ControlServer.line_bytes
        self.refused_at = 0  # line_bytes this connection would have taken the server to

    def holding(self, items: list[bytes | TooLong]) -> int:
        """Bytes held once the framer has given `items`: the complete lines not yet answered and the
        unfinished one (the framer holds none of a line past its limit: it skips to the newline)."""
        return sum(len(item) for item in items if isinstance(item, bytes)) + self.framer.pending


# --- documents -------------------------------------------------------------------------------------


def entity_doc(reading: Reading) -> dict[str, Any]:
    return {
        "entity_id": reading.entity_id,
        "entity_type": reading.entity_type,
        "adapter": reading.source.adapter,
        "device": reading.source.device,
        "observed_at": iso_utc(reading.observed_at),
        "lane": reading.lane.name.lower(),
        "attributes": [
            {
                "name": name,
                "value": attr.value,
                "type": attr.type,
                "unit": attr.unit,
                "quality": _quality(attr.metadata),
            }
            for name, attr in reading.attributes.items()
        ],
    }


def _quality(metadata: Any) -> list[str]:
    quality = metadata.get("quality") if metadata else None
    value = quality.get("value") if isinstance(quality, dict) else None
    return [str(code) for code in value] if isinstance(value, list) else []


def active_alerts(readings: Any) -> list[dict[str, Any]]:
    """The river alerts in force: per station, its newest `Alert` if that was a rise over a threshold."""
    newest: dict[str, Reading] = {}
    for r in readings:
        if r.entity_type != ALERT_TYPE:
            continue
        source = r.attributes.get("alertSource")
        station = str(source.value) if source is not None else r.entity_id
        if station not in newest or r.observed_at > newest[station].observed_at:
            newest[station] = r
    out = []
    for station, r in sorted(newest.items()):
        attrs = r.attributes
        if _value(attrs, "direction") != "up":
            continue
        level = attrs.get("waterLevel")
        out.append(
            {
                "entity_id": station,
                "name": _value(attrs, "thresholdName"),
                "level": _value(attrs, "severity"),
                "since": r.observed_at.timestamp(),
                "value": None if level is None else level.value,
                "unit": None if level is None else level.unit,
            }
        )
    return out


def _value(attrs: Any, name: str) -> Any:
    attr = attrs.get(name)
    return None if attr is None else attr.value


__all__ = ["SOCKET_MODE", "ControlServer", "ControlSocketError", "ControlSocketInUse", "active_alerts", "entity_doc"]

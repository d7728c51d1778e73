"""Tools families contribute to the control socket (a Modbus probe, a one-off read), run as jobs with progress.

A family declares a callable in the `edgegw.tools` entry-point group returning its `Tool`s; the
runtime never names a family. A job runs in the gateway process (it holds the serial ports), one
at a time per family (two probes on one bus would garble each other), and keeps its progress
lines and the tool it runs for `tool.poll`, so any client (the web UI after its restart, a second web
process, a browser showing the CLI's job) can say what a job is without having started it. A job's failure is its result (`ok` false, the error as its last line),
never the gateway's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from gateway.control.protocol import BAD_ARGS, BUSY, NOT_FOUND, ControlError

log = logging.getLogger(__name__)

TOOLS_GROUP = "edgegw.tools"
MAX_LINES = 10_000  # a job's kept output; a probe of 247 units at 8 speeds stays far below
KEEP_JOBS = 20  # finished jobs kept for a late poll

Progress = Callable[[str], None]
_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    name: str
    type: str  # "str" | "int" | "float" | "bool"
    required: bool = False
    default: Any = None
    help: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    family: str
    tool: str
    title: str
    params: tuple[Param, ...]
    run: Callable[[Mapping[str, Any], Progress], Awaitable[bool]] = field(repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "tool": self.tool,
            "title": self.title,
            "params": [
                {"name": p.name, "type": p.type, "required": p.required, "default": p.default, "help": p.help}
                for p in self.params
            ],
        }

    def bind(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """`args` checked against the params, defaults filled in; ControlError naming each problem."""
        known = {p.name for p in self.params}
        errors = [f"args.{name}: unknown parameter, got {value!r}" for name, value in args.items() if name not in known]
        out: dict[str, Any] = {}
        for p in self.params:
            value = args.get(p.name)
            if value is None:
                if p.required:
                    errors.append(f"args.{p.name}: required, got nothing")
                out[p.name] = p.default
            elif not isinstance(value, _TYPES[p.type]) or (p.type != "bool" and isinstance(value, bool)):
                errors.append(f"args.{p.name}: must be {p.type}, got {type(value).__name__}")
            else:
                out[p.name] = value
        if errors:
            raise ControlError(BAD_ARGS, f"{self.family} {self.tool}: {len(errors)} bad argument(s)", errors)
        return out


def load_tools(providers: Iterable[Callable[[], Iterable[Tool]]] | None = None) -> list[Tool]:
    """The tools of every family installed (or of `providers`); a broken family is logged and left out."""
    if providers is None:
        found: list[Callable[[], Iterable[Tool]]] = []
        for ep in entry_points(group=TOOLS_GROUP):
            try:
                found.append(ep.load())
            except Exception as exc:  # one family's broken import must not hide the others' tools
                log.warning("tools of %s not loaded: %s", ep.name, exc)
        providers = found
    tools: list[Tool] = []
    for provider in providers:
        tools.extend(provider())
    return tools


@dataclass(slots=True)
class _Job:
    id: str
    family: str
    tool: str
    title: str  # the family's English title, for a client whose catalog has none for the tool
    lines: list[str] = field(default_factory=list)
    done: bool = False
    ok: bool | None = None
    task: asyncio.Task[None] | None = None


class Jobs:
    """Runs tools; `start` returns at once with a job id, `poll` pages through its lines."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools = {(t.family, t.tool): t for t in tools}
        self._jobs: dict[str, _Job] = {}
        self._running: dict[str, _Job] = {}  # family -> its running job
        self._ids = itertools.count(1)
        # numbers start at 1 with every gateway start: the start's own token keeps a page left open on an
        # earlier start's job from following a new job that took its number
        self._start = secrets.token_hex(3)

    def describe(self) -> list[dict[str, Any]]:
        return [t.describe() for t in self.tools.values()]

    def start(self, family: str, tool: str, args: Mapping[str, Any]) -> str:
        found = self.tools.get((family, tool))
        if found is None:
            names = ", ".join(f"{f}/{t}" for f, t in self.tools) or "none"
            raise ControlError(NOT_FOUND, f"tool.start: no such tool, got {family}/{tool}; tools: {names}")
        bound = found.bind(args)
        if family in self._running:
            raise ControlError(
                BUSY, f"tool.start: a {family} job is running, got another; wait for job {self._running[family].id}"
            )
        job = _Job(id=f"{family}-{self._start}-{next(self._ids)}", family=family, tool=tool, title=found.title)
        self._jobs[job.id] = job
        self._running[family] = job
        job.task = asyncio.create_task(self._run(job, found, bound), name=f"tool:{job.id}")
        for old in list(self._jobs.values())[:-KEEP_JOBS]:
            if old.done:
                del self._jobs[old.id]
        return job.id

    async def _run(self, job: _Job, tool: Tool, args: dict[str, Any]) -> None:
        def progress(line: str) -> None:
            if len(job.lines) < MAX_LINES:
                job.lines.append(line)

        log.info("tool %s/%s started (job %s)", tool.family, tool.tool, job.id)
        try:
            job.ok = bool(await tool.run(args, progress))
        except asyncio.CancelledError:
            job.lines.append("cancelled: the gateway is stopping")
            job.ok = False
            raise
        except Exception as exc:  # the tool's failure is the job's result, not the gateway's
            job.lines.append(f"{tool.family} {tool.tool}: failed, got {type(exc).__name__}: {exc}")
            job.ok = False
        finally:
            job.done = True
            self._running.pop(job.family, None)
            log.info("tool %s/%s ended (job %s, ok %s)", tool.family, tool.tool, job.id, job.ok)

    def poll(self, job_id: str, after: int) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise ControlError(NOT_FOUND, f"tool.poll: no such job, got {job_id!r}")
        lines = job.lines[after:]
        return {
            "lines": lines,
            "next": after + len(lines),
            "done": job.done,
            "ok": job.ok,
            "family": job.family,
            "tool": job.tool,
            "title": job.title,
        }

    async def close(self) -> None:
        tasks = [j.task for j in self._running.values() if j.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""Runs each adapter as its own task, restarts it with backoff when it fails, and reports its state."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.adapter_api import Adapter, AdapterConfig
from gateway.backoff import Backoff
from gateway.diagnostics import DiagnosticsReader
from gateway.logs import StateLog, component_logger
from gateway.records import Emit, EmitFlush, EmitMany, Reading, emit_many

log = logging.getLogger(__name__)

# safe mode's stop of one crash-looping adapter: as long as a stop gives the adapters (app.STOP_DEADLINE_S less
# the second kept for the buffer's close), so a close hung in a thread holds the fleet's tick no longer than that
STOP_ONE_TIMEOUT_S = 3.0


class AdapterState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing-off"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterStatus:
    name: str
    type: str
    state: AdapterState
    last_error: str
    restarts: int
    emitted: int
    since: float  # wall-clock time of the last state change
    malformed: int = 0  # inputs the adapter dropped as malformed (the total of its diagnostics' `malformed`)
    invalid: int = 0  # readings the gateway refused by Orion's rules (counted by the gateway, not here)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the adapter's own, if it has diagnostics()


class _Supervised:
    def __init__(
        self,
        config: AdapterConfig,
        adapter: Adapter,
        emit: Emit,
        backoff: Backoff,
        stable_after_s: float,
        emit_many: EmitMany | None = None,
        flush: EmitFlush | None = None,
    ) -> None:
        self.config = config
        self.adapter = adapter
        self.backoff = backoff
        self.stable_after_s = stable_after_s
        self.state = AdapterState.STARTING
        self.last_error = ""
        self.restarts = 0  # since the start, for the status
        self._spell_restarts = 0  # of the failing spell going on, for the line that ends it
        self.emitted = 0
        self.since = time.time()
        self.task: asyncio.Task[None] | None = None
        self.log = component_logger(__name__, config.name)
        self._diagnostics = DiagnosticsReader("adapter", adapter, self.log)
        # a failing spell: each new error at WARNING, the same one again at DEBUG; its end once at INFO
        self._failing = StateLog(self.log)
        self._emit = emit
        self._emit_many = emit_many
        self._flush = flush

    def emit(self, reading: Reading) -> Awaitable[None]:
        self.emitted += 1
        return self._emit(reading)

    def emit_many(self, readings: Sequence[Reading]) -> Awaitable[None]:
        self.emitted += len(readings)
        if self._emit_many is None:
            return emit_many(self._emit, readings)  # one call per reading
        return self._emit_many(readings)

    def flush(self) -> None:
        """Commit what this adapter emitted without waiting for more (gateway.records.EmitFlush)."""
        if self._flush is not None:
            self._flush()

    # The adapter's emit is this object: `emit(reading)`, `emit.many(readings)` for a burst
    # (gateway.records.emit_many) and `emit.flush()` when it emits nothing more until a commit.
    __call__ = emit
    many = emit_many

    def _set(self, state: AdapterState) -> None:
        self.state = state
        self.since = time.time()

    def _ran_stable(self) -> None:
        """The adapter has run `stable_after_s` since its last restart: a failing spell is over."""
        self._failing.ok("adapter running again after %d restarts", self._spell_restarts)
        self._spell_restarts = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = time.monotonic()
            self._set(AdapterState.RUNNING)
            stable = loop.call_later(self.stable_after_s, self._ran_stable)
            try:
                try:
                    await self.adapter.run(self)
                finally:
                    stable.cancel()  # before any backoff sleep: a spell is over only by running, not by waiting
                # an adapter that returns on its own has nothing more to read (a finite simulation)
                self._set(AdapterState.STOPPED)
                self.log.info("adapter finished")
                return
            except asyncio.CancelledError as exc:
                if _being_cancelled():
                    self._set(AdapterState.STOPPED)
                    raise
                # the adapter's own (a library let a cancelled inner future escape): taken for a stop, it ended
                # the adapter for good, without a line
                await self._failed(
                    exc, started, f"CancelledError: {str(exc) or 'raised inside the adapter, not a stop'}"
                )
            except Exception as exc:  # one adapter's failure must never stop the others
                if _being_cancelled():
                    # a stop the adapter's library turned into its own error (a client's "closed"): still a stop;
                    # restarted, the adapter would run on after stop_one called it stopped
                    self._set(AdapterState.STOPPED)
                    raise asyncio.CancelledError from exc
                await self._failed(exc, started)

    async def _failed(self, exc: BaseException, started: float, error: str = "") -> None:
        """Record and log a failure of the adapter's run, then wait out its backoff before the next start."""
        self.last_error = error or f"{type(exc).__name__}: {exc}"
        if time.monotonic() - started > self.stable_after_s:
            self.backoff.reset()
        delay = self.backoff.next()
        self.restarts += 1
        self._spell_restarts += 1
        self._set(AdapterState.BACKING_OFF)
        if not self._failing.fail(
            self.last_error,
            logging.WARNING,
            "adapter failed: %s; restarting in %.1f s",
            self.last_error,
            delay,
            exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
        ):
            self.log.debug(
                "adapter failed again (restart %d): %s; restarting in %.1f s",
                self.restarts,
                self.last_error,
                delay,
            )
        await asyncio.sleep(delay)

    def status(self) -> AdapterStatus:
        diagnostics = self._diagnostics.read()
        return AdapterStatus(
            name=self.config.name,
            type=self.config.type,
            state=self.state,
            last_error=self.last_error,
            restarts=self.restarts,
            emitted=self.emitted,
            since=self.since,
            malformed=_total(diagnostics.get("malformed")),
            diagnostics=diagnostics,
        )


def _being_cancelled() -> bool:
    """Whether a CancelledError in this task is its own cancellation (a stop), not one an adapter let escape.

    `cancelling()` counts the cancel() requests not yet taken back by uncancel() (asyncio.timeout's, which
    the supervisor does not use around an adapter): a stray CancelledError from a library leaves it at 0.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _drop_result(task: asyncio.Task[None]) -> None:
    """An adapter's end after stop(): its exception retrieved, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def _left_behind(item: _Supervised, timeout_s: float | None) -> None:
    item.log.warning(
        "adapter did not stop within %.1f s of being told to; left behind, and what it emits once "
        "the buffer is closed is refused",
        timeout_s,
    )


def _total(counts: object) -> int:
    """A `malformed` entry as one number: the sum of a reason → count mapping, or the count itself."""
    if isinstance(counts, Mapping):
        return sum(v for v in counts.values() if isinstance(v, int))
    return counts if isinstance(counts, int) else 0


class Supervisor:
    def __init__(
        self,
        emit: Emit,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stable_after_s: float = 60.0,
        emit_many: EmitMany | None = None,
        flush: EmitFlush | None = None,
    ) -> None:
        self._emit = emit
        self._emit_many = emit_many
        self._flush = flush
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stable_after_s = stable_after_s
        self._items: list[_Supervised] = []

    def start(self, adapters: Sequence[tuple[AdapterConfig, Adapter]]) -> None:
        for config, adapter in adapters:
            item = _Supervised(
                config,
                adapter,
                self._emit,
                Backoff(*self._backoff),
                self._stable_after_s,
                self._emit_many,
                self._flush,
            )
            item.task = asyncio.create_task(item.run(), name=f"adapter:{config.name}")
            self._items.append(item)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Cancel every adapter and wait for them, at most `timeout_s`. One stuck where cancellation does
        not reach (a close in a thread on a hung USB adapter) is named and left behind: a stop (SIGTERM,
        a reload) must still close the buffer after it, with what the others emitted committed."""
        tasks = {i.task: i for i in self._items if i.task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in tasks.keys() - pending:
                _drop_result(task)  # its own end; an error is in its last_error already
            for task in pending:
                task.add_done_callback(_drop_result)
                _left_behind(tasks[task], timeout_s)
        for item in self._items:
            item.state = AdapterState.STOPPED

    async def stop_one(self, name: str, timeout_s: float = STOP_ONE_TIMEOUT_S) -> bool:
        """Stop one adapter (safe mode: a crash-looping adapter); the others keep running. False if unknown.

        Bounded as `stop` is: one whose close hangs is named and left behind, and marked stopped.
        """
        for item in self._items:
            if item.config.name == name and item.task is not None:
                item.task.cancel()
                # asyncio.wait, as in stop(): its timeout leaves a hung task running instead of waiting on it
                _, pending = await asyncio.wait([item.task], timeout=timeout_s)
                if pending:
                    item.task.add_done_callback(_drop_result)
                    _left_behind(item, timeout_s)
                else:
                    _drop_result(item.task)
                item.state = AdapterState.STOPPED
                return True
        return False

    def status(self) -> list[AdapterStatus]:
        return [i.status() for i in self._items]

    def run_state(self, name: str) -> tuple[str, str] | None:
        """(state, last error) of one adapter, None if not supervised: the command router's view
        (gateway.commands.AdapterStates), cheap enough for every command, unlike `status()`."""
        for item in self._items:
            if item.config.name == name:
                return item.state.value, item.last_error
        return None

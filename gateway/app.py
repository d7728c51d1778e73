"""Wires config → adapters → buffer → delivery loops, and runs them until SIGTERM; SIGHUP or the control socket reloads."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import platform
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway import __version__, logs, redact, registry, systemd
from gateway.adapter_api import AdapterContext
from gateway.audit.log import AuditLog
from gateway.buffer.location import BUFFER_FILE, data_dir_error
from gateway.buffer.outbox import Outbox
from gateway.commands import CommandRouter
from gateway.config import GatewayConfig, load_config, start_warnings
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.errors import ConfigError, ReadingError
from gateway.eventloop import loop_factory
from gateway.ngsi.check import check_reading
from gateway.processing.registry import build_stage
from gateway.processing.stage import Stage
from gateway.records import Command, CommandResult, Reading, utc_now
from gateway.run_lock import DataDirInUse, DataDirLock
from gateway.secrets import SecretStore
from gateway.storage.files import write_atomic
from gateway.supervisor import Supervisor
from gateway.uplinks.api import CommandSource

if TYPE_CHECKING:
    # Imported in Gateway.start() only when configured: the fleet service brings aiohttp and
    # prometheus_client, the mail sender aiosmtplib, ~35 MB resident together, which a gateway without
    # [fleet] or [mail] must not carry (issue 18: ≤ 70 MB while draining; tests/test_lazy_imports.py).
    from gateway.fleet.service import FleetService
    from gateway.mail import MailQueue, MailSender

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
# Owner and group only: the status holds the far side's error texts (redacted, yet not for everyone).
STATUS_MODE = 0o640
# commands given on the box (the control socket: web UI, CLI): their own caller audits them, with who
LOCAL_COMMAND_SOURCES = frozenset({"control"})
EXIT_SOCKET_IN_USE = 2  # gateway/cli.py's EXIT_CONFIG: the box needs a technician, not a restart
STOP_DEADLINE_S = 4.0  # SIGTERM must end within 5 s (systemd's and the bound)
# The latest reading per entity, for the control socket's `latest`: bounded so that a source of
# one-off event entities cannot grow it without end; trimmed to LATEST_KEEP, newest observations kept.
LATEST_MAX = 100_000
LATEST_KEEP = 90_000


_M_TRIM_THRESHOLD = -1  # mallopt() parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
# After this many readings delivered since the last time, and with every delivery loop idle, the heap's
# free pages go back to the kernel (Gateway.release_memory).
_RELEASE_AFTER_READINGS = 20_000


def tune_runtime() -> None:
    """Process-wide settings for a long-running gateway; `serve()` calls it once at start.

    - The cyclic GC: the spine allocates several container objects per reading (dicts, Readings,
      Attributes, lists) and frees them by reference counting, yet each 700 allocations start a
      young-generation pass and every few passes an older one over what is alive: with the whole
      import graph alive that was measurable at 50,000 readings/s. `gc.freeze()` moves what exists
      at start (modules, config, classes) out of every later pass. The first threshold counts
      container objects allocated and not yet freed since the last pass: a source's chunk of 2,000
      readings alone is ~10,000 of them, so at 10,000 nearly every chunk started a pass over its
      live readings (~4 % of the time at 50,000 readings/s, 340 ms in 8 s); at 50,000 a pass
      comes only when that many objects stay alive (10 ms in 8 s, measured). Cycles are still
      collected.
    - glibc malloc: by default it returns freed memory at the top of the heap to the kernel as soon
      as 128 KiB are free there, so every batch (thousands of ~1 KiB orjson buffers freed together)
      gave its pages back and the next batch took them again, one page fault per 4 KiB: measured, an
      orjson.dumps of a float cost 2.2 µs instead of 0.08 µs when the results were kept for a batch.
      Keeping up to 16 MiB free at the top (and serving blocks up to 1 MiB from the heap, as glibc's
      own adaptive threshold would after the first large free) removes that; RSS grows by at most that.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(None)
            libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
            libc.mallopt(_M_TRIM_THRESHOLD, 16 << 20)
        except (OSError, AttributeError) as exc:  # a tuning, never a reason not to start
            log.debug("malloc tuning skipped: %s", exc)


class Gateway:
    """One generation of the running gateway; a reload stops it and starts a new one on the same buffer."""

    # the fleet service's ticks run on their own; tests set False and call `fleet.tick(now)`, with `fleet_clock`
    fleet_autotick = True
    fleet_clock: Any = None  # None: time.time

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.context = AdapterContext(
            gateway_id=config.gateway.id,
            data_dir=str(config.gateway.data_dir),
            keep_old_days=_keep_old_days(config),
            value_encoding=config.ngsi.value_encoding,
        )
        self.outbox: Outbox | None = None
        self.supervisor: Supervisor | None = None
        self.loops: list[DeliveryLoop] = []
        self._loop_tasks: list[asyncio.Task[None]] = []
        self.router = CommandRouter()
        self._audit_log: AuditLog | None = None  # opened at the first platform command
        self.command_sources: list[CommandSource] = []  # uplinks that also receive commands
        self.invalid_readings = 0
        self.invalid_by_adapter: Counter[str] = Counter()
        self._invalid_seen: set[tuple[str, str]] = set()
        self._done: asyncio.Future[None] | None = None
        self.started_at = time.time()
        self._buffer_closed = False
        self._buffer_stats: dict[str, Any] = {}  # the last ones read, for the status written after stop()
        self._released_at = 0  # readings delivered when memory was last given back
        self.stage: Stage | None = None  # None when nothing is configured: readings skip it altogether
        # entity id -> its latest valid reading (after processing); one dict assignment per reading
        self.latest: dict[str, Reading] = {}
        self.mail_queue: MailQueue | None = None  # with a [mail] section: the one outgoing-mail component
        self.mail_sender: MailSender | None = None
        self.mail_error: str | None = None  # the mail queue could not open: readings go on without mail
        self.fleet: FleetService | None = None  # with a [fleet] section: gateway/fleet
        self.control_target: Any = None  # the Runtime: remote configuration applies through it
        self.clean_stop = True  # False when serve() ends by an exception (gateway/fleet/safemode.py)

    def release_memory(self) -> None:
        """Once a backlog is drained (every delivery loop idle after many readings), give the heap's free
        pages back to the kernel.

        Draining holds a few thousand readings at a time (the buffer's tail, batches in flight, the
        source's window); freed, their memory stays with the process (glibc keeps up to 16 MiB free at
        the heap's top on purpose, see tune_runtime, and pages inside the heap until asked), so the
        peak of a drain stayed the resident size for good. malloc_trim(0) returns both: a few ms, at
        most once per _RELEASE_AFTER_READINGS readings, and only when nothing is being delivered.
        """
        delivered = sum(loop.delivered for loop in self.loops)
        if delivered - self._released_at < _RELEASE_AFTER_READINGS:
            return
        if any(loop.state is not UplinkState.IDLE for loop in self.loops):
            return
        self._released_at = delivered
        gc.collect()  # cycles among what the drain left (futures, tasks) first, so their blocks are free too
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                ctypes.CDLL(None).malloc_trim(0)
            except (OSError, AttributeError) as exc:
                log.debug("malloc_trim skipped: %s", exc)

    async def _audit_command(self, command: Command, result: CommandResult) -> None:
        """The platform's commands go into the audit log the web UI keeps (an unlock is an action on the
        box); the UI and the CLI audit their own, with the person who gave them."""
        if command.uplink in LOCAL_COMMAND_SOURCES:
            return
        if self._audit_log is None:
            cfg = self.config
            self._audit_log = await asyncio.to_thread(AuditLog, cfg.web.state_path(Path(cfg.gateway.data_dir)))
        await asyncio.to_thread(
            self._audit_log.append,
            actor=f"platform:{command.uplink or 'unknown'}",
            action="command",
            target=command.entity_id,
            # never the command's value: it may be personal (a pickup code, a card number)
            detail={"name": command.name, "command_id": command.command_id, "ok": result.ok, "info": result.info},
            at=time.time(),
        )

    def _emit(self, reading: Reading) -> asyncio.Future[None]:
        assert self.outbox is not None
        if self.stage is not None:
            # the stage may drop a reading or add an Alert to it: the burst path handles both
            return self._emit_many(self.stage.process(reading, utc_now()), processed=True)  # type: ignore[return-value]
        try:
            check_reading(reading, encoding=self.config.ngsi.value_encoding)
        except ReadingError as exc:
            self._invalid(reading, exc)
            return self._nothing()
        self.router.note(reading)  # ~0.1 µs for a known entity: which adapter a command for it goes to
        latest = self.latest
        latest[reading.entity_id] = reading  # ~0.04 µs (measured): what the UI's live values show
        if len(latest) > LATEST_MAX:
            self._trim_latest()
        return self.outbox.append(reading)  # type: ignore[return-value]

    def _flush(self) -> None:
        if self.outbox is not None:
            self.outbox.seal()

    def _emit_many(self, readings: Sequence[Reading], *, processed: bool = False) -> Awaitable[None]:
        """`_emit` for a burst: processed, then the valid readings go to the buffer in one append."""
        assert self.outbox is not None
        if self.stage is not None and not processed:
            readings = self.stage.process_many(readings, utc_now())
        encoding = self.config.ngsi.value_encoding
        note = self.router.note
        latest = self.latest
        valid: list[Reading] = []
        for reading in readings:
            try:
                check_reading(reading, encoding=encoding)
            except ReadingError as exc:
                self._invalid(reading, exc)
                continue
            note(reading)
            latest[reading.entity_id] = reading
            valid.append(reading)
        if len(latest) > LATEST_MAX:
            self._trim_latest()
        return self.outbox.append_many(valid) if valid else self._nothing()

    def _trim_latest(self) -> None:
        """Forget the entities observed longest ago, down to LATEST_KEEP (rare: a bound, not a cache)."""
        keep = sorted(self.latest.values(), key=lambda r: r.observed_at, reverse=True)[:LATEST_KEEP]
        self.latest = {r.entity_id: r for r in reversed(keep)}

    def _invalid(self, reading: Reading, exc: ReadingError) -> None:
        # a device sent something no broker would accept: count it, say so once per
        # adapter and entity, and keep going without storing it
        self.invalid_readings += 1
        self.invalid_by_adapter[reading.source.adapter] += 1
        key = (reading.source.adapter, reading.entity_id)
        if key not in self._invalid_seen and len(self._invalid_seen) < 10_000:
            self._invalid_seen.add(key)
            log.warning("reading dropped: %s", exc, extra={"component": reading.source.adapter})
        else:
            log.debug("reading dropped: %s", exc, extra={"component": reading.source.adapter})

    def _nothing(self) -> asyncio.Future[None]:
        """An awaitable that is already done: nothing was stored, so there is no commit to wait for."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            self._done.set_result(None)
        return self._done

    async def start(self) -> None:
        cfg = self.config
        data_dir = Path(cfg.gateway.data_dir)
        # an upgrade: the secret store's format moves forward on start like every sqlite store (in a thread:
        # a file read, a key check and maybe a rewrite, none of which the loop should wait for)
        await asyncio.to_thread(SecretStore(data_dir).migrate)
        # creates data_dir; BufferUnavailable (exit 2) with the path and the fix if it cannot be used
        self.outbox = await Outbox.open(data_dir / BUFFER_FILE, cfg.buffer, [u.name for u in cfg.uplinks])
        uplinks: list[object] = []
        for ucfg in cfg.uplinks:
            uplink = registry.load(registry.UPLINK_GROUP, ucfg.type)(ucfg, self.context)
            uplinks.append(uplink)
            loop = DeliveryLoop(uplink, ucfg, self.outbox)
            self.loops.append(loop)
            self._loop_tasks.append(asyncio.create_task(loop.run(), name=f"uplink:{ucfg.name}"))
        if cfg.mail is not None:  # before the adapters: they get the queue in their context
            from gateway.mail import MailQueue, MailSender  # only when configured: see the imports above
            from gateway.mail.queue import MailQueueKeyError

            try:
                self.mail_queue = await MailQueue.open(data_dir)
            except MailQueueKeyError as exc:
                # the waiting mails are kept for the right key; readings are what this box is for, so
                # they go on, and lockers and alarms say that no mail can be sent (status: mail.error)
                self.mail_error = str(exc)
                log.error("mail is not running: %s", exc)
            else:
                self.mail_sender = MailSender(cfg.mail, self.mail_queue, data_dir)
                self.mail_sender.start()
                self.context = replace(self.context, mail=self.mail_queue)
        safe_mode = False
        if cfg.fleet is not None:  # before the adapters: a crash-looping gateway starts none (safe mode)
            from gateway.fleet.service import FleetService  # only when configured: see the imports above

            self.fleet = FleetService(
                self, cfg.fleet, self._emit_many, target=self.control_target, clock=self.fleet_clock or time.time
            )
            safe_mode = self.fleet.boot()
        self.supervisor = Supervisor(self._emit, emit_many=self._emit_many, flush=self._flush)
        self.router.states = self.supervisor  # a failing adapter's commands are answered at once, not handed over
        adapters = [(a, registry.load(registry.ADAPTER_GROUP, a.type)(a, self.context)) for a in cfg.adapters]
        # built before any adapter runs: configured entries first (file order), then what adapters contribute.
        # In a thread: the river state store's open and the pseudonym key ring's load read files (seconds on a
        # slow SD card), and the uplinks deliver the backlog meanwhile
        self.stage = await asyncio.to_thread(
            build_stage,
            cfg.processing,
            self.context.processor_context(),
            [(a.name, adapter) for a, adapter in adapters],
        )
        running = [] if safe_mode else adapters
        for acfg, adapter in running:
            self.router.add_adapter(acfg.name, adapter)
        self.supervisor.start(running)
        for source in uplinks:
            if isinstance(source, CommandSource):  # a capability, not a family: see gateway/uplinks/api.py
                await source.start_commands(self.router)
                self.command_sources.append(source)
        if self.command_sources:
            self.router.on_result = self._audit_command
        if self.fleet is not None:
            await self.fleet.start(autotick=self.fleet_autotick)
        log.info(
            "gateway %s started: %d adapters, %d uplinks, buffer %s (%s durability)",
            cfg.gateway.id,
            len(cfg.adapters),
            len(cfg.uplinks),
            data_dir / BUFFER_FILE,
            cfg.buffer.durability.value,
        )

    async def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        t_end = time.monotonic() + deadline_s
        if self.fleet is not None:
            await self.fleet.stop(clean=self.clean_stop)
        if self.command_sources:  # no new commands while the adapters stop
            try:
                async with asyncio.timeout(0.5):
                    await asyncio.gather(*(c.stop_commands() for c in self.command_sources))
            except TimeoutError:
                log.warning("command sources did not stop within 0.5 s")
        if self.supervisor is not None:  # the uplinks and the buffer's close get the deadline's last second
            await self.supervisor.stop(timeout_s=max(0.5, t_end - time.monotonic() - 1.0))
        if self.mail_sender is not None:  # after the adapters, which may enqueue until they stop
            await self.mail_sender.stop()
        if self.mail_queue is not None:
            await self.mail_queue.close()
        # let each uplink finish the batch it is sending, then stop reading
        for loop in self.loops:
            loop.stop_soon()
        if self._loop_tasks:
            _, pending = await asyncio.wait(self._loop_tasks, timeout=max(0.1, (t_end - time.monotonic()) * 0.5))
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._loop_tasks, return_exceptions=True)
        if self.outbox is not None:
            self._buffer_closed = True
            await self.outbox.close()  # commits what adapters emitted before they stopped
        for loop in self.loops:
            try:
                async with asyncio.timeout(max(0.1, t_end - time.monotonic())):
                    await loop.uplink.close()
            except Exception as exc:  # closing is best effort; the data is safe in the buffer
                log.warning("uplink did not close cleanly: %s", exc, extra={"component": loop.config.name})

    async def __aenter__(self) -> Gateway:
        """`async with Gateway(config) as gw:` starts it, and stops it on the way out whatever happens inside."""
        try:
            await self.start()
        except BaseException:
            await self.stop()  # what started before the failure (the buffer, uplink loops) is stopped, not leaked
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def status(self) -> dict[str, Any]:
        """The status document, redacted: it is written to a file other users of the box may read."""
        if self.outbox is not None and not self._buffer_closed:
            self._buffer_stats = asdict(await self.outbox.stats())
        adapters = self.supervisor.status() if self.supervisor else []
        doc = {
            "gateway": self.config.gateway.id,
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "written_at": time.time(),
            "invalid_readings": self.invalid_readings,
            "adapters": [asdict(replace(s, invalid=self.invalid_by_adapter[s.name])) for s in adapters],
            "uplinks": [asdict(loop.status()) for loop in self.loops],
            "buffer": self._buffer_stats,
            "processing": self.stage.diagnostics() if self.stage is not None else [],
        }
        if self.mail_sender is not None:
            doc["mail"] = self.mail_sender.diagnostics()
        elif self.mail_error is not None:
            doc["mail"] = {"error": self.mail_error}
        if self.fleet is not None:
            doc["fleet"] = self.fleet.section()
        scrubbed: dict[str, Any] = redact.scrub(doc)
        return scrubbed


async def _write_status(gw: Gateway) -> None:
    path = Path(gw.config.gateway.data_dir) / STATUS_FILE
    doc = await gw.status()
    write_atomic(path, orjson.dumps(doc, default=str, option=orjson.OPT_INDENT_2), STATUS_MODE)


def _keep_old_days(config: GatewayConfig) -> int | None:
    """The shortest keep_old_days of the pseudonymize entries, None without any: it erases for all of them
    (one key ring), and the pseudonymizers adapters build for themselves follow it (ProcessorContext)."""
    days = [int(getattr(p, "keep_old_days")) for p in config.processing if p.type == "pseudonymize"]  # noqa: B009
    return min(days) if days else None


def same_data_dir(running: Path, new: Path) -> bool:
    """Whether `new` names the data directory `running` is: a symbolic link to it, or `dir/.`, is no move.

    The one comparison for the reload and a remote bundle's offer (gateway/fleet/remote.py): an offer
    that passed and a reload that refused would use up the bundle's serial for nothing.
    """
    try:
        return running.resolve() == new.resolve()
    except (OSError, RuntimeError):  # a link loop: not the directory that runs
        return running == new


def reload_problem(running: GatewayConfig, new: GatewayConfig) -> str | None:
    """Why `new` cannot replace `running` although it is valid on its own: it moves the data or the socket.

    The process holds the data directory (its lock, the buffer's backlog, the config history) and
    listens on the socket for its whole life: a reload that moved them left the backlog undelivered,
    the history behind and the tools looking at a path nobody listens on.
    """
    old, new_dir = Path(running.gateway.data_dir), Path(new.gateway.data_dir)
    if not same_data_dir(old, new_dir):
        # a directory that cannot be used at all is said first: moving it by a restart would fail too
        return data_dir_error(new_dir) or (
            f"gateway.data_dir: cannot change while the gateway runs, got {new_dir} (running with {old}); "
            f"the buffer's backlog and the config history are in {old}: stop the gateway, move what {old} "
            f"holds to {new_dir}, then start it"
        )
    listening, wanted = running.gateway.control_path(), new.gateway.control_path()
    # by default under data_dir: named through a link to it, the same socket
    if wanted.name != listening.name or not same_data_dir(listening.parent, wanted.parent):
        return (
            f"gateway.control_socket: cannot change while the gateway runs, got {wanted} (listening on "
            f"{listening}); the web UI and the edgegw tools look for it where the running gateway listens: "
            "restart the gateway to move it (systemctl restart edgegw)"
        )
    return None


class Runtime:
    """The running gateway across reloads: the current generation, and the one way to replace it.

    SIGHUP and the control socket (`reload`, `config.apply`) both call `reload()`, one at a time;
    it returns what refused the new configuration instead of only logging it, and leaves the
    running generation untouched when it refuses.
    """

    def __init__(self, config_path: Path, config: GatewayConfig, notifier: systemd.Notifier | None = None) -> None:
        self.config_path = Path(config_path)
        self.config = config
        self.gateway = Gateway(config)
        self.gateway.control_target = self
        self.notifier = notifier
        self.reloads = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.gateway.start()

    async def stop(self) -> None:
        await self.gateway.stop()

    async def reload(self, new: GatewayConfig | None = None) -> list[str]:
        """Replace the running generation with `new` (default: the config file read again).

        Returns [] when reloaded, else the errors (key-path lines) that refused it; the buffer and
        what adapters emitted before the stop are kept either way.
        """
        async with self._lock:
            if new is None:
                try:
                    new = load_config(self.config_path)
                except ConfigError as exc:
                    log.error("reload refused, keeping the running configuration: %s", exc)
                    self._ready("reload refused")
                    return list(exc.errors) or [str(exc)]
            problem = reload_problem(self.config, new)
            if problem is not None:  # checked before stopping anything: the running gateway keeps going
                log.error("reload refused, keeping the running configuration: %s", problem)
                self._ready("reload refused")
                return [problem]
            if self.notifier is not None:
                self.notifier.reloading()
            log.info("reloading configuration from %s", self.config_path)
            old = self.gateway
            await old.stop()
            logs.setup(new.gateway.log_level.value, new.gateway.log_format.value)
            _warn_of(self.config_path, new)
            gw = Gateway(new)
            gw.control_target = self
            gw.latest = old.latest  # the live values stay on screen across a reload
            try:
                await gw.start()
            except Exception as exc:  # a generation that cannot start: go back to the one that ran
                with contextlib.suppress(Exception):
                    await gw.stop()
                log.error("reload failed, restarting the previous configuration: %s", exc)
                gw = Gateway(self.config)
                gw.control_target = self
                gw.latest = old.latest
                await gw.start()
                self.gateway = gw
                self._ready("reload failed")
                return [f"reload: the new configuration did not start, got {type(exc).__name__}: {exc}"]
            self.config = new
            self.gateway = gw
            self.reloads += 1
            self._ready("reloaded")
            return []

    def _ready(self, text: str) -> None:
        if self.notifier is not None:
            self.notifier.ready(text)


def _warn_of(config_path: Path, config: GatewayConfig) -> None:
    """Once per start of a configuration, what `edgegw check-config` warns of; the uplinks say their own
    (credentials over plain http) at their start, naming themselves, so it is not said twice."""
    for line in start_warnings(config):
        log.warning("%s: %s", config_path, line)


async def serve(config_path: Path, status_interval_s: float | None = None) -> int:
    """`edgegw run`: the gateway until SIGTERM. `status_interval_s` overrides `[gateway] status_interval_s`."""
    config = load_config(config_path)
    logs.setup(config.gateway.log_level.value, config.gateway.log_format.value)
    _warn_of(config_path, config)
    tune_runtime()
    try:
        # before anything else touches data_dir: one gateway per buffer, whatever the socket says
        lock = DataDirLock.take(Path(config.gateway.data_dir))
    except DataDirInUse as exc:
        # like a config error (gateway/cli.py's exit 2): a restart cannot help until someone acts
        log.error("not started: %s", exc)
        return EXIT_SOCKET_IN_USE
    try:
        return await _serve(config_path, config, status_interval_s)
    finally:
        lock.release()  # the buffer is closed by now (or was never opened)


async def _serve(config_path: Path, config: GatewayConfig, status_interval_s: float | None) -> int:
    # the control package imports this module
    from gateway.control.server import ControlServer, ControlSocketError, ControlSocketInUse

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    notifier = systemd.Notifier.from_environment()
    runtime = Runtime(config_path, config, notifier)
    control: ControlServer | None = ControlServer(config.gateway.control_path(), runtime)
    assert control is not None
    try:
        # only a look (a connect, no bind): a gateway of another data_dir on the same socket path stops
        # this one here, before it opens the buffer, and a box whose buffer cannot open says only that
        await control.refuse_if_live()
    except ControlSocketInUse as exc:
        log.error("not started: %s", exc)
        return EXIT_SOCKET_IN_USE
    except ControlSocketError:
        pass  # something in the way of the socket: said below, the gateway runs without it
    try:
        await runtime.start()
    except BaseException:
        # what started (the buffer, uplink loops) is stopped before the lock goes: the next gateway finds it closed
        with contextlib.suppress(Exception):
            await runtime.stop()
        raise
    try:
        await control.start()
    except ControlSocketInUse as exc:
        # another gateway bound the path while this one opened its buffer: one gateway nobody can reach
        # (no web UI, no tools, and they would talk to the other) must not run on
        log.error("not started: %s", exc)
        await runtime.stop()
        return EXIT_SOCKET_IN_USE
    except ControlSocketError as exc:  # the web UI is not worth a gateway that does not deliver
        log.error("running without the control socket (no web UI, no local tools): %s", exc)
        control = None
    notifier.ready(f"gateway {config.gateway.id} running")
    # fed from READY to the end of the stop, reloads included, for as long as the event loop turns
    watchdog = asyncio.create_task(notifier.feed_watchdog(), name="systemd-watchdog")
    status_log = logs.StateLog(log)  # `edgegw status` shows an old state meanwhile (a full disk, most often)
    try:
        while not stop.is_set():
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(reload.wait())]
            interval = status_interval_s or runtime.config.gateway.status_interval_s  # a reload may change it
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            try:
                await _write_status(runtime.gateway)
            except OSError as exc:
                status_log.fail(
                    True, logging.WARNING, "status file not written, `edgegw status` shows an older state: %s", exc
                )
            except Exception as exc:
                # a component's bug in the status document (a diagnostics value it cannot copy): ending here
                # stopped the gateway, and every restart met the same component again
                status_log.fail(
                    type(exc),
                    logging.ERROR,
                    "status not written, `edgegw status` shows an older state: %s: %s; please report the traceback",
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
            else:
                status_log.ok("status file written again")
            runtime.gateway.release_memory()
            if reload.is_set() and not stop.is_set():
                reload.clear()
                await runtime.reload()  # logs and answers why when it refuses; the gateway keeps running
    except BaseException:
        runtime.gateway.clean_stop = False  # a crash, not a stop: safe mode's crash-loop count keeps this start
        raise
    finally:
        notifier.stopping()
        log.info("stopping: flushing the buffer and closing uplinks")
        try:
            if control is not None:
                await control.stop()
            await runtime.stop()
            # the status file is informative; a failure must not mask the exit
            with contextlib.suppress(Exception):
                await _write_status(runtime.gateway)
        finally:
            watchdog.cancel()
            await asyncio.wait([watchdog])  # unlike `await watchdog`, never swallows a cancellation of serve
        log.info("stopped")
    return 0


def run(config_path: Path) -> int:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(config_path))

"""The fleet service of one gateway generation: ticks that report, alarm, watch for crash loops and remote config.

Each tick reads the status document once (`Gateway.status()`, which embeds `section()`) and from
it: notes availability, evaluates the alarm rules (mail through the one outgoing-mail component,
an `Alert` entity to the platform), sends the `Device` entity when its state changed or the report
interval passed, stops crash-looping adapters (safe mode), takes the one pending remote config a
step on (withdraw, confirm, supersede, roll back, or settle one a stop cut short: see
gateway/fleet/remote.py) and fetches a new bundle when none is pending and one is due. The tick
takes `now`: tests drive it with a clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.cancellation import cancel_and_wait
from gateway.control.config_versions import FILE as VERSIONS_FILE
from gateway.control.config_versions import ConfigVersions, cannot_open, sha256_text
from gateway.errors import ConfigError, GatewayError
from gateway.fleet import remote
from gateway.fleet.alarms import (
    AlarmEngine,
    AlarmEvent,
    EventKind,
    alarm_reading,
    conditions,
    render_mail,
    uplink_outages,
)
from gateway.fleet.availability import AVAILABILITY_FILE, Availability
from gateway.fleet.config import FleetConfig
from gateway.fleet.device import device_entity_id, device_reading, device_state
from gateway.fleet.metrics import MetricsServer
from gateway.fleet.safemode import ProcessStarts, RestartWindow
from gateway.fleet.system import SystemFacts, ip_addresses, last_backup, probe
from gateway.logs import StateLog
from gateway.records import Command, CommandResult, Reading
from gateway.storage.files import write_atomic
from gateway.tls import client_context

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.config import GatewayConfig
    from gateway.control.target import ControlTarget

__all__ = ["FleetService"]

log = logging.getLogger(__name__)
ALARMS_FILE = "alarms.json"
COMMAND_OWNER = "fleet"  # the Device entity's readings carry source.adapter "fleet" too
CONFIG_COMMAND = "configBundle"  # a platform command whose value is a signed bundle (JSON text or object)
TICK_S = 10.0
# Boxes that start together (a power cut's end, a fleet-wide reload) must not fetch in step: the first
# fetch comes at a random point this soon after the start (a new box not idle for long), the next
# ones every interval_s give or take FETCH_JITTER.
FIRST_FETCH_WITHIN_S = 300.0
FETCH_JITTER = 0.1
NEVER_WRITTEN = "not applied: the gateway stopped before the bundle was written; offer it again with a new serial"
FOUND_RUNNING = "found running after a restart that cut its apply short; its health window starts now"


class FleetService:
    def __init__(
        self,
        gw: Gateway,
        config: FleetConfig,
        emit_many: Callable[[Sequence[Reading]], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.time,
        system_probe: Callable[[Path], SystemFacts] = probe,
        addresses: Callable[[], list[str]] = ip_addresses,
        target: ControlTarget | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.gw = gw
        self.rng = rng or random.Random()  # the fetches' spread; tests seed it
        self.config = config
        self.emit_many = emit_many
        self.clock = clock
        self.system_probe = system_probe
        self.addresses = addresses
        self.target = target
        self.data_dir = Path(gw.config.gateway.data_dir)
        self.entity_id = device_entity_id(gw.config.gateway.id, config.device_id)
        self.engine = AlarmEngine(config.alarms, _read_json(self.data_dir / ALARMS_FILE))
        self.availability = Availability(self.data_dir / AVAILABILITY_FILE, max_gap_s=3 * TICK_S + 30)
        self._availability_failing = StateLog(log)
        self._alarms_failing = StateLog(log)  # while failing, the state on disk is older than the engine's
        self.window = RestartWindow(config.safe_mode.restarts, config.safe_mode.within_s)
        self.starts = ProcessStarts(self.data_dir, config.safe_mode.restarts, config.safe_mode.within_s)
        self.remote_state = remote.RemoteState(self.data_dir)
        self.safe_mode: dict[str, Any] = {"active": False, "reason": "", "stopped_adapters": []}
        self.facts: SystemFacts | None = None
        self.metrics: MetricsServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_report = 0.0
        self._last_state: tuple[str, ...] | None = None  # deviceState, reason, last remote-config step
        self._next_fetch: float | None = None  # None: not drawn yet (the first tick draws it)
        self._fetch_failing = StateLog(log)
        self.fetch_failures = 0  # since this generation started; in status, as the log says a spell once
        self._fetched: remote.Fetched | None = None  # the answer whose ETag/Last-Modified the next fetch sends
        self._failing_since_delivery: dict[str, float] = {}  # uplink -> its last delivery when it began failing
        # (serial, applied_at, deadline): a pending bundle's window moved to its uplinks' start delay, see _deadline
        self._held_deadline: tuple[Any, float, float] | None = None
        self.mails_enqueued = 0
        self.events: list[dict[str, Any]] = []  # the latest alarm events, for status

    # --- lifecycle ---------------------------------------------------------------------------------------

    def boot(self) -> bool:
        """Called before any adapter starts: True when the process is crash-looping (run no adapter)."""
        if self.starts.started(self.clock(), os.getpid()):
            reason = (
                f"the gateway restarted {self.config.safe_mode.restarts} times within "
                f"{self.config.safe_mode.within_s:.0f} s without a clean stop; adapters not started"
            )
            self._enter_safe_mode(reason, [a.name for a in self.gw.config.adapters])
            return True
        return False

    async def start(self, *, autotick: bool = True) -> None:
        # platform commands to the gateway's own Device entity come here (a pushed config bundle)
        self.gw.router.add_adapter(COMMAND_OWNER, self)
        self.gw.router.claim(self.entity_id, COMMAND_OWNER, entity_type="Device")
        if self.config.metrics.enabled:
            metrics = MetricsServer(self.config.metrics, self.status)
            try:
                await metrics.start()
                self.metrics = metrics
            except OSError as exc:  # metrics are not worth a gateway that does not deliver
                log.error(
                    "metrics not served: cannot listen on %s:%s, got %s; another process has the port?",
                    self.config.metrics.host,
                    self.config.metrics.port,
                    exc,
                )
                await metrics.stop()
        if autotick:
            self._task = asyncio.create_task(self._run(), name="fleet")

    async def stop(self, *, clean: bool) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self.metrics is not None:
            await self.metrics.stop()
        await self._save_availability(self.clock())
        if clean:  # a stop that ran to here was not a crash
            self.starts.stopped_cleanly(os.getpid())

    async def _run(self) -> None:
        failing = StateLog(log)
        while True:
            try:
                await self.tick(self.clock())
            except Exception as exc:  # reporting must never stop the gateway (a full buffer refuses the report)
                failing.fail(str(exc), logging.WARNING, "fleet tick failed: %s", exc)
            else:
                failing.ok("fleet ticks again")
            await asyncio.sleep(TICK_S)

    # --- status --------------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """`Gateway.status()` as plain JSON values (enums as their values): what `edgegw status` shows too."""
        doc: dict[str, Any] = orjson.loads(orjson.dumps(await self.gw.status(), default=str))
        return doc

    def section(self) -> dict[str, Any]:
        """The `fleet` part of the status document (sync, cheap: what the last tick measured)."""
        out: dict[str, Any] = {
            "device_entity": self.entity_id,
            "safe_mode": dict(self.safe_mode),
            "alarms": self.engine.summary(),
            "system": self.facts.to_dict() if self.facts is not None else {},
            "latency": {loop.config.name: loop.latency.to_dict() for loop in self.gw.loops},
            "buffer_cap": {"max_rows": self.gw.config.buffer.max_rows},
            "river_alerts": self._river_alerts(),
            "availability": self.availability.yesterday(self.clock()).to_dict(),
            "remote_config": {**self.remote_state.summary(), "fetch_failures": self.fetch_failures},
            "mails_enqueued": self.mails_enqueued,
        }
        backup = last_backup(self.data_dir)
        if backup is not None:
            out["backup"] = backup
        return out

    def _river_alerts(self) -> list[str]:
        """Gauges whose latest river Alert went up (raised) rather than down (cleared)."""
        newest: dict[str, Reading] = {}
        for r in list(self.gw.latest.values()):
            if r.entity_type != "Alert" or "alertSource" not in r.attributes or r.source.adapter == "fleet":
                continue
            gauge = str(r.attributes["alertSource"].value)
            if gauge not in newest or r.observed_at > newest[gauge].observed_at:
                newest[gauge] = r
        return sorted(
            g for g, r in newest.items() if "direction" in r.attributes and r.attributes["direction"].value == "up"
        )

    # --- the tick ------------------------------------------------------------------------------------------

    async def tick(self, now: float) -> dict[str, Any]:
        self.facts = await asyncio.to_thread(self.system_probe, self.data_dir)
        # read again: the apply that reloaded into this generation writes the file after this service began
        self.remote_state = await asyncio.to_thread(remote.RemoteState, self.data_dir)
        doc = await self.status()
        self._sticky_failing(doc)
        await self._safe_mode(doc, now)
        if self.safe_mode["active"]:
            doc = await self.status()
            self._sticky_failing(doc)
        self.availability.note(now, _delivering(doc))
        if self.availability.due(now):
            await self._save_availability(now)
        rules = self.config.alarms.rules
        outages = uplink_outages(doc, self.engine.outages, rules, now)
        moved, self.engine.outages = outages != self.engine.outages, outages
        events = self.engine.evaluate(conditions(doc, rules, now, outages), now)
        if events or moved or self._alarms_failing.failing:
            await self._save_alarms()
        if events:
            await self._dispatch(events)
            doc = await self.status()
            self._sticky_failing(doc)
        steps = (doc.get("fleet") or {}).get("remote_config", {}).get("events") or [{}]
        state = (*device_state(doc), str(steps[-1].get("step", "")), str(steps[-1].get("at", "")))
        if state != self._last_state or now - self._last_report >= self.config.report_interval_s:
            if self._last_state is not None and state != self._last_state:
                log.info(
                    "gateway state %s -> %s%s", self._last_state[0], state[0], f" ({state[1]})" if state[1] else ""
                )
            await self._report(doc, now)
            self._last_state = state
            self._last_report = now
        await self._remote(doc, now)
        return doc

    async def _save_availability(self, now: float) -> None:
        """The figure on disk, off the loop (the write syncs); a failure is said once and retried at the next tick."""
        data = self.availability.dump()
        try:
            await asyncio.to_thread(self.availability.write, data)
        except OSError as exc:  # a full or read-only disk must not stop the tick's alarms and report
            self._availability_failing.fail(
                exc.errno,
                logging.WARNING,
                "availability figure not saved to %s, got %s; kept in memory and tried again at the next tick",
                self.availability.path,
                exc.strerror or exc,
            )
            return
        self.availability.saved_at = now
        self._availability_failing.ok("availability figure saved again to %s", self.availability.path)

    async def _save_alarms(self) -> None:
        """The alarm state on disk, off the loop and synced: it is what keeps a raised alarm from being
        raised (and mailed) again after a power cut. A disk that refuses it (full, remounted read-only
        after an error) must not stop the alarms themselves: said once, tried again at each tick."""
        path = self.data_dir / ALARMS_FILE
        data = orjson.dumps(self.engine.state())
        try:
            await asyncio.to_thread(write_atomic, path, data, None, durable=True)
        except OSError as exc:
            self._alarms_failing.fail(
                exc.errno,
                logging.WARNING,
                "alarm state not saved to %s, got %s; the alarms go on, a restart before it is saved may raise "
                "them again; tried again at the next tick",
                path,
                exc.strerror or exc,
            )
            return
        self._alarms_failing.ok("alarm state saved again to %s", path)

    def _sticky_failing(self, doc: dict[str, Any]) -> None:
        """Mark each uplink `failing` from the moment it backs off until it delivers again.

        A failing uplink alternates between backing-off and sending (each retry): its state alone
        would flap the Device entity's deviceState at every tick.
        """
        for u in doc.get("uplinks", ()):
            name, last = u["name"], u.get("last_delivery") or 0
            if u.get("state") in ("backing-off", "refused"):
                self._failing_since_delivery.setdefault(name, last)
            elif name in self._failing_since_delivery and last > self._failing_since_delivery[name]:
                del self._failing_since_delivery[name]
            u["failing"] = name in self._failing_since_delivery

    async def report_now(self) -> None:
        """Send the Device entity at once (commissioning's test reading)."""
        now = self.clock()
        await self._report(await self.status(), now)
        self._last_report = now

    async def _report(self, doc: dict[str, Any], now: float) -> None:
        reading = device_reading(
            doc,
            entity_id=self.entity_id,
            now=datetime.fromtimestamp(now, UTC),
            ip_addresses=self.addresses(),
            availability=self.availability.yesterday(now).to_dict(),
        )
        await self.emit_many([reading])

    async def _dispatch(self, events: list[AlarmEvent]) -> None:
        gw_id = self.gw.config.gateway.id
        readings = []
        for event in events:
            cond = event.condition
            how = {EventKind.RAISED: log.warning, EventKind.REPEATED: log.debug, EventKind.CLEARED: log.info}[
                event.kind
            ]
            how("alarm %s: %s", event.kind.value, cond.detail, extra={"component": "fleet"})
            self.events = [*self.events[-19:], {"at": event.at, "event": event.kind.value, "key": cond.key}]
            if self.config.alarms.to_platform:
                readings.append(alarm_reading(event, gateway=gw_id, device_entity_id=self.entity_id))
            to = self.config.alarms.recipients.get(cond.severity, ())
            if to and self.gw.mail_queue is not None:
                from gateway.mail import Mail

                subject, text = render_mail(event, gateway=gw_id, language=self.config.alarms.language)
                await self.gw.mail_queue.enqueue(
                    Mail(to=tuple(to), subject=subject, text=text, purpose="alarm", reference=cond.key[:200])
                )
                self.mails_enqueued += 1
        if readings:
            await self.emit_many(readings)

    # --- safe mode -----------------------------------------------------------------------------------------

    def _enter_safe_mode(self, reason: str, adapters: list[str]) -> None:
        stopped = sorted(set(self.safe_mode["stopped_adapters"]) | set(adapters))
        if not self.safe_mode["active"]:
            log.error("safe mode: %s; the uplinks keep draining the buffer", reason)
        self.safe_mode = {"active": True, "reason": reason, "stopped_adapters": stopped}

    async def _safe_mode(self, doc: dict[str, Any], now: float) -> None:
        looping = [
            a["name"]
            for a in doc.get("adapters", ())
            if a["name"] not in self.safe_mode["stopped_adapters"]
            and self.window.note(a["name"], a.get("restarts", 0), now)
        ]
        if not looping or self.gw.supervisor is None:
            return
        for name in looping:
            await self.gw.supervisor.stop_one(name)
        cfg = self.config.safe_mode
        self._enter_safe_mode(
            f"adapter(s) {', '.join(looping)} restarted {cfg.restarts} times within {cfg.within_s:.0f} s: stopped",
            looping,
        )

    def clear_safe_mode(self) -> None:
        self.starts.clear()

    # --- remote configuration ------------------------------------------------------------------------------

    async def _remote(self, doc: dict[str, Any], now: float) -> None:
        rc = self.config.remote_config
        if self.target is not None and await self._pending(doc, now):
            return
        if rc is None or rc.url is None or self.target is None:
            return
        if self._next_fetch is None:
            self._next_fetch = now + self.rng.uniform(0, min(rc.interval_s, FIRST_FETCH_WITHIN_S))
        if now < self._next_fetch:
            return
        self._next_fetch = now + rc.interval_s * self.rng.uniform(1 - FETCH_JITTER, 1 + FETCH_JITTER)
        try:
            context = client_context(rc.tls, "fleet.remote_config") if rc.url.startswith("https://") else None
            fetched = await remote.fetch_bundle(rc.url, context=context, previous=self._fetched)
        except Exception as exc:  # aiohttp's ClientError and the like too: a fetch problem, retried at the interval
            self._fetch_failed(rc.url, rc.interval_s, exc)
            return
        self._fetch_failing.ok("remote config: fetched from %s again", rc.url)
        if fetched.data is None:
            log.debug("remote config: %s not modified since the bundle fetched before", rc.url)
            return
        # The platform serves its latest bundle until it has a newer one: the one accepted, fetched again,
        # is news to nobody (it would be refused as replayed at every interval, forever).
        state = await asyncio.to_thread(remote.RemoteState, self.data_dir)
        if state.unchanged(fetched.data) or await self._noted_as_accepted(state, fetched.data):
            self._fetched = fetched
            log.debug("remote config: %s serves the bundle accepted last, unchanged", rc.url)
            return
        # anything else is judged again at the next fetch: a `busy` one is to be offered again
        self._fetched = None
        if fetched.data:
            await self.offer(fetched.data, via="fetch")

    def _fetch_failed(self, url: str, interval_s: float, exc: Exception) -> None:
        """Counted each time, said once a spell (WARNING), its detail at DEBUG: a platform down for a day is one line."""
        self.fetch_failures += 1
        if not self._fetch_failing.fail(
            "fetch",
            logging.WARNING,
            "remote config not fetched from %s: %s; tried again every %g s",
            url,
            exc,
            interval_s,
        ):
            log.debug("remote config still not fetched from %s: %s", url, exc)

    async def _noted_as_accepted(self, state: remote.RemoteState, data: bytes) -> bool:
        """A state file from a release that noted no accepted payload: the bundle with the last serial, signed by
        the pinned key for this box, is the one accepted (the platform signs one bundle per serial). Noted once."""
        rc = self.config.remote_config
        if rc is None or "accepted" in state.doc or state.last_serial <= 0:
            return False
        try:
            bundle = remote.verify_bundle(
                data, public_key=rc.public_key, gateway=self.gw.config.gateway.id, last_serial=state.last_serial - 1
            )
        except remote.BundleRefused:
            return False
        digest = remote.payload_digest(data)
        if bundle.serial != state.last_serial or digest is None:
            return False

        def note(current: remote.RemoteState) -> bool:
            if "accepted" in current.doc or current.last_serial != bundle.serial:
                return False  # changed since it was read
            current.accept(bundle.serial, digest)
            return True

        if not await asyncio.to_thread(remote.update, self.data_dir, note):
            return False
        log.info("remote config: bundle %s, accepted before its payload was noted, fetched again: noted", bundle.serial)
        return True

    async def handle(self, command: Command) -> CommandResult:
        """A platform command to the Device entity: `configBundle` with a signed bundle as its value."""
        if command.name != CONFIG_COMMAND:
            return CommandResult(
                command_id=command.command_id,
                ok=False,
                info=f"command {command.name}: the gateway takes {CONFIG_COMMAND} only, got {command.name!r}",
            )
        value = command.value
        data = value.encode() if isinstance(value, str) else orjson.dumps(value)
        result = await self.offer(data, via=f"command {command.command_id}")
        info = f"bundle {result['serial']} verified, applying" if result.get("applied") else str(result.get("error"))
        return CommandResult(command_id=command.command_id, ok=bool(result.get("applied")), info=info)

    async def _pending(self, doc: dict[str, Any], now: float) -> bool:
        """Take the pending bundle (see remote.py's steps) one step on; False when none is pending."""
        pending = (await asyncio.to_thread(remote.RemoteState, self.data_dir)).pending
        if pending is None:
            return False
        serial = pending["serial"]
        # an older release noted the text from before the bundle in clear, a hand edit's token and all
        if await asyncio.to_thread(remote.scrub_previous, self.data_dir, pending):
            log.info(
                "remote config: bundle %s: the config text from before it, noted in clear by an older release, "
                "now kept only if it validates (else its sha256 alone)",
                serial,
            )
        applying = remote.running(_apply_task(serial))
        if not applying:  # read again: an apply found ended has saved all it ever will
            pending = (await asyncio.to_thread(remote.RemoteState, self.data_dir)).pending
            if pending is None or pending["serial"] != serial:
                return pending is not None
        # The apply is detached before its bundle is claimed and notes `written_at` before it writes, so
        # one not noted with no apply under way was never written and never will be: the gateway that
        # took it stopped first. (A pending saved before `written_at` existed has no such key.)
        never_written = not applying and "written_at" in pending and pending["written_at"] is None
        if never_written:
            await self._withdraw(now, serial, NEVER_WRITTEN)
        elif pending.get("rolling_back") is not None:
            # begun and not finished: under way in this process (started by the apply whose reload
            # failed, or by a tick), or cut short by a kill, which this start finishes (the rollback's
            # guard makes a second one that finds it done harmless)
            if not applying and not remote.running(_rollback_task(serial)):
                await self._rollback(now, serial, why="a rollback cut short by a restart")
        elif applying:
            if pending.get("written_at") is None and now >= pending["deadline"]:
                detail = (
                    "not applied: the config lock was still held by another apply when the health window ended "
                    f"({remote.utc_text(pending['deadline'])}); the bundle was never live, offer it again with a "
                    "new serial"
                )
                await self._withdraw(now, serial, detail)
        elif pending.get("reloaded"):
            if remote.healthy_since(doc, pending["applied_at"]):
                await self._confirm(now, pending)
            elif now >= await self._deadline(doc, now, pending):
                await self._rollback(now, serial, why="uplinks not delivering within the health window")
        elif not await self._cut_short(now, pending) and now >= pending["deadline"]:
            await self._rollback(now, serial, why="uplinks not delivering within the health window")
        return True

    async def _deadline(self, doc: dict[str, Any], now: float, pending: dict[str, Any]) -> float:
        """The reloaded bundle's deadline, moved on while an uplink waits its backlog's random start delay.

        Such an uplink has had no chance to deliver (the delay may be far longer than the window): its
        window counts from the delay's end, seen by this tick, and from no later than the longest delay
        after the apply, so a broken bundle held this way is still rolled back, that much later.
        The state file gets that bound once (what status shows and a restart keeps); the window from
        the delay's end grows at every tick, so it is kept in memory: written each tick, it was
        hundreds of writes an hour to the SD card while an uplink waited.
        """
        applied_at, deadline = float(pending["applied_at"]), float(pending["deadline"])
        serial = pending["serial"]
        kept = self._held_deadline
        moved_before = kept[2] if kept is not None and kept[:2] == (serial, applied_at) else None
        delays = {u.name: u.start_delay_max_s for u in self.gw.config.uplinks}
        held = remote.start_delay_held(doc, applied_at, delays)
        if held <= 0:
            return deadline if moved_before is None else moved_before
        window = float(pending.get("window", deadline - applied_at))  # as the guard set it, before any move
        bound = applied_at + held + window
        moved = max(min(now + window, bound), applied_at + window if moved_before is None else moved_before)
        self._held_deadline = (serial, applied_at, moved)
        if bound <= deadline:
            return moved  # the bound is in the state file already

        def move(state: remote.RemoteState) -> bool:
            p = state.pending
            if p is None or p.get("serial") != serial or p.get("rolling_back") is not None:
                return False  # taken on since it was read
            first = "window" not in p
            p.update(window=window, deadline=max(p["deadline"], bound))
            return first

        if await asyncio.to_thread(remote.update, self.data_dir, move):
            log.info(
                "remote config: bundle %s: an uplink waits its backlog's random start delay (start_delay_max_s = "
                "%g, health_window_s = %g): judged once it can have delivered, at the latest %s",
                serial,
                held,
                window,
                remote.utc_text(bound),
            )
        return moved

    async def _cut_short(self, now: float, pending: dict[str, Any]) -> bool:
        """A bundle whose guard ran, with no apply under way and no reload noted: the gateway that applied it
        stopped in between (a kill, a power cut). The config file says how far it got; False when it cannot.

        Not the bundle's text: never written, or replaced since; `failed` at once rather than `busy` for the
        whole window. The bundle's text, and what this process started from: it runs, so its window starts
        now and judges it (it was never confirmable, `reloaded` unset).
        """
        assert self.target is not None
        serial, expected, noted = pending["serial"], pending.get("sha256"), pending.get("written_at")
        if noted is None or expected is None:  # the guard has not run, or an older release saved it
            return False
        on_disk = await asyncio.to_thread(_read_text, self.target.config_path)
        if on_disk is not None and sha256_text(on_disk) == expected:
            if not await asyncio.to_thread(_runs, self.gw.config, on_disk):
                return False  # on disk, yet not what runs: left to its deadline (a rollback to the old text)
            window = pending["deadline"] - pending["applied_at"]  # as the guard set it

            def found(state: remote.RemoteState) -> bool:
                p = state.pending
                if p is None or p.get("serial") != serial or p.get("written_at") != noted:
                    return False
                if p.get("reloaded") or p.get("rolling_back") is not None:  # taken on since it was read
                    return False
                p.update(reloaded=True, applied_at=now, deadline=now + window)
                return True

            await self._remote_step(now, "applied", FOUND_RUNNING, serial, change=found)
            return True
        if remote.is_previous(pending, on_disk):
            detail = NEVER_WRITTEN
        else:  # changed while the gateway was down (a hand edit, a restore): that one runs and is kept
            detail = await asyncio.to_thread(_kept_detail, self.target, serial, on_disk, pending, outcome="applied")
        await self._withdraw(now, serial, detail, noted=noted)
        return True

    async def _withdraw(self, now: float, serial: int, detail: str, *, noted: float | None = None) -> bool:
        """A bundle not written (its apply waits for the config lock, or ended before its guard): `failed`.

        A waiting apply's guard then refuses to write it, so it is never live unwatched. False when the
        bundle was written meanwhile (or is no longer the pending one): nothing recorded. `noted`: the
        `written_at` of a bundle whose apply stopped after its guard and before the write.
        """

        def unwritten(state: remote.RemoteState) -> bool:
            pending = state.pending
            if pending is None or pending.get("serial") != serial or pending.get("written_at") != noted:
                return False  # written meanwhile: its own window has begun
            if noted is not None and (pending.get("reloaded") or pending.get("rolling_back") is not None):
                return False  # taken on by another step since it was read
            state.doc["pending"] = None
            return True

        return await self._remote_step(now, "failed", detail, serial, change=unwritten)

    async def _confirm(self, now: float, pending: dict[str, Any]) -> None:
        """Healthy: confirmed if the config file is still the bundle's, else superseded (the live one is kept)."""
        assert self.target is not None
        serial, expected = pending["serial"], pending.get("sha256")  # None: noted by an older release
        on_disk = await asyncio.to_thread(_read_text, self.target.config_path)
        if expected is None or (on_disk is not None and sha256_text(on_disk) == expected):
            step, detail = "confirmed", "uplinks delivering after the apply"
        else:
            step = "superseded"
            detail = await asyncio.to_thread(_kept_detail, self.target, serial, on_disk, pending, outcome="confirmed")
        await self._remote_step(now, step, detail, serial, change=_ends(serial))

    async def offer(self, data: bytes, *, via: str) -> dict[str, Any]:
        """A bundle fetched or pushed (platform command, control op): verified and, if valid, applied."""
        rc = self.config.remote_config
        now = self.clock()
        if rc is None or self.target is None:
            return {"applied": False, "error": "remote config: not configured, got no [fleet.remote_config] section"}
        self.remote_state = await asyncio.to_thread(remote.RemoteState, self.data_dir)
        try:
            bundle = remote.verify_bundle(
                data,
                public_key=rc.public_key,
                gateway=self.gw.config.gateway.id,
                last_serial=self.remote_state.last_serial,
            )
        except remote.BundleRefused as exc:
            await self._remote_step(now, "refused", f"{exc.code}: {exc} (via {via})", None)
            return {"applied": False, "error": str(exc), "code": exc.code}
        from gateway.control.ops_config import ConfigOps, parse_text

        try:
            new = await asyncio.to_thread(parse_text, bundle.config)  # up to a second for a large config: off the loop
        except ConfigError as exc:
            await self._remote_step(now, "refused", f"invalid config: {'; '.join(exc.errors)}", bundle.serial)
            return {
                "applied": False,
                "error": "remote config: the bundle's config is not valid",
                "errors": list(exc.errors),
            }
        unwatched = remote.unwatched(new, data_dir=self.data_dir, serial=bundle.serial)
        if unwatched is not None:  # before the claim, as the refusals above: the serial is not used up
            await self._remote_step(now, "refused", f"{unwatched.code}: {unwatched} (via {via})", bundle.serial)
            return {"applied": False, "error": str(unwatched), "code": unwatched.code}
        window = rc.health_window_s
        digest = remote.payload_digest(data) or ""  # verified above, so it has a payload
        refused: list[remote.BundleRefused] = []

        def claim(state: remote.RemoteState) -> bool:
            # checked again here, in one step with taking the place: another offer may have come in
            # since the read above (two platform commands at once)
            refusal = state.refusal(bundle.serial)
            if refusal is not None:
                refused.append(refusal)
                return False
            state.accept(bundle.serial, digest)
            state.doc["pending"] = {
                "serial": bundle.serial,
                "applied_at": now,  # until it is written: see note_previous
                "deadline": now + window,  # by when the apply must have had the config lock
                "sha256": sha256_text(bundle.config),  # how confirm and rollback know the bundle is what runs
                "previous": None,  # and its sha256: noted by the guard (see note_previous)
                "previous_sha256": None,
                "written_at": None,
                "reloaded": False,
            }
            return True

        ops = ConfigOps(self.target, clock=self.clock)
        target, data_dir, clock = self.target, self.data_dir, self.clock

        def note_previous(on_disk: str | None) -> None:
            # Under the lock the bundle is written under: read any earlier, a local apply landing in
            # between would be undone by the rollback. Saved (fsync'd) before the bundle is written, so
            # a kill after the write still leaves the rollback its text; a kill before it leaves the
            # live config as it was, which the rollback then finds is not the bundle's and keeps.
            # The window starts here, not at the offer: a long wait for the lock must not shorten it.
            # A text that does not validate is noted by its sha256 alone: it may hold a secret in clear.
            previous = remote.noted_previous(on_disk)  # validated before the state lock is taken

            def written(state: remote.RemoteState) -> bool:
                pending = state.pending
                if pending is None or pending.get("serial") != bundle.serial or pending.get("rolling_back"):
                    return False
                at = clock()
                pending.update(previous, written_at=at, applied_at=at, deadline=at + window)
                return True

            if not remote.update(data_dir, written):  # the tick gave it up (its window ended): write nothing
                raise BundleWithdrawn(f"remote config: bundle {bundle.serial} withdrawn before it was written")

        async def apply() -> None:
            from gateway.control.protocol import CONFIG_INVALID, ControlError

            if not await claimed:
                return
            try:
                result = await ops.apply(
                    bundle.config,
                    actor="remote-config",
                    comment=f"remote bundle {bundle.serial}",
                    guard=note_previous,
                )
            except BundleWithdrawn as exc:  # its step (failed) is recorded by the tick that withdrew it
                log.info("%s", exc)
                return
            except Exception as exc:
                if isinstance(exc, ControlError) and exc.code == CONFIG_INVALID:  # refused before the write
                    # its lines say what (a data_dir this box cannot use): the count alone told nobody
                    reason = _failure(exc)
                    await _end_applying(target, data_dir, clock(), "failed", reason, bundle.serial, {"error": reason})
                    return
                # Anything else may come after the rename (the reload, the versions store recording it,
                # the directory's fsync): the bundle's text would be left on disk, not running, for the
                # next start to run with no window.
                await self._apply_failed(clock(), bundle.serial, exc)
                return
            version = result["version"]

            def reloaded(state: remote.RemoteState) -> None:
                pending = state.pending
                if pending is not None and pending.get("serial") == bundle.serial:
                    pending.update(version=version, reloaded=True)
                state.event(clock(), "applied", f"version {version}", bundle.serial)

            await asyncio.to_thread(remote.update, data_dir, reloaded)
            await _audit(target, "fleet.remote_config.applied", {"serial": bundle.serial, "version": version}, clock())

        # Detached before the claim, so from the moment this bundle is pending a tick finds its apply
        # under way (one pending, unwritten, with no apply running is closed as never written).
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        remote.detach(apply, _apply_task(bundle.serial))
        taken = False
        try:
            verified = f"serial {bundle.serial} issued {bundle.issued_at} (via {via})"
            taken = await self._remote_step(now, "verified", verified, bundle.serial, change=claim)
        finally:
            claimed.set_result(taken)
        if not taken:
            refusal = refused[0]
            await self._remote_step(now, "refused", f"{refusal.code}: {refusal} (via {via})", bundle.serial)
            return {"applied": False, "error": str(refusal), "code": refusal.code}
        return {"applied": True, "serial": bundle.serial}

    async def _apply_failed(self, now: float, serial: int, exc: Exception) -> None:
        """The bundle's apply failed other than by its config being refused: put back what it may have written.

        Still pending, so the rollback (whose guard checks under the config lock that the file is still the
        bundle's) puts back the text it replaced; when the file is still that text, nothing was written and
        the bundle ends `failed`, never `rolled_back`.
        """
        from gateway.control.protocol import RELOAD_FAILED, ControlError

        if isinstance(exc, ControlError) and exc.code == RELOAD_FAILED:
            why = f"{_failure(exc)}; back to the config from before the bundle at once"
            await self._rollback(now, serial, why=why)
            return
        reason = _failure(exc)
        log.warning("remote config: bundle %s: apply failed: %s", serial, reason)
        # `written_at` is noted by the apply's guard before it writes: not noted, the apply ended before
        # it, so nothing was written and there is nothing for a rollback to look at
        if await self._withdraw(now, serial, _not_applied(reason, "the apply stopped before writing anything")):
            return
        why = f"apply failed: {reason}; if the bundle was written, back to the config from before it at once"
        await self._rollback(now, serial, why=why, apply_failed=reason)

    async def _rollback(self, now: float, serial: int, *, why: str, apply_failed: str | None = None) -> None:
        """Mark the bundle rolling back, then put back the text it replaced if the file is still the bundle's.

        `apply_failed`: the reason the bundle's own apply failed, so a file found still holding the text from
        before the bundle means it was never written: `failed`, not `rollback_skipped`.
        """
        assert self.target is not None
        marked: list[dict[str, Any]] = []

        def mark(state: remote.RemoteState) -> bool:
            # pending stays, marked, until the rollback has ended: a kill before that must not leave the
            # bundle live for good (the next start finishes it, see _pending)
            pending = state.pending
            if pending is None or pending.get("serial") != serial:
                return False
            pending["rolling_back"] = now
            marked.append(dict(pending))  # as saved: `previous` is the guard's, not an earlier read's
            return True

        if not await self._remote_step(now, "rolling_back", why, serial, change=mark):
            return
        pending = marked[0]
        from gateway.control.ops_config import ConfigOps

        ops = ConfigOps(self.target, clock=self.clock)
        target, clock, data_dir = self.target, self.clock, self.data_dir

        def still_the_bundle(on_disk: str | None) -> None:
            # under the lock the rollback writes under: an admin's apply since the bundle (to fix what it
            # broke, say) is what the box should run, and the text from before the bundle would undo it
            expected = pending.get("sha256")  # None: a pending left by a release that did not note it
            if expected is not None and (on_disk is None or sha256_text(on_disk) != expected):
                if apply_failed is not None and remote.is_previous(pending, on_disk):
                    raise NeverWritten(
                        _not_applied(apply_failed, "the config file is still the one from before the bundle")
                    )
                raise RollbackSkipped(_kept_detail(target, serial, on_disk, pending))
            if remote.previous_not_kept(pending):  # writing back an invalid file would be refused anyway
                raise NotRestorable(_not_restorable(target, serial, pending))

        async def rollback() -> None:
            try:
                result = await ops.apply(
                    pending.get("previous") or "",  # none only if there was no config file before the bundle
                    actor="remote-config",
                    comment=f"rollback of remote bundle {serial}",
                    guard=still_the_bundle,
                )
                detail = f"back to the previous config, version {result['version']}"
                step = "rolled_back"
            except NeverWritten as exc:
                detail, step = str(exc), "failed"
                log.warning("remote config %s: %s", step, detail)
            except RollbackSkipped as exc:
                detail, step = str(exc), "rollback_skipped"
                log.warning("remote config %s: %s", step, detail)
            except NotRestorable as exc:  # the bundle stays, though it failed its window: the box needs someone
                detail, step = str(exc), "rollback_failed"
                log.error("remote config %s: %s", step, detail)
            except Exception as exc:  # said everywhere: the box needs someone
                detail, step = f"rollback failed: {exc}", "rollback_failed"
                log.error("remote config: %s", detail)
            await _end_applying(target, data_dir, clock(), step, detail, serial, {"detail": detail})

        remote.detach(rollback, _rollback_task(serial))

    async def _remote_step(
        self,
        now: float,
        step: str,
        detail: str,
        serial: int | None,
        *,
        change: Callable[[remote.RemoteState], bool] | None = None,
    ) -> bool:
        """Record a step; with `change`, only if it returns True, in one step with what it changed."""

        def record(state: remote.RemoteState) -> remote.RemoteState | None:
            if change is not None and not change(state):
                return None
            state.event(now, step, detail, serial)
            return state

        state = await asyncio.to_thread(remote.update, self.data_dir, record)
        if state is None:
            return False
        self.remote_state = state
        log.info("remote config %s: %s", step, detail)
        if self.target is not None:
            await _audit(self.target, f"fleet.remote_config.{step}", {"serial": serial, "detail": detail}, now)
        return True


def _apply_task(serial: int) -> str:
    return f"remote-config:{serial}"


def _rollback_task(serial: int) -> str:
    return f"remote-config-rollback:{serial}"


class RollbackSkipped(GatewayError):
    """A remote bundle's rollback that found another config live than the bundle's: that one is kept."""

    code = "rollback_skipped"


class NeverWritten(RollbackSkipped):
    """A rollback after the bundle's failed apply that found the text from before it on disk: nothing to undo."""

    code = "never_written"


class NotRestorable(GatewayError):
    """A remote bundle's rollback with no text to put back: the config from before it did not validate, so only
    its sha256 was kept."""

    code = "previous_not_kept"


class BundleWithdrawn(GatewayError):
    """A remote bundle given up before it was written (its window ended while it waited for the config lock)."""

    code = "bundle_withdrawn"


def _ends(serial: int) -> Callable[[remote.RemoteState], bool]:
    """A state change ending bundle `serial`'s pending, if it is still the pending one and not rolling back."""

    def end(state: remote.RemoteState) -> bool:
        pending = state.pending
        if pending is None or pending.get("serial") != serial or pending.get("rolling_back") is not None:
            return False
        state.doc["pending"] = None
        return True

    return end


async def _end_applying(
    target: ControlTarget, data_dir: Path, at: float, step: str, detail: str, serial: int, audit: dict[str, Any]
) -> None:
    """The outcome of a detached apply or rollback: pending ended (if still this bundle's), the step recorded."""

    def end(state: remote.RemoteState) -> None:
        if (state.pending or {}).get("serial") == serial:
            state.doc["pending"] = None
        state.event(at, step, detail, serial)

    await asyncio.to_thread(remote.update, data_dir, end)
    await _audit(target, f"fleet.remote_config.{step}", {"serial": serial, **audit}, at)


def _failure(exc: Exception) -> str:
    """Why an apply failed, as a technician needs it: ConfigOps says its store's and file's errors in its own
    ControlError (write_failed names the versions store), with the problem lines."""
    from gateway.control.protocol import ControlError

    if isinstance(exc, ControlError):
        return f"{exc.message}: {'; '.join(exc.errors)}" if exc.errors else exc.message
    if isinstance(exc, GatewayError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _not_applied(reason: str, found: str) -> str:
    return (
        f"not applied: {reason}; {found}, nothing to undo. Fix the cause, then offer the config again with a new serial"
    )


def _runs(config: GatewayConfig, text: str) -> bool:
    """Whether `config` (a running generation's) is what `text` says: it started from that file."""
    from gateway.control.ops_config import parse_text

    try:
        return parse_text(text) == config
    except ConfigError:
        return False


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _kept_detail(
    target: ControlTarget, serial: int, on_disk: str | None, pending: dict[str, Any], *, outcome: str = "rolled back"
) -> str:
    """Why the bundle is not `outcome` (rolled back, confirmed), naming the live config's version and the one
    to go back to by hand."""
    head = f"not {outcome}: the live config is no longer bundle {serial}'s, got"
    if on_disk is None:
        return f"{head} no config file; nothing written"
    # rolled back by hand already, or a kill came before the bundle was written
    if remote.is_previous(pending, on_disk):
        if outcome == "confirmed":
            return f"not confirmed: the live config is the one from before bundle {serial} again; nothing to confirm"
        return f"not rolled back: the live config is the one from before bundle {serial} already; nothing to undo"
    path = Path(target.config.gateway.data_dir) / VERSIONS_FILE  # where ConfigOps records
    try:
        store = ConfigVersions(path)
        try:
            live = store.version_of(sha256_text(on_disk))
            before = _go_back_to(store, pending)
        finally:
            store.close()
    except (sqlite3.Error, OSError) as exc:  # the skip stands: the versions only name it
        unknown = cannot_open(path, exc) if isinstance(exc, OSError) else str(exc)
        return f"{head} sha256 {sha256_text(on_disk)[:12]} (its version unknown: {unknown}); it is kept"
    got = f"version {live} (applied after it)" if live is not None else "a file not recorded as a version (a hand edit)"
    return f"{head} {got}; it is kept.{before}"


def _not_restorable(target: ControlTarget, serial: int, pending: dict[str, Any]) -> str:
    """Why a bundle's rollback wrote nothing: the config from before it did not validate, so only its sha256 was
    kept (it may hold a secret in clear); naming the version to go back to by hand."""
    detail = (
        f"not rolled back: the config from before bundle {serial} was not a valid config (validation refused it, so "
        "it never ran), and only its sha256 was kept, as it may hold a secret in clear: it cannot be written back. "
        f"Bundle {serial}'s config is left in place."
    )
    path = Path(target.config.gateway.data_dir) / VERSIONS_FILE
    try:
        store = ConfigVersions(path)
        try:
            before = _go_back_to(store, pending)
        finally:
            store.close()
    except (sqlite3.Error, OSError) as exc:
        unknown = cannot_open(path, exc) if isinstance(exc, OSError) else str(exc)
        return f"{detail} The config versions cannot tell which one to roll back to by hand: {unknown}"
    if not before:
        digest = str(pending.get("previous_sha256"))[:12]
        return f"{detail} The config from before it (sha256 {digest}) is not recorded as a config version"
    return f"{detail}{before}"


def _go_back_to(store: ConfigVersions, pending: dict[str, Any]) -> str:
    """The sentence naming the version from before the bundle to roll back to by hand; "" when the store does not
    know it. One recorded by its sha256 alone has no text to roll back to: the newest before it that has is named."""
    previous = pending.get("previous")
    digest = sha256_text(previous) if previous is not None else pending.get("previous_sha256")
    before = None if digest is None else store.version_of(digest)
    if before is None:
        return ""
    said = f" The config from before the bundle is version {before}"
    wanted = "roll back to it on the configuration page if it is wanted"
    if not remote.previous_not_kept(pending):
        return f"{said}: {wanted}"
    kept = None
    for listed in store.list():  # newest first
        got = store.get(listed.version) if listed.version < before else None
        if got is not None and got.text:
            kept = got.version
            break
    if kept is None:
        return f"{said}, recorded without its text; no version before it has its text kept"
    return (
        f"{said}, recorded without its text; the newest version before it with its text kept is version {kept}: "
        + wanted
    )


def _delivering(doc: dict[str, Any]) -> bool:
    """No uplink failing (backing off or refused since its last delivery)."""
    return not any(u.get("failing") or u.get("state") in ("backing-off", "refused") for u in doc.get("uplinks", ()))


async def _audit(target: ControlTarget, action: str, detail: dict[str, Any], at: float) -> None:
    """One entry in the HMAC-chained audit log (gateway/audit) of the running config's web state dir."""
    from gateway.audit.log import AuditLog

    config = target.config
    state_dir = config.web.state_path(Path(config.gateway.data_dir))

    def write() -> None:
        AuditLog(state_dir).append(actor="remote-config", action=action, target="config", detail=detail, at=at)

    try:
        await asyncio.to_thread(write)
    except Exception as exc:  # the audit log unavailable must not leave a config half applied
        log.error("audit entry %s not written: %s", action, exc)


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None

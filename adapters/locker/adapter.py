"""The locker adapter: boards polled on their buses, one entity per compartment, alerts, unlocks and the pickup flow.

Commands (from the platform through the command router, from the staff and kiosk pages through the
control socket's `command` op), each on a compartment's entity id:

    unlock / open         staff or platform: open the door (compartment exists, door not open, board online)
    assign  {email, reference}   staff: reserve a free compartment; the patron gets a one-time code by e-mail
    pickup  {code}        kiosk: the code opens the door once; wrong codes count, entry locks after max_wrong;
                          a code that ended (cancelled, past its deadline, used for the pickup) is told so for
                          valid_days after, and counts no try
    cancel / reset        staff: end the assignment (address erased, its code mail withdrawn) / clear the wrong-code count
    grid                  staff page: every compartment's state and assignment as JSON (any compartment id)

Only unlock/open are taken from the platform (an uplink's command path); the others only from the
control socket (`Command.uplink == "control"`), i.e. the box's own pages and CLI.

A result's `info` is a short English line, or JSON for `assign` and `grid`; a refusal starts with a
stable reason word (`busy:`, `locked:`, `wrong_code:` …) that the pages map to their own text.

A kiosk code opens the door once. The assignment is stored `opened` before the unlock is sent, and
the code stays until the door is seen open: an unlock whose outcome is not known (no status after
it, the line failing once it was sent, a kill) leaves the row so, the patron is told the door may
have opened (`unconfirmed:`), and the board's next statuses decide: the door seen open spends the
code (its closing is then the pickup), and so does, on boards with infrared sensors, the compartment
seen emptied behind a door read locked (it opened and closed between two statuses; the empty reading
held for `EMPTIED_STATUSES` statuses, emptied.py: a flickering sensor spends nothing); not seen open in
`UNSEEN_STATUSES` statuses and `UNSEEN_AFTER_S` seconds after the unlock (after a start, for rows a
crash left so: after the start) gives the code back, not while an empty reading is still settling. Only
an unlock known not to have opened the door (never sent, or the lock still reads locked) gives it back
at once.

The patron's e-mail address leaves the box only in the pickup event's `patron` attribute, and by
default (`[adapters.pickup] patron = "token"`) as a `pz1:` token made here by the processing stage's
own pseudonymize processor, before the reading is emitted; `"clear"` sends the address itself.

An assignment and its code mail live in two stores (the pickup store, the mail queue), so `assign`
is two commits: the address is checked with the mail queue's own rule and the mail made before the
first, and a mail that cannot be queued (its disk full, the queue closed) undoes the assignment
before staff are answered (`mail_failed:`); both steps run shielded, so a command's deadline does not
cut them apart. Only a crash between them leaves an assignment without a mail id: at start its mail
is looked up in the queue by its handle, and one not found is listed in the diagnostics
(`unmailed`) and the status for staff to cancel (the code is lost with it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from adapters.locker import code_mail
from adapters.locker.bus import Board, BoardState, LinkError, LockerBus, RequestNotSent
from adapters.locker.codec import BoardStatus
from adapters.locker.config import LockerConfig, PatronAddress
from adapters.locker.emptied import EmptiedWatch
from adapters.locker.grids import COMPARTMENT_TYPE
from adapters.locker.notice import pickup_mail
from adapters.locker.pickup import Assignment, CodeCheck, PickupError, PickupState, PickupStore
from gateway import redact
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.logs import component_logger
from gateway.mail.message import Mail, MailError, check_address
from gateway.ngsi.identifiers import check_entity_id
from gateway.processing.pseudonymize import PseudonymizeConfig, Pseudonymizer
from gateway.records import (
    Attribute,
    Command,
    CommandResult,
    Emit,
    Lane,
    Reading,
    Source,
    emit_many,
    iso_utc,
    utc_now,
)

__all__ = ["ALERT_TYPE", "COMPARTMENT_TYPE", "PICKUP_TYPE", "LockerAdapter"]

PICKUP_TYPE = "LockerPickup"
ALERT_TYPE = "Alert"
DEVICE_TYPE = "Device"
LOCAL_SOURCE = "control"  # Command.uplink of the control socket's `command` op (staff page, kiosk, CLI)
PATRON = "patron"  # the pickup event's attribute with the patron's e-mail address (a token unless patron = "clear")
_EMAIL_MAX = 254
_REFERENCE_MAX = 64
_UNLOCK_GRACE_S = 10.0  # a door that opens this soon after our own unlock was opened by us
# An unlock whose outcome is not known: a released door springs open and shows so in the next status
# the board answers; one read locked in this many statuses (one lost or garbled reply is no answer) and
# for this long after the unlock (the window in which an opening counts as ours) did not open.
UNSEEN_STATUSES = 3
UNSEEN_AFTER_S = _UNLOCK_GRACE_S


@dataclass(slots=True, kw_only=True)
class _Compartment:
    label: str
    board: Board
    bus: LockerBus
    lock: int
    entity_id: str
    locked: bool | None = None
    occupied: bool | None = None
    changed_at: datetime | None = None
    opened_mono: float | None = None  # when the door was seen open (monotonic)
    open_alerted: bool = False
    unlocked_mono: float = -1e9  # when we last pulsed it open
    unseen: int | None = None  # the assignment whose code was used and whose door has not been seen open since
    unseen_since: float = math.inf  # monotonic: since when (inf while its unlock is still under way)
    unseen_locked: int = 0  # statuses since then that read the door locked
    watch: EmptiedWatch = field(default_factory=EmptiedWatch)  # emptied behind the locked door (CU16)


@dataclass(frozen=True, slots=True)
class _Unlocked:
    """What an unlock attempt is known to have done: `opened` True (seen open), False (the door did not open:
    refused, never sent, the lock still locked) or None (not known), and the reason when it is not True."""

    opened: bool | None
    reason: str = ""


class LockerAdapter:
    """Locker boards on RS-485; see README.md."""

    config_model: ClassVar[type[AdapterConfig]] = LockerConfig

    def __init__(
        self,
        config: AdapterConfig,
        context: AdapterContext,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(config, LockerConfig):
            raise TypeError(f"LockerAdapter needs a LockerConfig, got {type(config).__name__}")
        self.config = config
        self.context = context
        self._clock = clock
        self._mono = monotonic
        self._log = component_logger(__name__, config.name)
        self._zone = ZoneInfo(config.pickup.timezone)
        self._emit: Emit | None = None
        self.store: PickupStore | None = None
        self.buses: dict[str, LockerBus] = {}
        self.compartments: dict[str, _Compartment] = {}
        self._by_entity: dict[str, _Compartment] = {}
        self.boards: dict[str, Board] = {}
        self._on_board: dict[str, list[_Compartment]] = {}
        self._masks: dict[str, tuple[int, int | None]] = {}  # per board: the last status seen
        self.emitted = 0
        self.alerts = 0
        self.unlocks = 0
        self.mail_failures = 0  # assignments undone because their code mail could not be queued
        # kiosk tries with a code that ended (answered, not counted as wrong tries), by its counter's name (_ENDED)
        self.ended_codes = dict.fromkeys(("cancelled_codes", "expired_codes", "used_codes"), 0)
        self.unmailed: dict[str, int] = {}  # label → active assignment with no code mail (a crash between the steps)
        self._steps: set[asyncio.Task[CommandResult]] = set()  # assign steps that outlive a command's deadline
        # The address becomes a token before anything is emitted unless the config says otherwise: the same
        # processor, key ring and tokens as a [[processing]] pseudonymize entry (kind email) would give.
        self._patron: Pseudonymizer | None = None
        if config.pickup.patron is PatronAddress.TOKEN:
            pz = PseudonymizeConfig.model_validate(
                {"type": "pseudonymize", "attributes": [PATRON], "kinds": {PATRON: "email"}}
            )
            self._patron = pz.build(context.processor_context())
        boards_of: dict[str, list[Board]] = {}
        for bc in config.boards:
            board = self.boards[bc.name] = Board(bc)
            boards_of.setdefault(bc.bus, []).append(board)
        for bus_cfg in config.buses:
            if bus_cfg.name not in boards_of:
                continue
            self.buses[bus_cfg.name] = LockerBus(
                cfg=bus_cfg,
                boards=boards_of[bus_cfg.name],
                on_status=self._on_status,
                on_state=self._on_board_state,
                poll_interval=config.poll_interval,
                offline_after=config.offline_after,
                clock=monotonic,
                component=config.name,
            )
        for bc in config.boards:
            for label, lock in bc.compartments.items():
                entity_id = config.entity_id.format_map(
                    {"gateway": context.gateway_id, "adapter": config.name, "label": label}
                )
                check_entity_id(entity_id)
                c = _Compartment(
                    label=label, board=self.boards[bc.name], bus=self.buses[bc.bus], lock=lock, entity_id=entity_id
                )
                self.compartments[label] = c
                self._by_entity[entity_id] = c
                self._on_board.setdefault(bc.name, []).append(c)

    # --- running ----------------------------------------------------------------------------------------------

    def open_store(self) -> PickupStore:
        if self.store is None:
            p = self.config.pickup
            self.store = PickupStore(
                Path(self.context.data_dir) / f"locker-{self.config.name}.db",
                clock=lambda: self._clock().timestamp(),
                code_length=p.code_length,
                max_wrong=p.max_wrong,
                # as long as the code would have worked: a patron who kept its mail comes within that time
                ended_kept_s=p.valid_days * 86400,
            )
        return self.store

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        store = self.open_store()
        if self._patron is None:
            self._log.info('pickup events carry the patron\'s e-mail address in clear (pickup.patron = "clear")')
        try:
            for a in await asyncio.to_thread(store.unconfirmed):
                # killed between a code check and seeing its door open: the statuses from now on decide
                unseen = self.compartments.get(a.label)
                if unseen is not None:
                    unseen.unseen, unseen.unseen_since = a.id, self._mono()
            await self._find_code_mails(store)
            # the platform (and the command router) learn every compartment at once, in one commit group
            await self._publish_many(list(self.compartments.values()))
            for a in await asyncio.to_thread(
                store.pending_events
            ):  # a crash between the pickup and its event: send it now
                await self._pickup_event(a)
            async with asyncio.TaskGroup() as tg:
                for bus in self.buses.values():
                    tg.create_task(bus.run())
                tg.create_task(self._housekeeping_loop())
        finally:
            try:
                await asyncio.to_thread(store.close)  # waits for a call still running in a worker thread
            finally:
                self.store = None

    async def _find_code_mails(self, store: PickupStore) -> None:
        """Assignments a crash left without their mail id: noted when the queue has the mail, else listed."""
        for a in await asyncio.to_thread(store.unmailed):
            mail_id = (
                None if self.context.mail is None else await code_mail.find(self.context.mail, self.config.name, a)
            )
            if mail_id is not None:
                await asyncio.to_thread(store.set_mail, a.id, mail_id)
                self._log.info(
                    "compartment %s: code mail %d of assignment %d found in the mail queue", a.label, mail_id, a.id
                )
                continue
            self.unmailed[a.label] = a.id
            self._log.warning(
                "compartment %s: assignment %d has no code mail, got none queued (the gateway stopped between "
                "assigning it and queueing its mail); the patron has no code: cancel it on /lockers and assign again",
                a.label,
                a.id,
            )

    async def _housekeeping_loop(self) -> None:
        while True:
            await self.housekeeping()
            await asyncio.sleep(min(5.0, self.config.pickup.door_open_alert_s / 4))

    async def housekeeping(self) -> None:
        """Doors open too long become alerts; codes past their deadline expire and the compartment is flagged."""
        now = self._mono()
        for c in self.compartments.values():
            if (
                c.opened_mono is not None
                and not c.open_alerted
                and now - c.opened_mono >= self.config.pickup.door_open_alert_s
            ):
                c.open_alerted = True
                await self._alert(
                    c,
                    "doorOpenTooLong",
                    "medium",
                    f"door of compartment {c.label} open for more than {self.config.pickup.door_open_alert_s:g} s",
                )
        if self.store is not None:
            await asyncio.to_thread(self.store.forget_ended)
            for a in await asyncio.to_thread(self.store.expire):
                late = self.compartments.get(a.label)
                if late is None:
                    continue
                self._log.info("compartment %s: pickup deadline passed (assignment %d)", a.label, a.id)
                await self._alert(late, "pickupOverdue", "low", f"compartment {a.label} not collected by its deadline")
                await self._publish(late)

    # --- board callbacks ---------------------------------------------------------------------------------------

    async def _on_status(self, board: Board, status: BoardStatus) -> None:
        """A board's status: its changed compartments (and their alerts) go to the buffer as one burst.

        The bus waits for this before its next exchange, and each emit waits for a durable commit:
        one emit per compartment made a board's first status (48 compartments) or its return from
        offline cost 48 commits in a row, ~0.5 s on an SD card, during which no other board on the
        line was polled and a door change there waited that long on top of the poll interval.
        """
        emptied: list[_Compartment] = []
        for c in self._on_board[board.name]:  # every status counts, the usual unchanged one too
            state = status.lock(c.lock)
            now_emptied = c.watch.status(locked=state.locked, occupied=state.occupied, now=self._mono())
            if now_emptied:
                emptied.append(c)
            if c.unseen is not None:
                await self._unseen_door(c, state.locked, emptied=now_emptied)
        changed: list[_Compartment] = []
        alerts: list[Reading] = []
        masks = (status.locked_mask, status.occupied_mask)
        if self._masks.get(board.name) != masks:  # else the usual poll: nothing changed on this board
            self._masks[board.name] = masks
            await self._changes(board, status, changed, alerts)
        for c in emptied:
            # its occupancy read empty since the run's first status (published then); the pickup, else news
            if await self._door_closed(c):
                continue
            if c.watch.since - c.unlocked_mono > _UNLOCK_GRACE_S and c.watch.alert_due():
                alerts.append(await self._emptied_alert(c))
        await self._publish_many(changed, alerts)

    async def _changes(
        self, board: Board, status: BoardStatus, changed: list[_Compartment], alerts: list[Reading]
    ) -> None:
        """The board's compartments whose door or occupancy changed go to `changed`, with their alerts."""
        for c in self._on_board[board.name]:
            state = status.lock(c.lock)
            if state.locked == c.locked and state.occupied == c.occupied:
                continue
            was_locked, c.locked, c.occupied = c.locked, state.locked, state.occupied
            c.changed_at = self._clock()
            changed.append(c)
            if was_locked is not None and was_locked and not state.locked:
                c.opened_mono = self._mono()
                c.open_alerted = False
                if self._mono() - c.unlocked_mono > _UNLOCK_GRACE_S:
                    self._log.warning("compartment %s: door opened without an unlock command", c.label)
                    alerts.append(
                        self._alert_reading(
                            c, "forcedOpen", "high", f"door of compartment {c.label} opened without unlock"
                        )
                    )
            elif state.locked and was_locked is not True:
                c.opened_mono = None
                # None: the first status since start; a door opened before a crash may have closed meanwhile.
                # Occupancy changing behind a door that stayed locked is no closing: `EmptiedWatch` judges it.
                await self._door_closed(c)

    async def _unseen_door(self, c: _Compartment, locked: bool, *, emptied: bool = False) -> None:
        """A status for a compartment whose code was used: the door open (or `emptied` behind it, see emptied.py)
        spends the code; read locked long enough (UNSEEN_STATUSES, UNSEEN_AFTER_S), the code is given back."""
        assert c.unseen is not None
        if self.store is None:
            return
        assignment_id = c.unseen
        if not locked or emptied:
            c.unseen = None
            if await asyncio.to_thread(self.store.seen_open, assignment_id) is None:
                return
            if emptied:
                # its closing, in this same status, is the pickup (`_door_closed`)
                self._log.info(
                    "compartment %s: emptied behind its closed door after its pickup code (assignment %d): the door "
                    "opened and closed between two statuses",
                    c.label,
                    assignment_id,
                )
            else:
                self._log.info(
                    "compartment %s: door seen open after its pickup code (assignment %d)", c.label, assignment_id
                )
            return
        c.unseen_locked += 1
        waited = self._mono() - c.unseen_since
        if c.unseen_locked < UNSEEN_STATUSES or waited < UNSEEN_AFTER_S or c.watch.settling:
            return  # settling: the door may have opened and closed unseen, the next statuses tell
        c.unseen = None
        if await asyncio.to_thread(self.store.give_back, assignment_id) is None:
            return  # decided meanwhile (cancelled by staff)
        self._log.warning(
            "compartment %s: the door was not seen open in %d statuses over %.0f s after its pickup code was used"
            " (assignment %d); the code works again",
            c.label,
            c.unseen_locked,
            waited,
            assignment_id,
        )
        await self._publish(c)

    async def _door_closed(self, c: _Compartment) -> bool:
        """The pickup when the door of a compartment whose code opened it closes on an empty one; whether it was."""
        if self.store is None or c.occupied:
            return False  # still something inside (or no store yet): not a pickup
        a = await asyncio.to_thread(self.store.collected, c.label)
        if a is None:
            return False
        self._log.info("compartment %s: picked up (assignment %d)", c.label, a.id)
        await self._pickup_event(a)
        return True

    async def _emptied_alert(self, c: _Compartment) -> Reading:
        """A compartment emptied behind its closed door with no code used and no unlock from us: opened by a key
        or forced between two statuses, or its sensor wrong. Its assignment stays: staff look and decide."""
        a = (await asyncio.to_thread(self.store.active)).get(c.label) if self.store is not None else None
        held = (
            "no assignment"
            if a is None
            else f"assignment {a.id} is still {a.state.value}, its code unused: check the compartment and cancel the "
            "assignment on /lockers if the book is gone"
        )
        self._log.warning(
            "compartment %s: emptied without an unlock command, its door opened and closed between two statuses; %s",
            c.label,
            held,
        )
        return self._alert_reading(
            c,
            "emptiedUnseen",
            "high",
            f"compartment {c.label} emptied without unlock: its door opened and closed between two statuses",
        )

    async def _on_board_state(self, board: Board, state: BoardState, reason: str) -> None:
        if self._emit is None:
            return
        attrs = {
            "deviceState": Attribute(value=state.value, type="Text", metadata={"reason": reason}),
            "name": Attribute(value=board.name, type="Text"),
        }
        await self._send(
            Reading(
                entity_id=f"urn:ngsi-ld:Device:{self.context.gateway_id}-{self.config.name}-{board.name}",
                entity_type=DEVICE_TYPE,
                attributes=attrs,
                observed_at=self._clock(),
                source=Source(adapter=self.config.name, device=board.name),
            )
        )
        if state is BoardState.OFFLINE:
            self._masks.pop(board.name, None)  # the first answer afterwards is news, whatever it says
            for c in self._on_board[board.name]:
                c.locked = c.occupied = None  # unknown until the board answers again
                c.watch.forget()  # its door may open and close meanwhile
            await self._publish_many(self._on_board[board.name])

    # --- readings ---------------------------------------------------------------------------------------------

    def pickup_state(self, c: _Compartment, a: Assignment | None) -> str:
        if a is None:
            return "free"
        if a.state is PickupState.RESERVED and a.wrong >= self.config.pickup.max_wrong:
            return "codeLocked"
        return a.state.value

    async def _send(self, reading: Reading) -> None:
        assert self._emit is not None
        await self._emit(reading)
        self.emitted += 1

    async def _send_many(self, readings: list[Reading]) -> None:
        assert self._emit is not None
        if readings:
            await emit_many(self._emit, readings)  # one burst: the same commit group, one wait
            self.emitted += len(readings)

    async def _publish(self, c: _Compartment) -> None:
        await self._publish_many([c])

    async def _publish_many(self, cs: list[_Compartment], alerts: list[Reading] | None = None) -> None:
        """The compartments' readings (after `alerts`, if any) as one burst; the store is read once."""
        if self._emit is None:
            return
        active = await asyncio.to_thread(self.store.active) if self.store is not None and cs else {}
        await self._send_many([*(alerts or []), *(self._compartment_reading(c, active.get(c.label)) for c in cs)])

    def _compartment_reading(self, c: _Compartment, a: Assignment | None) -> Reading:
        door = "unknown" if c.locked is None else ("locked" if c.locked else "open")
        attrs: dict[str, Attribute] = {
            "compartmentLabel": Attribute(value=c.label, type="Text"),
            "doorState": Attribute(value=door, type="Text"),
            "pickupState": Attribute(value=self.pickup_state(c, a), type="Text"),
        }
        if c.occupied is not None:
            attrs["occupied"] = Attribute(value=c.occupied, type="Boolean")
        if c.changed_at is not None:
            attrs["lastChange"] = Attribute(value=iso_utc(c.changed_at), type="DateTime")
        if a is not None:
            attrs["pickupDeadline"] = Attribute(
                value=iso_utc(datetime.fromtimestamp(a.expires_at, UTC)), type="DateTime"
            )
        return Reading(
            entity_id=c.entity_id,
            entity_type=COMPARTMENT_TYPE,
            attributes=attrs,
            observed_at=self._clock(),
            source=Source(adapter=self.config.name, device=c.board.name),
        )

    async def _alert(self, c: _Compartment, kind: str, severity: str, description: str) -> None:
        reading = self._alert_reading(c, kind, severity, description)
        if self._emit is not None:
            await self._send(reading)

    def _alert_reading(self, c: _Compartment, kind: str, severity: str, description: str) -> Reading:
        self.alerts += 1
        now = self._clock()
        return Reading(
            entity_id=f"urn:ngsi-ld:Alert:{self.context.gateway_id}-{self.config.name}-{c.label}-{kind}-"
            f"{int(now.timestamp())}",
            entity_type=ALERT_TYPE,
            attributes={
                "category": Attribute(value="security", type="Text"),
                "subCategory": Attribute(value=kind, type="Text"),
                "severity": Attribute(value=severity, type="Text"),
                "alertSource": Attribute(value=c.entity_id, type="Relationship"),
                "description": Attribute(value=description, type="Text"),
                "dateIssued": Attribute(value=iso_utc(now), type="DateTime"),
            },
            observed_at=now,
            source=Source(adapter=self.config.name, device=c.board.name),
            lane=Lane.ALERT,
        )

    async def _pickup_event(self, a: Assignment) -> None:
        """The pickup to the platform; the patron as the `patron` attribute, a token unless configured clear."""
        if self._emit is None or self.store is None:
            return
        c = self.compartments.get(a.label)
        email = await asyncio.to_thread(self.store.email_of, a.id)
        attrs: dict[str, Attribute] = {
            "compartmentLabel": Attribute(value=a.label, type="Text"),
            "pickedUpAt": Attribute(value=iso_utc(datetime.fromtimestamp(a.closed_at or 0, UTC)), type="DateTime"),
            "assignedAt": Attribute(value=iso_utc(datetime.fromtimestamp(a.created_at, UTC)), type="DateTime"),
        }
        if c is not None:
            attrs["refLockerCompartment"] = Attribute(value=c.entity_id, type="Relationship")
        if email:
            attrs[PATRON] = Attribute(value=email, type="Text")
        reading = Reading(
            entity_id=f"urn:ngsi-ld:{PICKUP_TYPE}:{self.context.gateway_id}-{self.config.name}-{a.id}",
            entity_type=PICKUP_TYPE,
            attributes=attrs,
            observed_at=datetime.fromtimestamp(a.closed_at or a.created_at, UTC),
            source=Source(adapter=self.config.name, device=c.board.name if c else ""),
        )
        if self._patron is not None and PATRON in attrs:
            # the key in force when the pickup happened, also for an event re-sent after a crash
            (reading,) = self._patron.process(reading, self._clock())
        await self._send(reading)
        await asyncio.to_thread(self.store.event_sent, a.id)
        if c is not None:
            await self._publish(c)

    # --- commands ---------------------------------------------------------------------------------------------

    async def handle(self, command: Command) -> CommandResult:
        c = self._by_entity.get(command.entity_id)
        name = command.name
        if c is None:
            return self._result(command, False, f"unknown: no compartment has entity id {command.entity_id}")
        if name not in ("unlock", "open") and command.uplink != LOCAL_SOURCE:
            # the platform opens doors; the pickup flow (codes, addresses, references) stays on the box
            return self._result(command, False, f"unknown: {name} is taken from the box's own pages only")
        try:
            if name in ("unlock", "open"):
                return await self._unlock(command, c)
            if name == "assign":
                return await self._assign(command, c)
            if name == "pickup":
                return await self._kiosk(command, c)
            if name == "cancel":
                return await self._cancel(command, c)
            if name == "reset":
                return await self._reset(command, c)
            if name == "grid":
                active = await asyncio.to_thread(self.open_store().active)
                return self._result(command, True, json.dumps(self.grid(active), ensure_ascii=False))
        except PickupError as exc:
            return self._result(command, False, f"refused: {exc}")
        return self._result(
            command, False, f"unknown: command must be unlock, assign, pickup, cancel, reset or grid, got {name}"
        )

    @staticmethod
    def _result(command: Command, ok: bool, info: str) -> CommandResult:
        return CommandResult(command_id=command.command_id, ok=ok, info=info)

    async def _open_door(self, c: _Compartment) -> _Unlocked:
        """Pulse the lock; whether the door is open afterwards, known not to be, or not known (see `_Unlocked`)."""
        if c.board.state is not BoardState.ONLINE:
            return _Unlocked(False, f"offline: board {c.board.name} of compartment {c.label} does not answer")
        if c.locked is False:
            return _Unlocked(False, f"open: the door of compartment {c.label} is open already")
        c.unlocked_mono = self._mono()
        self.unlocks += 1
        try:
            status = await c.bus.unlock(c.board, c.lock)
        except RequestNotSent as exc:
            return _Unlocked(False, f"offline: {exc}")
        except LinkError as exc:
            return _Unlocked(None, f"offline: {exc}")
        if status is None:
            return _Unlocked(None, f"offline: board {c.board.name} gave no status after the unlock")
        if status.lock(c.lock).locked:
            return _Unlocked(False, f"stuck: the door of compartment {c.label} did not open")
        return _Unlocked(True)

    async def _unlock(self, command: Command, c: _Compartment) -> CommandResult:
        door = await self._open_door(c)
        if not door.opened:
            return self._result(command, False, door.reason)
        self._log.info("compartment %s: opened by command (via %s)", c.label, command.uplink or "-")
        return self._result(command, True, f"opened: compartment {c.label}")

    async def _assign(self, command: Command, c: _Compartment) -> CommandResult:
        value = command.value if isinstance(command.value, dict) else {}
        email = str(value.get("email", "")).strip()
        reference = str(value.get("reference", "")).strip()
        try:
            check_address(email, "email")  # the mail queue's own rule: an address it takes is one it can send to
        except MailError:
            return self._result(
                command,
                False,
                "invalid_email: the e-mail address is not valid, got a value not shown here; "
                "it must be local@domain in half-width ASCII (an internationalised domain in its xn-- form)",
            )
        if not 0 < len(reference) <= _REFERENCE_MAX:
            return self._result(command, False, f"invalid_reference: must be 1..{_REFERENCE_MAX} characters")
        if self.context.mail is None:
            return self._result(
                command,
                False,
                "no_mail: mail is not running (no [mail] section, or see the status); no code can be sent",
            )
        if c.board.state is not BoardState.ONLINE:
            # a code the patron could not use yet: better the librarian picks another compartment
            return self._result(
                command, False, f"offline: board {c.board.name} of compartment {c.label} does not answer"
            )
        if c.locked is False:
            return self._result(command, False, f"open: close the door of compartment {c.label} first")
        try:
            self._code_mail(c, email, "0" * self.config.pickup.code_length, 0, self._clock())
        except MailError as exc:  # e.g. a site name the subject cannot carry: nothing stored yet
            return self._result(command, False, f"mail_failed: the code mail cannot be made, got {exc}")
        # both commits, or the assignment undone, whatever becomes of this command (a deadline cancels it)
        step = asyncio.ensure_future(self._assign_and_mail(command, c, email, reference))
        self._steps.add(step)
        step.add_done_callback(self._steps.discard)
        return await asyncio.shield(step)

    def _code_mail(self, c: _Compartment, email: str, code: str, assignment_id: int, deadline: datetime) -> Mail:
        p = self.config.pickup
        return pickup_mail(
            to=email,
            site=p.site,
            label=c.label,
            code=code,
            deadline=deadline,
            reference=code_mail.reference(self.config.name, assignment_id),
            zone=self._zone,
        )

    async def _assign_and_mail(self, command: Command, c: _Compartment, email: str, reference: str) -> CommandResult:
        store = self.open_store()
        mail = self.context.mail
        assert mail is not None
        a, code = await asyncio.to_thread(
            functools.partial(
                store.assign, c.label, email=email, reference=reference, valid_s=self.config.pickup.valid_days * 86400
            )
        )
        deadline = datetime.fromtimestamp(a.expires_at, UTC)
        mail_id: int | None = None
        try:
            mail_id = await mail.enqueue(self._code_mail(c, email, code, a.id, deadline))
            await asyncio.to_thread(store.set_mail, a.id, mail_id)
        except Exception as exc:  # the queue's disk full, the queue closed …: without its mail the code is lost
            return self._result(command, False, await self._undo_assign(c, a, mail_id, exc))
        self._log.info("compartment %s: assigned (assignment %d, mail %d)", c.label, a.id, mail_id)
        await self._publish(c)
        info = {"assignment": a.id, "mail_id": mail_id, "label": c.label, "expires_at": iso_utc(deadline)}
        return self._result(command, True, json.dumps(info))

    async def _undo_assign(self, c: _Compartment, a: Assignment, mail_id: int | None, exc: Exception) -> str:
        """The assignment whose code mail could not be queued (or noted) is cancelled; the refusal for staff."""
        self.mail_failures += 1
        why = f"{type(exc).__name__}: {redact.text(str(exc)) or 'no message'}"
        try:
            if mail_id is not None:  # queued, but not noted: it must not go out for an assignment undone
                await code_mail.withdraw(self.context.mail, self.config.name, replace(a, mail_id=mail_id), "undone")
            await asyncio.to_thread(self.open_store().cancel, c.label, assignment=a.id)
        except Exception as undo:
            self.unmailed[c.label] = a.id
            self._log.error(
                "compartment %s: the code mail of assignment %d could not be queued, got %s; nor could the "
                "assignment be undone, got %s: %s; cancel it on /lockers",
                c.label,
                a.id,
                why,
                type(undo).__name__,
                redact.text(str(undo)),
            )
            await self._publish(c)
            return (
                f"mail_failed: the code mail for compartment {c.label} could not be queued, got {why}; the "
                f"assignment could not be undone either: cancel compartment {c.label}, then assign again"
            )
        self._log.warning(
            "compartment %s: the code mail of assignment %d could not be queued, got %s; assignment undone (counted "
            "in mail_failures)",
            c.label,
            a.id,
            why,
        )
        await self._publish(c)
        return (
            f"mail_failed: the code mail for compartment {c.label} could not be queued, got {why}; "
            "nothing was assigned, assign again once the mail queue works (see the status)"
        )

    async def _kiosk(self, command: Command, c: _Compartment) -> CommandResult:
        value = command.value if isinstance(command.value, dict) else {}
        code = str(value.get("code", ""))
        store = self.open_store()
        spent: Assignment | None = None
        if not code.isdigit() or len(code) != self.config.pickup.code_length:
            check, _ = await asyncio.to_thread(
                store.check_code, c.label, "x"
            )  # counts as a wrong try: no free probing of the format
        else:
            check, spent = await asyncio.to_thread(store.check_code, c.label, code)
        if check is CodeCheck.NO_CODE:
            return self._result(command, False, "no_code: no valid code for this compartment")
        if check in _ENDED:
            assert spent is not None
            counter, entered, answer = _ENDED[check]
            self.ended_codes[counter] += 1
            self._log.info(
                "compartment %s: %s; it opens nothing and is not counted as a wrong try (counted in %s)",
                c.label,
                entered.format(id=spent.id),
                counter,
            )
            return self._result(command, False, answer.format(label=c.label))
        if check is CodeCheck.UNCONFIRMED:
            return self._result(
                command, False, _unconfirmed(c, "its code was used and the door has not been seen open yet")
            )
        if check is not CodeCheck.OK:
            self._log.info("compartment %s: wrong pickup code (%s)", c.label, check.value)
            if check is CodeCheck.LOCKED:
                await self._publish(c)
            return self._result(
                command,
                False,
                f"{check.value}_code: wrong code"
                if check is CodeCheck.WRONG
                else "locked: too many wrong codes; ask the library",
            )
        assert spent is not None
        # from here the statuses may see the door open (the unlock's own poll among them); none gives the
        # code back before the unlock's outcome is in
        c.unseen, c.unseen_since, c.unseen_locked = spent.id, math.inf, 0
        try:
            door = await self._open_door(c)
        finally:
            if c.unseen == spent.id:  # also when cancelled (a command's deadline): not known either
                c.unseen_since, c.unseen_locked = self._mono(), 0
        if door.opened is None and c.unseen is None:
            door = _Unlocked(True)  # a status in between saw it open (`_unseen_door`; no give-back while under way)
        if door.opened is None:
            # the door may well be open: the code stays used, the next statuses decide
            self._log.warning(
                "compartment %s: right code, the unlock's outcome not known (%s); the next statuses decide",
                c.label,
                door.reason,
            )
            await self._publish(c)
            return self._result(command, False, _unconfirmed(c, door.reason.removeprefix("offline: ")))
        c.unseen = None
        if not door.opened:
            # the code was right but the door did not open: give the patron the code back
            self._log.warning("compartment %s: right code but %s", c.label, door.reason)
            await asyncio.to_thread(store.give_back, spent.id)
            return self._result(command, False, door.reason)
        await asyncio.to_thread(store.seen_open, spent.id)  # its poll's status may have done it: then a no-op
        self._log.info("compartment %s: opened with its pickup code", c.label)
        await self._publish(c)
        return self._result(command, True, f"opened: compartment {c.label}")

    async def _cancel(self, command: Command, c: _Compartment) -> CommandResult:
        store = self.open_store()
        a = (await asyncio.to_thread(store.active)).get(c.label)
        if a is None:
            return self._result(command, False, f"free: compartment {c.label} has no assignment")
        # the mail first: an assignment ended with its code still queued would send a code that opens nothing,
        # and the patron's tries would count against the compartment's next assignment
        try:
            mail_note = await code_mail.withdraw(self.context.mail, self.config.name, a, "assignment cancelled")
        except Exception as exc:  # the queue unusable: the assignment ends all the same, and staff are told
            mail_note = code_mail.not_withdrawn(exc, redact.text(str(exc)))
            self._log.warning("compartment %s: assignment %d: %s", c.label, a.id, mail_note.text)
        done = await asyncio.to_thread(store.cancel, c.label, assignment=a.id)
        if done is None:
            return self._result(command, False, f"free: compartment {c.label} has no assignment")
        self.unmailed.pop(c.label, None)
        self._log.info("compartment %s: assignment %d cancelled; %s", c.label, a.id, mail_note.text)
        await self._publish(c)
        return self._result(command, True, code_mail.cancelled(a.id, mail_note))

    async def _reset(self, command: Command, c: _Compartment) -> CommandResult:
        a = await asyncio.to_thread(self.open_store().reset_tries, c.label)
        if a is None:
            return self._result(command, False, f"free: compartment {c.label} has no reserved code")
        await self._publish(c)
        return self._result(command, True, f"reset: compartment {c.label}")

    # --- status ---------------------------------------------------------------------------------------------

    def grid(self, active: dict[str, Assignment]) -> list[dict[str, Any]]:
        """Every compartment with its board, door, occupancy and pickup state; `active`: the store's assignments."""
        out = []
        for c in self.compartments.values():
            a = active.get(c.label)
            out.append(
                {
                    "label": c.label,
                    "entity_id": c.entity_id,
                    "board": c.board.name,
                    "online": c.board.state is BoardState.ONLINE,
                    "door": "unknown" if c.locked is None else ("locked" if c.locked else "open"),
                    "occupied": c.occupied,
                    "pickup": self.pickup_state(c, a),
                    "assignment": None if a is None else a.to_dict(),
                }
            )
        return out

    def diagnostics(self) -> dict[str, Any]:
        online = sum(b.state is BoardState.ONLINE for b in self.boards.values())
        summary = f"boards online {online}/{len(self.boards)}"
        if self.unmailed:
            labels = ", ".join(sorted(self.unmailed))
            summary += f"; assigned without a code mail: {labels} (cancel and assign again on /lockers)"
        return {
            "summary": summary,
            "emitted": self.emitted,
            "alerts": self.alerts,
            "unlocks": self.unlocks,
            "mail_failures": self.mail_failures,
            **self.ended_codes,
            "unmailed": {label: self.unmailed[label] for label in sorted(self.unmailed)},
            "patron": self.config.pickup.patron.value,
            "unreadable_addresses": self.store.unreadable_addresses if self.store is not None else 0,
            "buses": {
                name: {
                    "port": bus.link.url,
                    "open": bus.link.is_open,
                    "error": bus.link_error,
                    "cycles": bus.cycles,
                    "last_cycle_ms": round(bus.last_cycle_s * 1000, 1),
                    "noise_bytes": bus.link.discarded,
                }
                for name, bus in self.buses.items()
            },
            "boards": {
                name: {
                    "state": b.state.value,
                    "last_error": b.last_error,
                    "polls": b.counters.polls,
                    "answers": b.counters.answers,
                    "timeouts": b.counters.timeouts,
                    "frame_errors": b.counters.frame_errors,
                    "unlocks": b.counters.unlocks,
                    "went_offline": b.counters.went_offline,
                }
                for name, b in self.boards.items()
            },
        }


# A try with a code that ended: the diagnostics' counter, the log's words (never the code), the kiosk's answer.
# The patron holds it from their mail; counted against the compartment's next assignment it would lock that
# patron out, so it is told apart for valid_days (pickup.py).
_ENDED: dict[CodeCheck, tuple[str, str, str]] = {
    CodeCheck.CANCELLED: (
        "cancelled_codes",
        "a pickup code of cancelled assignment {id} was entered",
        "cancelled_code: the reservation for compartment {label} was cancelled; this code no longer opens it, "
        "ask the library",
    ),
    CodeCheck.EXPIRED: (
        "expired_codes",
        "the pickup code of assignment {id} was entered after its deadline",
        "expired_code: the pickup deadline for compartment {label} has passed; this code no longer opens it, "
        "ask the library",
    ),
    CodeCheck.USED: (
        "used_codes",
        "the pickup code of collected assignment {id} was entered again",
        "used_code: the book in compartment {label} was collected with this code already; it opens nothing now",
    ),
}


def _unconfirmed(c: _Compartment, why: str) -> str:
    return f"unconfirmed: the door of compartment {c.label} may have opened ({why}); if it did not, ask the library"

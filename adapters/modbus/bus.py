"""One scheduler per bus: requests serialized with the inter-frame gap, per-point intervals, offline devices probed with backoff.

A bus is one line (an RS-485 port, a Modbus TCP host or a TCP serial server) shared by several
units. Only one request is on it at a time, and between two the line stays quiet for the gap
the baud rate needs (t3.5) or the device asks for (`inter_request_delay`). Each point has its
own interval; the points of a device that are due together are read in as few requests as
`plan_reads` allows. Timeouts, exception responses and CRC errors are counted per device and
never stop the bus; a device that stops answering is marked offline and then only probed, with
a doubling delay, so its timeouts do not eat the others' time on the line.

Device states (`DeviceState`), each change reported once through `on_state` with its reason:
    unknown   → online     a read answered
    unknown   → refusing   `offline_after` polls in a row answered only with exceptions, and none of
    online    → refusing   its points read at its last read (it is there, but its data is not)
    refusing  → online     a read answered again
    any       → offline    `offline_after` polls in a row without an answer, or the line lost (or never
                           quiet: it streams bytes, and is asked again after a pause that doubles)
    offline   → online     a probe answered (refusing: the probe was refused and no point reads)
A refused point is sent as `no_data`; a poll with some points read keeps the device online.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapters.modbus import rtu
from adapters.modbus.codec import (
    CodecError,
    PointValue,
    QualityCode,
    ReadRequest,
    decode_reads,
    plan_reads,
)
from adapters.modbus.transport import LineNoisy, Link, LinkError, ModbusTimeout
from gateway.cancellation import event_set_within
from gateway.logs import StateLog, component_logger
from gateway.profiles.schema import Point

__all__ = ["Bus", "BusDevice", "DeviceCounters", "DeviceState", "PollResult"]


class DeviceState(enum.Enum):
    UNKNOWN = "unknown"  # not answered yet since start
    ONLINE = "online"
    OFFLINE = "offline"
    REFUSING = "refusing"  # it answers, but with exceptions to the reads of all its points


@dataclass(slots=True)
class DeviceCounters:
    polls: int = 0
    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    retries: int = 0
    crc_errors: int = 0
    frame_errors: int = 0
    exceptions: Counter[int] = field(default_factory=Counter)  # by exception code
    late_polls: int = 0  # poll times skipped because the bus was busy past them
    late_answers: int = 0  # its answers that came after its request had timed out: raise its timeout
    probes: int = 0
    went_offline: int = 0


@dataclass(slots=True)
class _Group:
    interval: float
    points: tuple[Point, ...]
    next_due: float = 0.0


class BusDevice:
    """A unit on the bus with its points, limits and runtime state (counters, online state, schedule)."""

    def __init__(
        self,
        *,
        name: str,
        unit_id: int,
        points: Sequence[Point],
        intervals: Sequence[float],
        timeout: float,
        retries: int = 1,
        inter_request_delay: float = 0.0,
        max_registers: int = 125,
        max_bits: int = 2000,
        max_gap: int = 0,
    ) -> None:
        self.name = name
        self.unit_id = unit_id
        self.points = tuple(points)
        self.timeout = timeout
        self.retries = retries
        self.inter_request_delay = inter_request_delay
        self.limits = {"max_registers": max_registers, "max_bits": max_bits, "max_gap": max_gap}
        by_interval: dict[float, list[Point]] = {}
        for p, every in zip(self.points, intervals, strict=True):
            by_interval.setdefault(every, []).append(p)
        self.groups = [_Group(interval=i, points=tuple(ps)) for i, ps in sorted(by_interval.items())]
        self.state = DeviceState.UNKNOWN
        self.counters = DeviceCounters()
        self.failures_in_row = 0
        self.refusals_in_row = 0  # polls answered only with exceptions
        self.readable: set[str] = set()  # the points whose latest read got data, not an exception
        self.next_probe = 0.0
        self.probe_delay = 0.0
        self.last_error = ""
        # exception answers (function, exception code, address) logged at WARNING, until that read answers again
        self._logged: set[tuple[int, int, int]] = set()

    def decimals_for(self, points: Sequence[Point]) -> list[Point]:
        """The decimals points `points` need but do not include (a decimals register may have its own interval)."""
        have = {p.name for p in points}
        need = {p.decimals_from for p in points if p.decimals_from and p.decimals_from not in have}
        return [p for p in self.points if p.name in need]

    @property
    def next_due(self) -> float:
        return self.next_probe if self.state is DeviceState.OFFLINE else min(g.next_due for g in self.groups)

    def first_exception(self, key: tuple[int, int, int]) -> bool:
        """Whether this exception answer (function, exception code, address) is new; it is remembered."""
        if key in self._logged:
            return False
        self._logged.add(key)
        return True

    def read_again(self, function_code: int, address: int) -> None:
        """The read at `address` answered with data: its refusals' spell is over, the next one is news again."""
        if self._logged:
            self._logged = {k for k in self._logged if (k[0], k[2]) != (function_code, address)}

    def poll_now(self, now: float) -> None:
        """Read every point at the next chance (after a command changed the device, or it answers again).

        Due `now`, not at time 0: the poll after it counts the intervals between its due time and
        `now` as late polls, and time 0 is when the machine booted.
        """
        for g in self.groups:
            g.next_due = now
        if self.state is DeviceState.OFFLINE:
            self.next_probe = now


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResult:
    """The values one poll read; `due` and `started` are monotonic seconds (their gap is the poll's jitter)."""

    device: BusDevice
    values: dict[str, PointValue]
    due: float
    started: float


StateCallback = Callable[[BusDevice, DeviceState, str], None]
PollCallback = Callable[[PollResult], None]


class Bus:
    """Runs the schedule of one line until cancelled; `write` slips a command in between two polls."""

    def __init__(
        self,
        *,
        name: str,
        link: Link,
        devices: Sequence[BusDevice],
        on_poll: PollCallback,
        on_state: StateCallback,
        silent_interval: float = 0.0,
        offline_after: int = 3,
        probe_initial: float = 5.0,
        probe_max: float = 300.0,
        reopen_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        component: str = "modbus",
    ) -> None:
        self.name = name
        self.link = link
        self.devices = list(devices)
        self.on_poll = on_poll
        self.on_state = on_state
        self.silent_interval = silent_interval
        self.offline_after = offline_after
        self.probe_initial = probe_initial
        self.probe_max = probe_max
        self.reopen_max = reopen_max
        self.clock = clock
        self.link_error = ""
        self.reopens = 0
        self.never_quiet = 0  # times the line was found streaming bytes (LineNoisy)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._quiet_from = 0.0  # the line may carry the next request from this time on
        self._log = component_logger(__name__, component)
        self._line = StateLog(self._log)  # the line's failure, said once per reason, and its return once

    # --- the loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._stagger(self.clock())
        delay = 1.0
        try:
            while True:
                if not self.link.is_open:
                    if not await self._open():
                        await self._sleep(delay)
                        delay = min(delay * 2, self.reopen_max)
                        continue
                    delay = 1.0
                try:
                    await self._step()
                except LineNoisy as exc:
                    self.never_quiet += 1
                    self._link_lost(str(exc))
                    # the port is open, the line unusable: ask again after a pause, longer while it lasts
                    await self._sleep(delay)
                    delay = min(delay * 2, self.reopen_max)
                    continue
                except LinkError as exc:
                    self._link_lost(str(exc))
                    continue
                if not self._line.failing:
                    delay = 1.0
        finally:
            await self.link.close()

    def _stagger(self, now: float) -> None:
        # spread the first polls over the shortest interval so the devices do not all fall due at once
        n = len(self.devices)
        shortest = min((g.interval for d in self.devices for g in d.groups), default=1.0)
        for i, d in enumerate(self.devices):
            for g in d.groups:
                g.next_due = now + shortest * i / n

    async def _open(self) -> bool:
        try:
            await self.link.open()
        except LinkError as exc:
            self._link_lost(str(exc))
            return False
        if self._line.ok("bus %s: %s open again", self.name, self.link.description):
            self.reopens += 1
            self.link_error = ""
            now = self.clock()
            for d in self.devices:  # offline only because of the line: ask them again right away
                if d.state is DeviceState.OFFLINE:
                    d.next_probe, d.probe_delay = now, self.probe_initial
        return True

    def _link_lost(self, reason: str) -> None:
        self._line.fail(reason, logging.WARNING, "bus %s: %s", self.name, reason)
        self.link_error = reason
        for d in self.devices:
            if d.state is not DeviceState.OFFLINE:
                self._offline(d, reason)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        if seconds <= 0:
            return
        await event_set_within(self._wake, seconds)

    async def _step(self) -> None:
        device = min(self.devices, key=lambda d: d.next_due)
        now = self.clock()
        if device.next_due > now:
            await self._sleep(device.next_due - now)
            return
        if device.state is DeviceState.OFFLINE:
            await self._probe(device, now)
        else:
            await self._poll(device, now)

    # --- polls and probes -----------------------------------------------------------------------------

    async def _poll(self, device: BusDevice, now: float) -> None:
        due_groups = [g for g in device.groups if g.next_due <= now]
        due = min(g.next_due for g in due_groups)
        for g in due_groups:
            # keep the phase: a poll that ran late does not shift the ones after it
            g.next_due += g.interval
            if g.next_due <= now:
                skipped = int((now - g.next_due) // g.interval) + 1
                device.counters.late_polls += skipped
                g.next_due += skipped * g.interval
        points = [p for g in due_groups for p in g.points]
        points.extend(device.decimals_for(points))
        device.counters.polls += 1
        started = self.clock()
        results: list[tuple[ReadRequest, tuple[int, ...] | tuple[bool, ...]]] = []
        refused: list[tuple[ReadRequest, rtu.ExceptionResponse]] = []
        failure: rtu.ModbusError | ModbusTimeout | None = None
        for request in plan_reads(points, **device.limits):
            try:
                response = await self._request(device, _read(device, request), device.retries)
            except rtu.ExceptionResponse as exc:
                refused.append((request, exc))
                self._exception(device, exc, request.address)
                continue
            except (ModbusTimeout, rtu.ModbusError) as exc:
                failure = exc
                break  # a device that did not answer one request will not answer the next: leave the line
            results.append((request, response.registers if request.function_code in (3, 4) else response.bits))
        device.readable.update(name for request, _ in results for name in request.points)
        for request, _ in results:
            device.read_again(request.function_code, request.address)
        device.readable.difference_update(name for request, _ in refused for name in request.points)
        if refused:
            device.last_error = str(refused[-1][1])
        if results:
            self._online(device)
        elif refused:
            self._refused(device, str(refused[-1][1]))
        elif failure is not None:
            device.failures_in_row += 1
            if device.failures_in_row >= self.offline_after:
                self._offline(device, str(failure))
        if failure is not None:
            device.last_error = str(failure)
        values: dict[str, PointValue] = {}
        if results:
            try:
                values = decode_reads(points, results)
            except CodecError as exc:
                device.counters.frame_errors += 1
                self._log.debug("bus %s: %s: %s", self.name, device.name, exc)
                return
        if failure is None and not refused:
            device.last_error = ""  # every read answered: an old timeout would describe a device that is fine
        for request, refusal in refused:
            # sent as no data, like a NaN: the platform sees the attribute is missing, and why in last_error
            detail = f"exception {refusal.exception_code:02X} ({refusal.name})"
            for name in request.points:
                values.setdefault(
                    name, PointValue(name=name, raw=None, value=None, quality=QualityCode.NO_DATA, detail=detail)
                )
        if values:
            self.on_poll(PollResult(device=device, values=values, due=due, started=started))

    async def _probe(self, device: BusDevice, now: float) -> None:
        device.counters.probes += 1
        # the cheapest question the device can answer: its first planned read
        first = plan_reads(device.points, **device.limits)[0]
        try:
            await self._request(device, _read(device, first), 0)
        except rtu.ExceptionResponse as exc:
            # an exception answer is an answer: the device is back, and still refusing if no point read
            device.last_error = str(exc)
            device.readable.difference_update(first.points)
            if not device.readable:
                self._refusing(device, str(exc))
                device.poll_now(self.clock())
                return
        except (ModbusTimeout, rtu.ModbusError) as exc:
            device.last_error = str(exc)
            device.probe_delay = min(device.probe_delay * 2, self.probe_max)
            device.next_probe = self.clock() + device.probe_delay
            return
        self._online(device)
        device.poll_now(self.clock())

    async def _request(self, device: BusDevice, request: rtu.Request, retries: int) -> rtu.Response:
        for attempt in range(retries + 1):
            try:
                return await self._transact(device, request)
            except rtu.ExceptionResponse:
                raise
            except (ModbusTimeout, rtu.ModbusError) as exc:
                if attempt == retries:
                    raise
                device.counters.retries += 1
                self._log.debug("bus %s: %s: retry after %s", self.name, device.name, exc)
        raise AssertionError("unreachable")

    async def _transact(self, device: BusDevice, request: rtu.Request) -> rtu.Response:
        counters = device.counters
        async with self._lock:
            gap = max(self.silent_interval, device.inter_request_delay)
            wait = self._quiet_from + gap - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            counters.requests += 1
            try:
                response = await self.link.transact(request, device.timeout)
            except (ModbusTimeout, rtu.ModbusError) as exc:
                if not isinstance(exc, rtu.FrameError):  # a broken frame may be the stream's bytes
                    self._line_works()  # a refusal, or a line silent all through the exchange
                _count(counters, exc)
                raise
            finally:
                self._quiet_from = self.clock()
                for unit_id in self.link.take_late_answers():
                    self._late_answer(unit_id)
            self._line_works()
            counters.answers += 1
            return response

    def _line_works(self) -> None:
        # the end of a spell of a line that never went quiet (its port stayed open, so `_open` never says it):
        # a whole answer, or silence through an exchange, shows the line carries frames again
        if self._line.failing and self._line.ok(
            "bus %s: %s goes quiet between frames again", self.name, self.link.description
        ):
            self.link_error = ""

    def _late_answer(self, unit_id: int) -> None:
        for d in self.devices:
            if d.unit_id == unit_id:
                d.counters.late_answers += 1
                self._log.debug("bus %s: %s: an answer came after its timeout (%g s)", self.name, d.name, d.timeout)

    async def write(self, device: BusDevice, request: rtu.Request) -> rtu.Response:
        """Send a write between two polls; raises ModbusTimeout, ModbusError or LinkError."""
        if not self.link.is_open:
            raise LinkError(
                f"modbus {self.link.description}: not open, got {self.link_error or 'no link yet'}",
                port=self.link.description,
            )
        response = await self._request(device, request, device.retries)
        if device.state is DeviceState.REFUSING:
            device.failures_in_row = 0  # it takes writes; whether it reads again is for the poll to tell
        else:
            self._online(device)
        device.poll_now(self.clock())
        self._wake.set()
        return response

    # --- state changes ------------------------------------------------------------------------------------

    def _exception(self, device: BusDevice, exc: rtu.ExceptionResponse, address: int) -> None:
        key = (exc.function_code, exc.exception_code, address)
        if device.first_exception(key):
            self._log.warning("bus %s: %s: %s", self.name, device.name, exc)
        else:
            self._log.debug("bus %s: %s: %s", self.name, device.name, exc)

    def _online(self, device: BusDevice) -> None:
        device.failures_in_row = 0
        device.refusals_in_row = 0
        if device.state is DeviceState.ONLINE:
            return
        was = device.state
        device.state = DeviceState.ONLINE
        device.probe_delay = 0.0
        if was is DeviceState.OFFLINE:
            self._log.info("bus %s: %s (unit %d) answers again", self.name, device.name, device.unit_id)
        elif was is DeviceState.REFUSING:
            self._log.info("bus %s: %s (unit %d) reads again", self.name, device.name, device.unit_id)
        self.on_state(device, DeviceState.ONLINE, "")

    def _refused(self, device: BusDevice, reason: str) -> None:
        # it answers, so its failures end; it is refusing once none of its points reads, for
        # `offline_after` polls in a row (a single "busy" answer does not flip its state)
        device.failures_in_row = 0
        device.refusals_in_row += 1
        if device.state is DeviceState.REFUSING or device.readable:
            return
        if device.refusals_in_row >= self.offline_after:
            self._refusing(device, reason)

    def _refusing(self, device: BusDevice, reason: str) -> None:
        device.state = DeviceState.REFUSING
        device.failures_in_row = 0
        device.probe_delay = 0.0
        self._log.warning(
            "bus %s: %s (unit %d) answers but refuses every read: %s", self.name, device.name, device.unit_id, reason
        )
        self.on_state(device, DeviceState.REFUSING, reason)

    def _offline(self, device: BusDevice, reason: str) -> None:
        device.state = DeviceState.OFFLINE
        device.counters.went_offline += 1
        device.probe_delay = self.probe_initial
        device.next_probe = self.clock() + self.probe_initial
        device.last_error = reason
        self._log.warning("bus %s: %s (unit %d) offline: %s", self.name, device.name, device.unit_id, reason)
        self.on_state(device, DeviceState.OFFLINE, reason)


def _count(counters: DeviceCounters, exc: ModbusTimeout | rtu.ModbusError) -> None:
    """Count what a request got instead of its answer."""
    if isinstance(exc, ModbusTimeout):
        counters.timeouts += 1
    elif isinstance(exc, rtu.CrcError):
        counters.crc_errors += 1
    elif isinstance(exc, rtu.ExceptionResponse):
        counters.answers += 1
        counters.exceptions[exc.exception_code] += 1
    elif isinstance(exc, rtu.FrameError):
        counters.frame_errors += 1


def _read(device: BusDevice, request: ReadRequest) -> rtu.Request:
    return rtu.Request(
        unit_id=device.unit_id, function_code=request.function_code, address=request.address, count=request.count
    )

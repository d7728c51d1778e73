"""The scanner adapter: HID and serial scanners and FEIG RFID pads feeding stations, events into the buffer.

Theory of operation. Every device belongs to one station. A device task reads its device and hands
each scan to `process`, which, under the station's lock (scans of one station are handled in the
order they arrived):
1. reserves the station's next scan number in the station store (durable: ids are never reused);
2. runs the pure station (`station.Station.scan`) to get the events and the feedback;
3. checks the events as the gateway will (`check_reading`): one it would drop turns the scan into a
   refusal (`not_storable`), so no book is released, and no accepted beep given, for a loan not stored;
4. emits the events (the awaitable returns once they are on the buffer's disk);
5. records the station's new state and the recent-scans row; counts the reason.
A crash between 1 and 4 loses that scan's number, never its uniqueness; the operator sees no
accept beep and scans again. Devices are followed by name: an evdev path may be a glob
(`/dev/input/by-id/*-event-kbd`), looked at every `rescan_s`; a device that goes away (ENODEV,
a serial error) is logged once as lost and once as found again, without restarting anything.
So is a device whose scan the buffer refused (full): the device's task ends, the others run on, and
it is opened again at the next look. One device's trouble never ends the adapter's other devices.

A pad reads every tag new on it before handing any to the station, and hands patron cards first (the
reader lists tags in no particular order): a card laid down with the books opens the patron session
before they are lent. Two or more cards in one read at a lending desk name no patron: every tag of
that read is refused `ambiguous_patron` and nothing is lent (the open session, if any, stays as it was). A tag's type of usage decides what it is (`Station.item_read`); only an item's
security is ever written, never a patron card's.

A pad's tag whose scan made its event but whose security write (AFI, EAS) has not succeeded waits
in memory (`_UnsecuredTags`: the UID, the security due, the time of the last try) for
`SECURITY_RETRY_S`: the book lifted mid-write got the refused beep, and the librarian puts it back
to try again. Put back on the same pad within the window it is written again, with no second
event; after it, or after a restart, it is a new read like any tag taken off and put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import stat
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from adapters.rfid.danish import TagRole, tag_role
from adapters.rfid.errors import RfidTagError
from adapters.rfid.feig import FeigTagStatus
from adapters.rfid.pad import PadTag, Security, SerialPad
from adapters.scanner.aim import Framed, FramingConfig, unframe
from adapters.scanner.classify import CodabarRule, IdKind, ScanClass, ScanKind, classify
from adapters.scanner.codec import BarcodeError
from adapters.scanner.config import CardNumbers, PadSection, ScannerAdapterConfig, ScannerSection
from adapters.scanner.evdev_stream import EVENT_SIZE, EventParser, WedgeAssembler, grab
from adapters.scanner.serial_scanner import (
    STREAM_LINES,
    STREAM_QUIET_S,
    STREAM_SUMMARY_S,
    STREAM_WINDOW_S,
    SerialScan,
    SerialScanner,
    StreamVerdict,
    StreamWatch,
    line_shape,
)
from adapters.scanner.station import CARD_ATTRIBUTES, Feedback, LendingMode, Purpose, Station, Step, present_today
from adapters.scanner.store import RecentScan, StationStore
from adapters.scanner.visit_qr import MIN_KEY_BYTES
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.cancellation import event_set_within
from gateway.errors import ConfigError, ReadingError
from gateway.logs import component_logger
from gateway.ngsi.check import check_reading
from gateway.processing.pseudonymize import PseudonymizeConfig, Pseudonymizer
from gateway.records import Attribute, Command, CommandResult, Emit, Reading, make_attribute
from gateway.secrets import resolve

__all__ = ["SECURITY_RETRY_S", "ScannerAdapter"]

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]

# in the data directory: the stations, their copies lent and returned, the local key
STORE_FILE = "stations.db"
# Long enough for a librarian who heard the refused beep to put the book back; short enough that the
# same book lent or returned again later (the next patron) is a new read and a new event.
SECURITY_RETRY_S = 60
# Whose AFI and EAS a pad writes: the library's items. A patron card's are not a book's to change.
_SECURED_ROLES = (TagRole.ITEM, TagRole.NOT_FOR_LOAN)
# Errors the serial line splitter makes about the line itself, never quoting the scan: the one a wrong
# `suffix` gives every scan, and bytes that are not UTF-8 (a wrong baud rate).
_LINE_ERRORS = frozenset({"framing_suffix", "framing_encoding"})
# What the station page shows of each station's recent scans (kept in memory: diagnostics run on the loop)
_RECENT_SHOWN = 20
# A recording in a regular file has no readiness to wait for: looked at again this often at its end
_FILE_POLL_S = 0.1
# Refusals that are bad data from the field, for status' `malformed`
# what the adapter refuses a scan for itself (`Station.refuse`), beside the station's own reasons
NOT_STORABLE = "not_storable"  # its reading is one the gateway would not store (check_reading)
AMBIGUOUS_PATRON = "ambiguous_patron"  # two patron cards in one read of a lending pad
CALLER_REFUSALS = (NOT_STORABLE, AMBIGUOUS_PATRON)
# a serial device's line counted as part of a stream of refused lines (`StreamWatch`), not handed on
CONTINUOUS_DATA = "continuous_data"
_MALFORMED = ("bad_check", "unknown", "visit_refused", "unknown_usage", NOT_STORABLE, CONTINUOUS_DATA)
# What a serial device's line counts towards a stream as: besides an unreadable line, what every station
# refuses whatever its state (no rule knows it, its check fails, a product's GTIN, a QR that fails to verify)
_STREAM_KINDS = (ScanKind.UNKNOWN, ScanKind.BAD_CHECK, ScanKind.GTIN, ScanKind.VISIT_REFUSED)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _UnsecuredTags:
    """The tags at one pad whose event went out but whose security write has not succeeded yet."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._tags: dict[bytes, tuple[Security, datetime]] = {}  # UID -> security due, last try

    def __len__(self) -> int:
        return len(self._tags)

    def trying(self, uid: bytes, security: Security, at: datetime) -> None:
        self._tags[uid] = (security, at)

    def done(self, uid: bytes) -> None:
        self._tags.pop(uid, None)

    def due(self, uid: bytes, now: datetime) -> Security | None:
        """The security `uid` still waits for; None when it waits for none or its window has closed."""
        # A clock set back (NTP at boot) closes every window rather than stretching them.
        self._tags = {
            u: (sec, at) for u, (sec, at) in self._tags.items() if 0 <= (now - at).total_seconds() < self._window_s
        }
        entry = self._tags.get(uid)
        return None if entry is None else entry[0]


class ScannerAdapter:
    config_model: ClassVar[type[AdapterConfig]] = ScannerAdapterConfig

    def __init__(
        self,
        config: AdapterConfig,
        context: AdapterContext,
        *,
        clock: Clock = _utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        assert isinstance(config, ScannerAdapterConfig)
        self.config = config
        self.context = context
        self._clock = clock  # wall time: the events' timestamps and the Tokyo day
        self._monotonic = monotonic  # sessions and debounces: the wall clock steps (NTP, no RTC)
        # the encoding the gateway checks readings with before the buffer (App._emit)
        self._encoding = context.value_encoding
        self._log = component_logger(__name__, f"adapter {config.name}")
        self._rules: tuple[CodabarRule, ...] = tuple(r.build() for r in config.rules)
        self._keys: dict[str, bytes] = {}  # visit-QR keys, read from the secret store by `run`
        self.store = StationStore(Path(context.data_dir) / STORE_FILE)
        key = self.store.local_key()
        self.stations: dict[str, Station] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # What the station page shows, kept here and updated after each record: the diagnostics run on the
        # loop, where reading them from the store waited for a worker's fsync (hundreds of ms on an SD card).
        self._recent: dict[str, deque[RecentScan]] = {}
        self._outreach: dict[str, int] = {}
        now = clock()
        for s in config.stations:
            st = Station(s.build(), adapter=config.name, device="", local_key=key)
            st.state = self.store.load_state(s.id)
            st.end_stale_shelf(now)  # a shelf session from before a restart only while it is still going on
            self.stations[s.id] = st
            self._locks[s.id] = asyncio.Lock()
            self._recent[s.id] = deque(reversed(self.store.recent(s.id, _RECENT_SHOWN)), maxlen=_RECENT_SHOWN)
            self._outreach[s.id] = self.store.outreach_loans(s.id)
        self.counts: Counter[str] = Counter()
        # scans read from a device whose events the buffer refused (full): gone, the operator heard no beep
        self.scans_lost = 0
        self.pad_errors: Counter[str] = Counter()  # tag reads and writes a pad's reader answered as failed, by code
        self.connected: dict[str, bool] = {}
        self.last_error = ""
        self._emit: Emit | None = None
        self._pads: dict[str, SerialPad] = {}
        self._unsecured = {p.name: _UnsecuredTags(SECURITY_RETRY_S) for p in config.pads}
        self.security_retries: Counter[str] = Counter()  # put-back tags written again: done / failed
        # Card numbers are tokens before anything is emitted unless the config says otherwise: the same
        # processor, key ring and tokens as a [[processing]] pseudonymize entry would give.
        self._pseudonymizer: Pseudonymizer | None = None
        if config.card_numbers is CardNumbers.TOKEN:
            pz = PseudonymizeConfig.model_validate(
                {
                    "type": "pseudonymize",
                    "attributes": list(CARD_ATTRIBUTES),
                    "kinds": dict.fromkeys(CARD_ATTRIBUTES, "card"),
                }
            )
            self._pseudonymizer = pz.build(context.processor_context())  # pad name -> the open reader, for commands

    # --- the one path every scan takes ---------------------------------------------------------

    async def process(
        self,
        station_id: str,
        cls: ScanClass,
        at: datetime,
        *,
        item_extra: dict[str, Attribute] | None = None,
        usage: int | None = None,
        refuse: str | None = None,
        mono: float | None = None,
    ) -> Step:
        """`item_extra` (and the tag's type of `usage`) for an RFID tag read: `cls` is then its primary item id.
        `refuse`: the reason the caller refuses the scan for (`ambiguous_patron`); `mono`: the monotonic clock
        at the scan (default: now)."""
        assert self._emit is not None, "process() before run()"
        station = self.stations[station_id]
        m = self._monotonic() if mono is None else mono
        async with self._locks[station_id]:
            cfg = station.config
            outreach = cfg.purpose is Purpose.LENDING and cfg.lending_mode is LendingMode.OUTREACH
            at_us = int(at.timestamp() * 1_000_000)
            scan_no = await asyncio.to_thread(self.store.reserve, station_id)
            before = station.state.snapshot()
            if refuse is not None:
                step = station.refuse(cls, at, scan_no, refuse)
            elif item_extra is not None and cls.value is not None:
                step = station.item_read(cls.value, at, scan_no, item_extra, usage=usage, mono=m)
            else:
                step = station.scan(cls, at, scan_no, mono=m)
            try:
                readings = [self._pseudonymized(r) for r in step.readings]
                if self._unstorable(station_id, step.reason, readings) is not None:
                    # what the station did for the scan did not happen: no loan, no session step, no count
                    station.state = before
                    step = station.refuse(cls, at, scan_no, NOT_STORABLE)
                    readings = [self._pseudonymized(r) for r in step.readings]
                for reading in readings:
                    await self._emit(reading)
            except BaseException:
                # the events are owed, not done: the next scan checks in, counts or lends again (a duplicate
                # of an event that did reach the buffer is possible; losing one is not)
                station.state = before
                raise
            await asyncio.to_thread(
                self.store.record,
                station_id,
                scan_no,
                at_us,
                step.reason,
                step.feedback.value,
                [r.entity_id for r in step.readings],
                station.state,
                outreach_loan=outreach and step.reason == "loan",
            )
            entity_ids = " ".join(r.entity_id for r in step.readings)
            self._recent[station_id].appendleft(
                RecentScan(
                    station=station_id,
                    scan_no=scan_no,
                    at_us=at_us,
                    reason=step.reason,
                    feedback=step.feedback.value,
                    entity_ids=entity_ids,
                )
            )
            if outreach and step.reason == "loan":
                self._outreach[station_id] += 1
        self.counts[step.reason] += 1
        return step

    def _pseudonymized(self, reading: Reading) -> Reading:
        if self._pseudonymizer is not None and any(a in reading.attributes for a in CARD_ATTRIBUTES):
            (reading,) = self._pseudonymizer.process(reading, self._clock())
        return reading

    def _unstorable(self, station_id: str, reason: str, readings: list[Reading]) -> ReadingError | None:
        """The gateway's own check, before anything is acted on: a reading it refuses is dropped there (counted,
        logged) while the emit returns as if stored, and the tag would be released for a loan never stored."""
        for reading in readings:
            try:
                check_reading(reading, encoding=self._encoding)
            except ReadingError as exc:
                # the message ends with the offending value, which may be a card number: left out
                where = str(exc).split(", got ", 1)[0]
                self._log.warning(
                    "station %s: %s refused, the gateway would not store its %s: %s",
                    station_id,
                    reason or "scan",
                    reading.entity_type,
                    where,
                )
                return exc
        return None

    def classify(self, framed: Framed) -> ScanClass:
        return classify(framed, self._rules, self._keys, accept_isbn10=self.config.accept_isbn10)

    async def _framing_error(self, station_id: str, exc: BarcodeError, at: datetime) -> None:
        self._log.debug("unreadable scan (%s)", exc.code)
        await self.process(station_id, ScanClass(kind=ScanKind.UNKNOWN, code=exc.code), at)

    def _visit_keys(self) -> dict[str, bytes]:
        keys: dict[str, bytes] = {}
        errors: list[str] = []
        for kid, ref in self.config.visit_keys.items():
            where = f"visit_keys.{kid}"
            try:
                text = resolve(ref, self.context.data_dir)
            except ConfigError as exc:
                errors += [f"{where}: {e}" for e in exc.errors]
                continue
            # the value is a secret: its length is shown, never the value or where fromhex stopped
            try:
                key = bytes.fromhex(text)
            except ValueError:
                got = "text that is not hex (not shown)"
            else:
                if len(key) >= MIN_KEY_BYTES:
                    keys[kid] = key
                    continue
                got = f"{len(key)} bytes"
            name = ref.partition(":")[2]
            fix = (
                f"openssl rand -hex 32 | edgegw secret set {name} --stdin"
                if ref.startswith("secret:")
                else f"set {name} to the output of openssl rand -hex 32"
            )
            errors.append(
                f"{where}: {ref} must be a key in hex of at least {MIN_KEY_BYTES} bytes, got {got}; "
                f"set it to 32 random bytes: {fix}"
            )
        if errors:
            raise ConfigError(errors)
        return keys

    # --- run ------------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        # here, not in __init__: a bad key is then this adapter's failure, retried (the secret may be set
        # meanwhile), while every other adapter runs
        self._keys = self._visit_keys()
        self._emit = emit
        if self.store.closed:  # the supervisor runs the adapter again after a failure; the last run closed it
            self.store = await asyncio.to_thread(StationStore, self.store.path)
        try:
            async with asyncio.TaskGroup() as tg:
                for sc in self.config.scanners:
                    tg.create_task(self._follow(sc))
                for pad in self.config.pads:
                    tg.create_task(self._pad(pad))
                if not self.config.scanners and not self.config.pads:
                    await asyncio.Event().wait()
        except BaseExceptionGroup as group:
            # the status and the log name the cause, not "unhandled errors in a TaskGroup"
            raise _first_cause(group) from group
        finally:
            await asyncio.to_thread(self.store.close)  # waits for a scan still being recorded in a worker thread

    async def _follow(self, sc: ScannerSection) -> None:
        """Keep one reader per device matching `sc.path`; start readers for new ones every `rescan_s`."""
        active: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                paths = sorted(glob.glob(sc.path)) if sc.transport == "evdev" else [sc.path]
                for path in paths:
                    if path not in active or active[path].done():
                        read = self._evdev if sc.transport == "evdev" else self._serial
                        active[path] = asyncio.create_task(read(sc, path))
                await asyncio.sleep(self.config.rescan_s)
        finally:
            for task in active.values():
                task.cancel()
            await asyncio.gather(*active.values(), return_exceptions=True)

    def _state(self, device: str, up: bool, detail: str = "") -> None:
        if self.connected.get(device) != up:
            self.connected[device] = up
            if up:
                self._log.info("device %s found", device)
            else:
                self._log.warning("device %s lost: %s", device, detail)
                self.last_error = f"{device}: {detail}"

    async def _evdev(self, sc: ScannerSection, path: str) -> None:
        key = f"{sc.name}:{path}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self._state(key, False, exc.strerror or str(exc))
            return
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        regular = False
        try:
            # A regular file (a recording) is always readable, and epoll refuses it (EPERM): read to its end,
            # then look again every _FILE_POLL_S for what was appended, never again from its start.
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            grabbed = grab(fd)
            if not regular:
                loop.add_reader(fd, ready.set)
            self._state(key, True)
            if not grabbed:
                self._log.info("device %s cannot be grabbed (not an input device); reading it as is", key)
            parser = EventParser()
            asm = WedgeAssembler(sc.wedge(), idle_gap_ms=sc.idle_gap_ms)
            framing = sc.framing()
            timeout = sc.idle_gap_ms / 1000 if sc.idle_gap_ms else None
            while True:
                # Read only after the previous read's scans are handled: what waits stays in the kernel's
                # buffer, so a crash loses at most the one read in hand, never a backlog held in memory.
                if regular:
                    data = os.read(fd, EVENT_SIZE * 170)
                    if data:
                        results = [r for ev in parser.feed(data) for r in asm.feed(ev)]
                    else:
                        await asyncio.sleep(timeout or _FILE_POLL_S)
                        results = asm.idle(int(self._clock().timestamp() * 1_000_000))
                elif not await event_set_within(ready, timeout):
                    # kernel event times are CLOCK_REALTIME µs, comparable with the wall clock
                    results = asm.idle(int(self._clock().timestamp() * 1_000_000))
                else:
                    ready.clear()
                    try:
                        # whole records only, as the kernel's evdev read returns them
                        data = os.read(fd, EVENT_SIZE * 170)
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # ENODEV: unplugged
                        self._state(key, False, exc.strerror or str(exc))
                        return
                    if not data:
                        self._state(key, False, "end of stream")
                        return
                    results = [r for ev in parser.feed(data) for r in asm.feed(ev)]
                refused: Exception | None = None
                for r in results:
                    # each scan of the read handed on, whatever happened to the one before it: the kernel has
                    # given them to us, nothing reads them again
                    try:
                        at = self._clock()
                        if r.error is not None:
                            await self._framing_error(sc.station, r.error, at)
                        elif r.text is not None:
                            await self._text(sc.station, r.text, framing, at)
                    except Exception as exc:  # the buffer refused its events (full): that scan is lost
                        self.scans_lost += 1
                        refused = refused or exc
                if refused is not None:
                    raise refused
        except Exception as exc:  # the buffer refused a scan: lost until the next look (rescan_s) opens it again
            self._state(key, False, f"{type(exc).__name__}: {exc}")
        finally:
            if not regular:
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)
            os.close(fd)

    async def _text(self, station_id: str, text: str, framing: FramingConfig, at: datetime) -> None:
        try:
            framed = unframe(text, framing)
        except BarcodeError as exc:
            await self._framing_error(station_id, exc, at)
            return
        await self.process(station_id, self.classify(framed), at)

    async def _serial(self, sc: ScannerSection, path: str) -> None:
        key = f"{sc.name}:{path}"
        try:
            scanner = SerialScanner(path, sc.framing(), baudrate=sc.baud)
        except Exception as exc:  # pyserial raises SerialException or OSError for a missing port
            self._state(key, False, str(exc))
            return
        self._state(key, True)
        # the line's framing failing (a wrong suffix): logged once, with the fix; over once the framing has not
        # failed for STREAM_QUIET_S, so noise whose odd line frames well does not say it again and again
        unreadable_until: float | None = None
        watch = StreamWatch()
        try:
            async for scan in scanner.scans():
                at = self._clock()
                now = self._monotonic()
                cls = self.classify(scan.framed) if scan.framed is not None else None
                if scan.error is not None and scan.error.code in _LINE_ERRORS:
                    if unreadable_until is None:
                        self._log.warning("serial scanner %s: its scans are unreadable: %s", key, scan.error)
                        self.last_error = f"{key}: {scan.error}"
                    unreadable_until = now + STREAM_QUIET_S
                elif scan.framed is not None and unreadable_until is not None and now >= unreadable_until:
                    unreadable_until = None
                    self._log.info("serial scanner %s: scans are read again", key)
                refused = cls is None or cls.kind in _STREAM_KINDS
                if not self._watched(sc, key, watch, watch.see(now, refused=refused), scan, cls):
                    continue
                if scan.error is not None:
                    await self._framing_error(sc.station, scan.error, at)
                    await scanner.send(sc.beep(False))
                elif cls is not None:
                    try:
                        step = await self.process(sc.station, cls, at)
                    except Exception:
                        # the buffer refused the scan (full): the librarian must hear it was not taken, or the
                        # book leaves unlent; the port is closed below and opened again at the next look
                        with contextlib.suppress(Exception):
                            await scanner.send(sc.beep(False))
                        raise
                    await scanner.send(sc.beep(step.feedback is not Feedback.REFUSED))
        except Exception as exc:  # the port went away mid-read
            self._state(key, False, str(exc))
        finally:
            await asyncio.to_thread(scanner.close)

    def _watched(
        self,
        sc: ScannerSection,
        key: str,
        watch: StreamWatch,
        verdict: StreamVerdict,
        scan: SerialScan,
        cls: ScanClass | None,
    ) -> bool:
        """Say what `verdict` changed about a device's stream of refused lines; False: the line is the stream's,
        counted only (no event, no beep: one refused beep per line would go back to a device that is no scanner)."""
        if verdict.ended is not None:
            how = f"quiet for {STREAM_QUIET_S:g} s" if verdict.quiet else "a good scan came"
            self._log.info(
                "serial scanner %s: the continuous data ended (%s): %d lines counted, not sent", key, how, verdict.ended
            )
        if verdict.started:
            if scan.error is not None or scan.framed is None or cls is None:
                looks = f"unreadable lines ({scan.error.code if scan.error else 'no text'})"
            else:
                text = scan.framed.data
                looks = (
                    f"{len(text)}-character lines like {line_shape(text)!r} (A a letter, 9 a digit), "
                    f"refused as {cls.code or cls.kind.value}"
                )
            self._log.warning(
                "serial scanner %s (station %s): continuous data: is this a scanner? more than %d refused lines within "
                "%g s, %s; its lines are now counted, not sent or beeped, until it is quiet for %g s or sends a good "
                "scan; check what is plugged into %s, its mode (a scanner in continuous mode) and the baud rate",
                key,
                sc.station,
                STREAM_LINES,
                STREAM_WINDOW_S,
                looks,
                STREAM_QUIET_S,
                sc.path,
            )
            self.last_error = f"{key}: continuous data, not a scanner's ({looks})"
        if verdict.summary is not None:
            self._log.info(
                "serial scanner %s: continuous data goes on: %d lines in the last %g s, %d in all, not sent",
                key,
                verdict.summary,
                STREAM_SUMMARY_S,
                watch.held,
            )
        if verdict.handle:
            return True
        self.counts[CONTINUOUS_DATA] += 1
        return False

    # --- RFID pads ------------------------------------------------------------------------------

    async def _pad(self, cfg: PadSection) -> None:
        key = f"{cfg.name}:{cfg.port}"
        while True:
            try:
                pad = SerialPad(cfg.port, baudrate=cfg.baud, com_adr=cfg.com_adr)
            except Exception as exc:
                self._state(key, False, str(exc))
                await asyncio.sleep(self.config.rescan_s)
                continue
            self._pads[cfg.name] = pad
            try:
                await self._poll_pad(cfg, pad, key)
            except (RfidTagError, OSError) as exc:  # pyserial's SerialException is an OSError: unplugged
                self._state(key, False, str(exc))
            except Exception as exc:
                # the reader is fine, what it read could not be handed on (the buffer full): this pad only is
                # lost, and its tags are read again when it is opened anew (nothing lent is forgotten)
                self._state(key, False, f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):
                    await pad.beep(False)
            finally:
                self._pads.pop(cfg.name, None)
                await asyncio.to_thread(pad.close)
            await asyncio.sleep(self.config.rescan_s)

    # A reader that answers with a status about the transponder (`FeigTagStatus`: the book was lifted
    # mid-read, RF noise) is alive: that tag failed, the pad stays online. Only no answer, a broken
    # frame or a status refusing the request itself leaves `_poll_pad` and marks the pad lost.
    async def _poll_pad(self, cfg: PadSection, pad: SerialPad, key: str) -> None:
        on_pad: set[bytes] = set()
        while True:
            try:
                uids = await pad.inventory()
            except FeigTagStatus as exc:
                self._pad_error(cfg, "inventory", exc)
                uids = None
            if uids is not None:
                new = [u for u in uids if u not in on_pad]
                on_pad = set(uids)  # a tag taken off and put back is a new read; one left lying is not
                for uid in await self._pad_tags(cfg, pad, new):
                    on_pad.discard(uid)  # read again if it is still there at the next inventory
            # found once its tags are handed on too: a pad lost because the buffer refused a book still lying
            # on it is not "found" and "lost" again at every look while the buffer stays full
            self._state(key, True)
            await asyncio.sleep(cfg.poll_ms / 1000)

    async def _pad_tags(self, cfg: PadSection, pad: SerialPad, uids: list[bytes]) -> list[bytes]:
        """Tags new on the pad: each read, then handed to its station (patron cards first), secured and beeped;
        one put back while its security is due only secured and beeped. Returns those that could not be read."""
        unsecured = self._unsecured[cfg.name]
        unread: list[bytes] = []
        read: list[tuple[bytes, PadTag]] = []
        for uid in uids:
            due = unsecured.due(uid, self._clock()) if unsecured else None
            if due is not None:
                # the same loan or return as before it was lifted: its event is out, only the write is missing
                ok = await self._set_security(cfg, pad, uid, due)
                outcome = "done" if ok else "failed"
                self.security_retries[outcome] += 1
                self._log.debug(
                    "pad %s: tag %s put back, set %s again: %s", cfg.name, uid.hex().upper(), due.value, outcome
                )
                with contextlib.suppress(RfidTagError):
                    await pad.beep(ok)
                continue
            try:
                read.append((uid, await pad.read_tag(uid)))
            except FeigTagStatus as exc:
                # no UID in the line: before its memory is read, a tag may be a patron's card
                self._pad_error(cfg, "tag read", exc)
                unread.append(uid)
        read.sort(key=lambda r: tag_role(r[1].usage) is not TagRole.PATRON_CARD)  # stable: else as the reader listed
        cards = sum(1 for _, tag in read if tag.item_id is not None and tag_role(tag.usage) is TagRole.PATRON_CARD)
        # two cards laid down with the books name no patron: lent to the one the reader listed last, a book
        # would go to someone else's account without anyone noticing
        ambiguous = cards > 1 and self.stations[cfg.station].config.purpose is Purpose.LENDING
        for uid, tag in read:
            step = await self._tag(cfg.station, tag, refuse=AMBIGUOUS_PATRON if ambiguous else None)
            ok = step.feedback is not Feedback.REFUSED
            purpose = self.stations[cfg.station].config.purpose
            if (
                cfg.set_security
                and step.feedback is Feedback.ACCEPTED
                and purpose in (Purpose.LENDING, Purpose.RETURN)
                and tag_role(tag.usage) in _SECURED_ROLES
            ):
                security = Security.RELEASED if purpose is Purpose.LENDING else Security.SECURED
                ok = await self._set_security(cfg, pad, uid, security)
            with contextlib.suppress(RfidTagError):
                await pad.beep(ok)
        return unread

    async def _set_security(self, cfg: PadSection, pad: SerialPad, uid: bytes, security: Security) -> bool:
        """Write `uid`'s security; False when the tag failed it (the event stands, the refused beep tells the
        operator the gate will not agree with it, and a put-back tries again)."""
        unsecured = self._unsecured[cfg.name]
        # Due before the write, not after a failure: a pad lost mid-write (no answer) is found again with
        # the book still on it, which must be written, not read as a second loan or return.
        unsecured.trying(uid, security, self._clock())
        try:
            await pad.set_security(uid, security)
        except FeigTagStatus as exc:
            self._pad_error(cfg, f"tag {uid.hex().upper()} set {security.value}", exc)
            return False
        unsecured.done(uid)
        return True

    def _pad_error(self, cfg: PadSection, what: str, exc: FeigTagStatus) -> None:
        self.pad_errors[exc.code] += 1
        self._log.debug("pad %s: %s failed, the reader is fine: %s", cfg.name, what, exc)

    async def _tag(self, station_id: str, tag: PadTag, *, refuse: str | None = None) -> Step:
        at = self._clock()
        if refuse is not None:
            card = tag_role(tag.usage) is TagRole.PATRON_CARD
            kind, id_kind = (ScanKind.PATRON, IdKind.PATRON) if card else (ScanKind.ITEM, IdKind.ITEM)
            return await self.process(station_id, ScanClass(kind=kind, id_kind=id_kind), at, refuse=refuse)
        if tag.item_id is None:
            return await self.process(station_id, ScanClass(kind=ScanKind.UNKNOWN, code=tag.error), at)
        extra: dict[str, Attribute] = {
            "tagUid": make_attribute(tag.uid, "Text"),
            "dataModel": make_attribute(tag.data_model, "Text"),
        }
        if tag.owner:
            extra["ownerLibrary"] = make_attribute(tag.owner, "Text")
        if tag.parts_in_set is not None and tag.part_number is not None:
            extra["partsInSet"] = make_attribute(tag.parts_in_set, "Number")
            extra["partNumber"] = make_attribute(tag.part_number, "Number")
        cls = ScanClass(kind=ScanKind.ITEM, value=tag.item_id)
        return await self.process(station_id, cls, at, item_extra=extra, usage=tag.usage)

    # --- commands -------------------------------------------------------------------------------

    async def handle(self, command: Command) -> CommandResult:
        """`setSecurity` on `urn:ngsi-ld:RfidPad:<adapter>-<pad>` with value `{"uid": "<hex>", "state": "secured"|"released"}`:
        writes the tag's AFI and EAS bit (for a tag that went out without its loan being scanned, or came back)."""

        def result(ok: bool, info: str) -> CommandResult:
            if not ok:
                self._log.warning("command %s: %s", command.command_id, info)
            return CommandResult(command_id=command.command_id, ok=ok, info=info)

        prefix = f"urn:ngsi-ld:RfidPad:{self.config.name}-"
        name = command.entity_id.removeprefix(prefix) if command.entity_id.startswith(prefix) else ""
        if command.name != "setSecurity":
            return result(False, f"scanner command: unknown command, got {command.name!r}; the pads take setSecurity")
        pad = self._pads.get(name)
        if pad is None:
            return result(False, f"scanner command: no pad online with entity id, got {command.entity_id!r}")
        value = command.value if isinstance(command.value, dict) else {}
        try:
            uid = bytes.fromhex(str(value.get("uid", "")))
            security = Security(value.get("state"))
            if len(uid) != 8:
                raise ValueError
        except ValueError:
            return result(
                False,
                f"scanner command setSecurity: value must be {{uid: 16 hex digits, state: secured|released}}, got {value!r}",
            )
        try:
            await pad.set_security(uid, security)
        except (RfidTagError, OSError) as exc:
            return result(False, f"scanner command setSecurity: the pad refused, got {exc}")
        self._log.info("tag %s set %s by command %s", uid.hex().upper(), security.value, command.command_id)
        return result(True, f"tag {uid.hex().upper()} {security.value}")

    # --- status ---------------------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        up = sum(1 for v in self.connected.values() if v)
        out: dict[str, Any] = {
            "summary": f"devices online {up}/{len(self.connected)}",
            "scans": dict(self.counts),
            "scans_lost": self.scans_lost,
            "malformed": {k: v for k, v in self.counts.items() if k in _MALFORMED},
            "devices": dict(self.connected),
            "pad_errors": dict(self.pad_errors),
            "security_retries": dict(self.security_retries),
            # what the station page shows (gateway/web/pages/stations.py): reasons and ids, never a card number
            "stations": {
                sid: {
                    "purpose": st.config.purpose.value,
                    "mode": st.config.lending_mode.value if st.config.purpose is Purpose.LENDING else "",
                    "loan_prefix": f"urn:ngsi-ld:LibraryLoan:{sid}:",
                    "outreach_loans": self._outreach[sid],
                    "present": present_today(st.state, self._clock())
                    if st.config.purpose is Purpose.ATTENDANCE
                    else None,
                    "recent": [
                        {"at": r.at_us / 1e6, "scan": r.scan_no, "reason": r.reason, "feedback": r.feedback}
                        for r in self._recent[sid]
                    ],
                }
                for sid, st in self.stations.items()
            },
        }
        if self.last_error:
            out["last_error"] = self.last_error
        return out


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in `group` (nested groups opened) that is not a cancellation."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])

"""The library station's faults a reviewer found (review s20): a loan the gateway cannot store is never done at
the pad; one pad's trouble stops only that pad; two cards lend nothing; durations on a monotonic clock; the
shelf session ends; diagnostics off the store; recordings in regular files; a refused scan costs only itself.

Real parts throughout: the FEIG stand-in on a socat pty, evdev streams through a FIFO or a file, the station
store in sqlite, the gateway's own `check_reading` in the emit as App._emit has it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.rfid.iso15962 import Compaction, DataElement, compact_text, encode_elements
from adapters.rfid.pad import AFI_SECURED
from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.classify import IdKind, ScanClass, ScanKind
from adapters.scanner.config import PadSection, ScannerAdapterConfig
from adapters.scanner.station import Purpose, Station, StationConfig, StationState
from gateway.adapter_api import AdapterContext
from gateway.errors import BufferFull, ReadingError
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread
from tests.adapters.scanner.test_adapter import JP, RULES, Clock, item, make, patron, until
from tests.adapters.scanner.test_evdev_stream import recording
from tests.adapters.scanner.test_pad_patron_card import book, card, danish_card, security_writes

T = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
PATRON = ScanClass(kind=ScanKind.PATRON, value="A73100001B", id_kind=IdKind.PATRON)
SHELF_IDLE_S = 1800  # adapters.scanner.station.SHELF_IDLE_S, as the README documents it
REFUSED = 3  # red


def leds(sim: FeigSim) -> list[int]:
    return [o[6] for o in sim.outputs]


def gateway_emit(encoding: ValueEncoding) -> tuple[list[Reading], list[str], Callable[[Reading], Awaitable[None]]]:
    """What App._emit does without a processing stage: check_reading, else the reading dropped (counted)."""
    stored: list[Reading] = []
    dropped: list[str] = []

    async def emit(r: Reading) -> None:
        try:
            check_reading(r, encoding=encoding)
        except ReadingError as exc:
            dropped.append(str(exc))
            return
        stored.append(r)

    return stored, dropped, emit


def lending_pad(tmp_path: Path, *, encoding: ValueEncoding) -> tuple[ScannerAdapter, FeigSim, SimThread, PtyPair]:
    pair = PtyPair(tmp_path)
    sim = FeigSim()
    thread = SimThread(sim, pair.b)
    cfg = ScannerAdapterConfig.model_validate(
        {
            "name": "lib",
            "type": "scanner",
            "rescan_s": 0.2,
            "rules": RULES,
            "card_numbers": "clear",
            "stations": [{"id": "desk", "purpose": "lending"}],
            "pads": [{"name": "pad", "station": "desk", "port": pair.a, "poll_ms": 50, "set_security": True}],
        }
    )
    ctx = AdapterContext(gateway_id="gw", data_dir=str(tmp_path), value_encoding=encoding)
    return ScannerAdapter(cfg, ctx, clock=Clock()), sim, thread, pair


# --- 1. a loan the gateway would drop is refused at the pad -----------------------------------------------


async def test_a_loan_the_gateway_refuses_is_refused_at_the_pad_and_the_book_stays_secured(tmp_path: Path) -> None:
    """value_encoding = reject and an item id with '(': App._emit dropped the loan, the pad released the book
    and beeped accepted. Now the scan is refused `not_storable`, nothing is written to the tag."""
    adapter, sim, thread, pair = lending_pad(tmp_path, encoding=ValueEncoding.REJECT)
    stored, dropped, emit = gateway_emit(ValueEncoding.REJECT)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: any(adapter.connected.values()), "pad online")
        await adapter.process("desk", PATRON, datetime.now(UTC))
        sim.tags.append(book(item="4000(007"))
        await until(lambda: len(sim.outputs) == 1, "the beep")
        assert leds(sim) == [REFUSED]
        assert security_writes(sim, sim.tags[0].uid) == []
        assert (sim.tags[0].afi, sim.tags[0].eas) == (AFI_SECURED, True)
        assert dropped == []
        assert [(r.entity_type, r.attributes["reason"].value) for r in stored] == [("ScanRejected", "not_storable")]
        diag = adapter.diagnostics()
        assert diag["scans"] == {"patron": 1, "not_storable": 1}
        assert diag["malformed"] == {"not_storable": 1}
        assert [r["reason"] for r in diag["stations"]["desk"]["recent"]] == ["not_storable", "patron"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()


async def test_a_book_the_default_encoding_refuses_is_not_released(tmp_path: Path) -> None:
    """The reviewer's 28560-2 book with 34 digits of set information: its loan went nowhere, the book left
    released with the accepted beep. Whatever refuses it (the decoder, or the gateway's check), no loan is
    lost silently and the book stays secured."""
    mem = encode_elements(
        [
            DataElement(oid=1, compaction=Compaction.NUMERIC, payload=compact_text(Compaction.NUMERIC, "40000007")),
            DataElement(
                oid=4,
                compaction=Compaction.NUMERIC,
                payload=compact_text(Compaction.NUMERIC, "1" * 17 + "0" * 16 + "1"),
            ),
        ]
    ).ljust(36, b"\0")
    tag = SimTag(uid=bytes.fromhex("E004010000000099"), memory=bytearray(mem), afi=AFI_SECURED, eas=True)
    adapter, sim, thread, pair = lending_pad(tmp_path, encoding=ValueEncoding.PERCENT)
    stored, dropped, emit = gateway_emit(ValueEncoding.PERCENT)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: any(adapter.connected.values()), "pad online")
        await adapter.process("desk", PATRON, datetime.now(UTC))
        sim.tags.append(tag)
        await until(lambda: len(sim.outputs) == 1, "the beep")
        assert leds(sim) == [REFUSED]
        assert (tag.afi, tag.eas) == (AFI_SECURED, True)
        assert dropped == []
        assert [r.entity_type for r in stored] == ["ScanRejected"]
        assert "loan" not in adapter.counts
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()


# --- 2. one pad's trouble stops only that pad -------------------------------------------------------------


async def test_a_full_buffer_at_the_pad_stops_only_the_pad_and_its_book_is_lent_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """BufferFull at the pad ended the adapter's TaskGroup: the keyboard scanner stopped too and the status
    said "ExceptionGroup: unhandled errors in a TaskGroup"."""
    caplog.set_level(logging.INFO, logger="adapters.scanner.adapter")
    pair = PtyPair(tmp_path)
    sim = FeigSim()
    thread = SimThread(sim, pair.b)
    dev = tmp_path / "dev"
    dev.mkdir()
    fifo = dev / "x-event-kbd"
    os.mkfifo(fifo)
    w = os.open(fifo, os.O_RDWR)
    adapter, out, emit = make(
        tmp_path,
        {
            "stations": [{"id": "ret", "purpose": "return"}, {"id": "desk", "purpose": "lending"}],
            "pads": [{"name": "pad", "station": "ret", "port": pair.a, "poll_ms": 50}],
            "scanners": [{"name": "hid", "station": "desk", "transport": "evdev", "path": str(dev / "*-event-kbd")}],
        },
    )
    full = [True]

    async def buffer(r: Reading) -> None:
        if full[0] and r.entity_type == "LibraryReturn":
            raise BufferFull("buffer: full, got 512 MiB of max_bytes 512 MiB; deliver or raise the cap")
        await emit(r)

    task = asyncio.create_task(adapter.run(buffer))
    pad_key = f"pad:{pair.a}"
    try:
        await until(lambda: adapter.connected.get(f"hid:{fifo}") is True, "scanner up")
        await until(lambda: adapter.connected.get(pad_key) is True, "pad up")
        sim.tags.append(book())
        await until(lambda: adapter.connected.get(pad_key) is False, "pad lost")
        await asyncio.sleep(0.6)  # three looks at the pad while the buffer stays full
        assert not task.done()
        assert adapter.last_error.startswith(f"{pad_key}: BufferFull: buffer: full")
        assert REFUSED in leds(sim)
        lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
        assert len(lost) == 1, lost  # logged once, not at every look
        os.write(w, recording(patron(1), JP, 0) + recording(item(5), JP, 1_000_000))  # the other device works
        await until(lambda: any(r.entity_type == "LibraryLoan" for r in out), "the keyboard's loan")
        full[0] = False
        await until(lambda: any(r.entity_type == "LibraryReturn" for r in out), "the book returned after all")
        await until(lambda: adapter.connected.get(pad_key) is True, "pad found again")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(w)
        thread.stop()
        pair.close()


class _BrokenPadAdapter(ScannerAdapter):
    """A device task that fails with a bug: what the supervisor is told."""

    async def _pad(self, cfg: PadSection) -> None:
        raise KeyError("station 'desk'")


async def test_a_device_task_s_failure_is_named_not_wrapped_in_an_exception_group(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    try:
        cfg = ScannerAdapterConfig.model_validate(
            {
                "name": "lib",
                "type": "scanner",
                "rules": RULES,
                "stations": [{"id": "ret", "purpose": "return"}],
                "pads": [{"name": "pad", "station": "ret", "port": pair.a}],
            }
        )
        adapter = _BrokenPadAdapter(cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))

        async def emit(r: Reading) -> None:
            pass

        with pytest.raises(KeyError, match="station 'desk'"):
            await asyncio.wait_for(adapter.run(emit), 10)
    finally:
        pair.close()


# --- 3. two patron cards on a lending pad -----------------------------------------------------------------


async def test_two_patron_cards_in_one_read_lend_nothing(tmp_path: Path) -> None:
    """The book went to whichever card the reader listed last, silently."""
    adapter, sim, thread, pair = lending_pad(tmp_path, encoding=ValueEncoding.PERCENT)
    stored, dropped, emit = gateway_emit(ValueEncoding.PERCENT)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: any(adapter.connected.values()), "pad online")
        the_book = book()
        sim.tags += [
            card(danish_card("73100001"), uid=bytes.fromhex("E004010000000091")),
            card(danish_card("73100002"), uid=bytes.fromhex("E004010000000092")),
            the_book,
        ]
        await until(lambda: len(sim.outputs) == 3, "three beeps")
        assert leds(sim) == [REFUSED] * 3
        assert [r.entity_type for r in stored] == ["ScanRejected"] * 3
        assert {r.attributes["reason"].value for r in stored} == {"ambiguous_patron"}
        assert all("73100001" not in str(r.attributes) and "73100002" not in str(r.attributes) for r in stored)
        assert security_writes(sim, the_book.uid) == []
        assert adapter.counts == {"ambiguous_patron": 3}
        assert dropped == []
        # the next book alone has no patron: neither card opened a session
        sim.tags.append(book(item="30001235", uid=bytes.fromhex("E004010000000002")))
        await until(lambda: len(sim.outputs) == 4, "the next beep")
        assert stored[-1].attributes["reason"].value == "no_patron"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()


# --- 4. durations on a monotonic clock --------------------------------------------------------------------


def item_cls(v: str) -> ScanClass:
    return ScanClass(kind=ScanKind.ITEM, value=v, id_kind=IdKind.ITEM)


def test_a_clock_stepped_back_does_not_keep_a_patron_session_open() -> None:
    st = Station(StationConfig(station_id="desk", purpose=Purpose.LENDING), adapter="a", device="", local_key=b"k" * 32)
    st.scan(PATRON, T, 1, mono=1000.0)
    # NTP steps the wall clock back an hour; the next visitor comes 30 real minutes later
    step = st.scan(item_cls("C9C"), T - timedelta(minutes=30), 2, mono=1000.0 + 1800)
    assert (step.reason, step.readings[0].attributes["reason"].value) == ("no_patron", "no_patron")


def test_a_clock_stepped_back_does_not_debounce_a_check_out() -> None:
    kids = Station(
        StationConfig(station_id="kids", purpose=Purpose.ATTENDANCE), adapter="a", device="", local_key=b"k" * 32
    )
    child = ScanClass(kind=ScanKind.PATRON, value="A5B", id_kind=IdKind.PATRON)
    assert kids.scan(child, T, 1, mono=50.0).reason == "checkIn"
    step = kids.scan(child, T - timedelta(hours=1) + timedelta(minutes=10), 2, mono=50.0 + 600)
    assert (step.reason, step.feedback.value) == ("checkOut", "accepted")


def test_after_a_restart_a_clock_gone_back_is_no_repeat() -> None:
    """The child's last scan comes from the store (no monotonic time): the wall clock decides, and a time
    before it is no reason to ignore the scan."""
    key = b"k" * 32
    first = Station(StationConfig(station_id="kids", purpose=Purpose.ATTENDANCE), adapter="a", device="", local_key=key)
    child = ScanClass(kind=ScanKind.PATRON, value="A5B", id_kind=IdKind.PATRON)
    first.scan(child, T, 1, mono=10.0)
    again = Station(StationConfig(station_id="kids", purpose=Purpose.ATTENDANCE), adapter="a", device="", local_key=key)
    again.state = StationState(children=dict(first.state.children))  # as the store gives it back
    assert again.scan(child, T + timedelta(seconds=30), 2, mono=5.0).reason == "debounced"
    assert again.scan(child, T - timedelta(minutes=50), 3, mono=6.0).reason == "checkOut"


async def test_the_adapter_measures_the_session_on_its_monotonic_clock(tmp_path: Path) -> None:
    wall = [T]
    mono = [100.0]
    cfg = ScannerAdapterConfig.model_validate(
        {"name": "lib", "type": "scanner", "rules": RULES, "stations": [{"id": "desk", "purpose": "lending"}]}
    )
    adapter = ScannerAdapter(
        cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)), clock=lambda: wall[0], monotonic=lambda: mono[0]
    )
    _, _, emit = gateway_emit(ValueEncoding.PERCENT)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await asyncio.sleep(0)
        await adapter.process("desk", PATRON, wall[0])
        wall[0], mono[0] = T - timedelta(minutes=30), 100.0 + 1800  # stepped back 1 h, 30 min later
        step = await adapter.process("desk", item_cls("C9C"), wall[0])
        assert step.reason == "no_patron"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- 5. the shelf session ends ----------------------------------------------------------------------------

SHELF = ScanClass(kind=ScanKind.SHELF, value="S12")


def inventory() -> Station:
    return Station(
        StationConfig(station_id="inv", purpose=Purpose.INVENTORY), adapter="a", device="", local_key=b"k" * 32
    )


def test_a_shelf_session_ends_after_its_idle_time() -> None:
    st = inventory()
    st.scan(SHELF, T, 1, mono=0.0)
    assert st.scan(item_cls("C1C"), T + timedelta(seconds=SHELF_IDLE_S - 1), 2, mono=SHELF_IDLE_S - 1).reason == (
        "inventory"
    )
    late = 2 * SHELF_IDLE_S
    assert st.scan(item_cls("C2C"), T + timedelta(seconds=late), 3, mono=late).reason == "no_shelf"
    assert st.state.shelf is None


def test_a_shelf_session_ends_at_the_tokyo_day_change() -> None:
    st = inventory()
    eve = datetime(2026, 12, 4, 14, 50, tzinfo=UTC)  # 23:50 in Tokyo
    st.scan(SHELF, eve, 1, mono=0.0)
    assert st.scan(item_cls("C1C"), eve + timedelta(minutes=20), 2, mono=1200.0).reason == "no_shelf"


async def test_a_stale_shelf_is_not_restored_after_a_restart_and_a_fresh_one_is(tmp_path: Path) -> None:
    """A scan three days later landed on shelf S12 with its running count."""
    doc = {"stations": [{"id": "inv", "purpose": "inventory"}]}

    async def run_scans(at_restart: datetime, scans: list[tuple[ScanClass, datetime]]) -> list[str]:
        cfg = ScannerAdapterConfig.model_validate({"name": "lib", "type": "scanner", "rules": RULES, **doc})
        adapter = ScannerAdapter(cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)), clock=lambda: at_restart)
        _, _, emit = gateway_emit(ValueEncoding.PERCENT)
        task = asyncio.create_task(adapter.run(emit))
        try:
            await asyncio.sleep(0)
            return [(await adapter.process("inv", c, at)).reason for c, at in scans]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert await run_scans(T, [(SHELF, T), (item_cls("C1C"), T)]) == ["shelf", "inventory"]
    soon = T + timedelta(minutes=5)
    assert await run_scans(soon, [(item_cls("C2C"), soon)]) == ["inventory"]  # a restart mid-shelf: kept
    later = T + timedelta(days=3)
    assert await run_scans(later, [(item_cls("C3C"), later)]) == ["no_shelf"]


# --- 7. diagnostics never wait for the store ---------------------------------------------------------------


async def test_diagnostics_do_not_wait_for_a_worker_holding_the_store(tmp_path: Path) -> None:
    """A worker's record() waiting for the file's write lock (as through an fsync on an SD card) held the store;
    diagnostics(), on the loop, waited for it."""
    adapter, _, emit = make(tmp_path, {"stations": [{"id": "desk", "purpose": "lending", "lending_mode": "outreach"}]})
    task = asyncio.create_task(adapter.run(emit))
    other = sqlite3.connect(tmp_path / "stations.db", isolation_level=None)
    try:
        await asyncio.sleep(0)
        await adapter.process("desk", PATRON, T)
        await adapter.process("desk", item_cls("C1C"), T)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the file
        worker = threading.Thread(
            target=adapter.store.record, args=("desk", 99, 0, "loan", "accepted", [], adapter.stations["desk"].state)
        )
        worker.start()
        await asyncio.sleep(0.05)  # the worker now holds the store, waiting for the file
        t0 = time.perf_counter()
        diag = adapter.diagnostics()
        took = time.perf_counter() - t0
        other.execute("ROLLBACK")
        await asyncio.to_thread(worker.join, 10)
        assert took < 0.1, f"diagnostics waited {took * 1000:.0f} ms"
        desk = diag["stations"]["desk"]
        assert [r["reason"] for r in desk["recent"]] == ["loan", "patron"]
        assert desk["outreach_loans"] == 1
    finally:
        other.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- 10. a recording in a regular file --------------------------------------------------------------------


async def test_a_recording_in_a_regular_file_is_read_once_and_the_device_stays_online(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.scanner.adapter")
    dev = tmp_path / "dev"
    dev.mkdir()
    rec = dev / "rec-event-kbd"
    rec.write_bytes(recording(patron(1), JP, 0) + recording(item(5), JP, 1_000_000))
    adapter, out, emit = make(
        tmp_path,
        {
            "stations": [{"id": "desk", "purpose": "lending"}],
            "scanners": [{"name": "hid", "station": "desk", "transport": "evdev", "path": str(dev / "*-event-kbd")}],
        },
    )
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: len(out) == 1, "the loan from the recording")
        with rec.open("ab") as f:  # appended later: read too, and the start is not read again
            f.write(recording(item(6), JP, 2_000_000))
        await until(lambda: len(out) == 2, "the appended loan")
        await asyncio.sleep(0.5)  # more looks (rescan_s 0.2)
        assert [r.attributes["item"].value for r in out] == [item(5)[1:-1], item(6)[1:-1]]
        assert adapter.connected == {f"hid:{rec}": True}
        assert not [r for r in caplog.records if "lost" in r.getMessage()]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- 11. a refused scan costs only itself --------------------------------------------------------------------


async def test_one_refused_scan_does_not_drop_the_rest_of_its_read(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    fifo = dev / "x-event-kbd"
    os.mkfifo(fifo)
    w = os.open(fifo, os.O_RDWR)
    adapter, out, emit = make(
        tmp_path,
        {
            "stations": [{"id": "desk", "purpose": "lending"}],
            "scanners": [{"name": "hid", "station": "desk", "transport": "evdev", "path": str(dev / "*-event-kbd")}],
        },
    )
    refuse = [True]

    async def once(r: Reading) -> None:
        if refuse and refuse.pop():
            raise BufferFull("buffer: full")
        await emit(r)

    task = asyncio.create_task(adapter.run(once))
    key = f"hid:{fifo}"
    try:
        await until(lambda: adapter.connected.get(key) is True, "up")
        os.write(
            w,
            recording(patron(1), JP, 0)
            + recording(item(5), JP, 1_000_000)
            + recording(item(6), JP, 1_100_000)
            + recording(item(7), JP, 1_200_000),
        )
        await until(lambda: len(out) == 2, "the two loans after the refused one")
        assert [r.attributes["item"].value for r in out] == [item(6)[1:-1], item(7)[1:-1]]
        assert adapter.diagnostics()["scans_lost"] == 1
        assert adapter.counts == {"patron": 1, "loan": 2}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(w)


def test_the_shelf_idle_time_is_the_documented_one() -> None:
    from adapters.scanner import station

    assert station.SHELF_IDLE_S == SHELF_IDLE_S

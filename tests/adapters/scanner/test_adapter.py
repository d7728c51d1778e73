"""The scanner adapter end to end on real files: an evdev stream through a FIFO that comes and goes,
a serial scanner on a socat pty, a FEIG pad stand-in, the station store in sqlite."""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.pad import AFI_ON_LOAN, AFI_SECURED
from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.aim import FramingConfig, unframe
from adapters.scanner.codabar import CheckScheme, CodabarConfig, GuardsIn, encode_codabar
from adapters.scanner.config import ScannerAdapterConfig
from adapters.scanner.keymap import Layout, Terminator, WedgeConfig
from adapters.scanner.store import SCHEMA_VERSION, StationStore
from gateway.adapter_api import AdapterContext
from gateway.records import Command, CommandResult, Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread
from tests.adapters.scanner.test_evdev_stream import recording

PATRON_CFG = CodabarConfig(scheme=CheckScheme.MOD16, guards_in=GuardsIn.PRESENT)
ITEM_CFG = CodabarConfig(scheme=CheckScheme.MOD10_W21_SPLIT, guards_in=GuardsIn.PRESENT)
RULES = [
    {"kind": "patron", "pattern": r"[Aa]\d{8}.[Bb]", "scheme": "mod16", "guards_in": "present"},
    {"kind": "item", "pattern": r"[Cc]\d{9}[Cc]", "scheme": "mod10_w21_split", "guards_in": "present"},
]
JP = WedgeConfig(layout=Layout.JP106, terminator=Terminator.ENTER)


def patron(n: int) -> str:
    return encode_codabar(f"7310{n:04d}", PATRON_CFG, start="A", stop="B")


def item(n: int) -> str:
    return encode_codabar(f"{n:08d}", ITEM_CFG, start="C", stop="C")


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def make(
    tmp_path: Path, doc: Mapping[str, object]
) -> tuple[ScannerAdapter, list[Reading], Callable[[Reading], Awaitable[None]]]:
    cfg = ScannerAdapterConfig.model_validate(
        {"name": "lib", "type": "scanner", "rescan_s": 0.2, "rules": RULES, **doc}
    )
    adapter = ScannerAdapter(cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)), clock=Clock())
    out: list[Reading] = []

    async def emit(r: Reading) -> None:
        out.append(r)

    return adapter, out, emit


async def test_evdev_fifo_hotplug_and_lending(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    doc = {
        "stations": [{"id": "out1", "purpose": "lending", "lending_mode": "outreach"}],
        "scanners": [{"name": "hid", "station": "out1", "transport": "evdev", "path": str(dev / "*-event-kbd")}],
    }
    adapter, out, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    try:
        fifo = dev / "usb-scanner-event-kbd"
        os.mkfifo(fifo)
        w = os.open(fifo, os.O_RDWR)  # held open as the "device": no EOF while plugged in
        await until(lambda: adapter.connected.get(f"hid:{fifo}") is True, "device found")
        os.write(w, recording(patron(1), JP, 0) + recording(item(5), JP, 1_000_000) + recording("A1B", JP, 2_000_000))
        await until(lambda: len(out) == 2, "loan and rejection")
        assert [r.entity_type for r in out] == ["LibraryLoan", "ScanRejected"]
        assert out[0].entity_id == "urn:ngsi-ld:LibraryLoan:out1:2"
        os.close(w)  # unplugged
        await until(lambda: adapter.connected.get(f"hid:{fifo}") is False, "device lost")
        w = os.open(fifo, os.O_RDWR)  # plugged in again, found without a restart
        await until(lambda: adapter.connected.get(f"hid:{fifo}") is True, "device found again")
        os.write(w, recording(patron(1), JP, 5_000_000) + recording(item(6), JP, 6_000_000))
        await until(lambda: len(out) == 3, "second loan")
        os.close(w)
        assert adapter.store.outreach_loans("out1") == 2
        assert adapter.diagnostics()["scans"] == {"patron": 2, "loan": 2, "unknown": 1}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    store = StationStore(tmp_path / "stations.db")
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert [r.reason for r in store.recent("out1")][:2] == ["loan", "patron"]
        assert store.reserve("out1") == 65  # a new block after a restart: numbers are never reused
        assert patron(1)[1:9] not in (tmp_path / "stations.db").read_bytes().decode("latin-1")
    finally:
        store.close()


async def test_serial_scanner_and_pad_at_a_lending_desk(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "p").mkdir()
    scan_pair, pad_pair = PtyPair(tmp_path / "s"), PtyPair(tmp_path / "p")
    memory = bytearray(encode_danish(DanishTag(primary_item_id="30001234", country="JP", isil="1000001")))
    sim = FeigSim(tags=[])
    sim_thread = SimThread(sim, pad_pair.b)
    scan_fd = os.open(scan_pair.b, os.O_RDWR | os.O_NOCTTY)
    doc = {
        "stations": [{"id": "desk", "purpose": "lending"}],
        "scanners": [
            {
                "name": "ser",
                "station": "desk",
                "transport": "serial",
                "path": scan_pair.a,
                "beep_accepted": "06",
                "beep_refused": "15",
            }
        ],
        "pads": [{"name": "pad", "station": "desk", "port": pad_pair.a, "poll_ms": 50}],
    }
    adapter, out, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: adapter.connected.get(f"pad:{pad_pair.a}") is True, "pad online")
        os.write(scan_fd, f"]F0{patron(3)}\r".encode())
        await until(lambda: adapter.counts["patron"] == 1, "patron scanned")
        os.write(scan_fd, b"]F0A1B\r")  # no rule matches: refused, and the scanner is told so
        await until(lambda: adapter.counts["unknown"] == 1, "refused scan")
        back = b""
        for _ in range(100):
            back += os.read(scan_fd, 10) if select.select([scan_fd], [], [], 0.05)[0] else b""
            if len(back) >= 2:
                break
        assert back == b"\x06\x15"  # the patron card accepted, the unknown code refused
        sim.tags.append(SimTag(uid=bytes.fromhex("E004010000000001"), memory=memory))
        await until(lambda: len(out) == 2, "loan from the pad")
        loan = out[1]
        assert loan.attributes["item"].value == "30001234"
        assert loan.attributes["ownerLibrary"].value == "JP-1000001"
        assert loan.attributes["patronCard"].value.startswith("pz1:")  # card_numbers = "token", the default
        await until(lambda: sim.tags[0].afi == AFI_ON_LOAN and not sim.tags[0].eas, "security released")
        await until(lambda: len(sim.outputs) >= 1, "beep")
        await asyncio.sleep(0.2)
        assert len(out) == 2  # a tag left lying on the pad is not lent twice
        cmd = Command(
            command_id="c1",
            entity_id="urn:ngsi-ld:RfidPad:lib-pad",
            name="setSecurity",
            value={"uid": "E004010000000001", "state": "secured"},
        )
        assert await adapter.handle(cmd) == CommandResult(command_id="c1", ok=True, info="tag E004010000000001 secured")
        assert (sim.tags[0].afi, sim.tags[0].eas) == (AFI_SECURED, True)
        bad = await adapter.handle(
            Command(command_id="c2", entity_id=cmd.entity_id, name="setSecurity", value={"uid": "00"})
        )
        assert bad.info == (
            "scanner command setSecurity: value must be {uid: 16 hex digits, state: secured|released}, got {'uid': '00'}"
        )
        gone = await adapter.handle(Command(command_id="c3", entity_id="urn:ngsi-ld:RfidPad:lib-x", name="setSecurity"))
        assert gone.info == "scanner command: no pad online with entity id, got 'urn:ngsi-ld:RfidPad:lib-x'"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(scan_fd)
        sim_thread.stop()
        scan_pair.close()
        pad_pair.close()


async def test_the_adapter_run_again_after_a_failure_records_its_scans(tmp_path: Path) -> None:
    """The supervisor runs a failed adapter again on the same object: the station store the failed run
    closed is opened again (every scan after the first failure was refused by a closed database)."""
    pad_pair = PtyPair(tmp_path)
    sim = FeigSim(tags=[])
    sim_thread = SimThread(sim, pad_pair.b)
    doc = {
        "stations": [{"id": "desk", "purpose": "return"}],
        "pads": [{"name": "pad", "station": "desk", "port": pad_pair.a, "poll_ms": 50}],
    }
    adapter, out, emit = make(tmp_path, doc)

    def book(n: int) -> SimTag:
        item = DanishTag(primary_item_id=f"3000{n:04d}", country="JP", isil="1000001")
        return SimTag(uid=bytes.fromhex(f"E0040100000000{n:02X}"), memory=bytearray(encode_danish(item)))

    async def refusing(r: Reading) -> None:
        raise RuntimeError("the buffer refused the reading")

    try:
        first = asyncio.create_task(adapter.run(refusing))
        await until(lambda: adapter.connected.get(f"pad:{pad_pair.a}") is True, "pad online")
        sim.tags.append(book(1))
        # the refused book costs the pad, not the adapter: the run is ended as the supervisor's stop does
        await until(lambda: adapter.connected.get(f"pad:{pad_pair.a}") is False, "pad lost")
        assert not first.done()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert adapter.store.closed
        assert adapter.diagnostics()["stations"]["desk"]["recent"] == []  # between runs: no rows, no error
        sim.tags.clear()
        second = asyncio.create_task(adapter.run(emit))  # as the supervisor does after its backoff
        try:
            await until(lambda: adapter.connected.get(f"pad:{pad_pair.a}") is True, "pad online again")
            sim.tags.append(book(2))
            await until(lambda: len(out) == 1, "the return after the restart")
            assert out[0].attributes["item"].value == "30000002"
            await until(lambda: len(adapter.diagnostics()["stations"]["desk"]["recent"]) == 1, "the scan recorded")
        finally:
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
    finally:
        sim_thread.stop()
        pad_pair.close()
    assert adapter.store.closed


async def test_a_scan_the_buffer_refuses_marks_the_keyboard_scanner_lost_and_it_is_read_again(tmp_path: Path) -> None:
    """The evdev reader's task died with the emit's error and nothing said so until the task was garbage
    collected; the scanner still showed as online. Now it is lost with the reason, and found again."""
    dev = tmp_path / "dev"
    dev.mkdir()
    doc = {
        "stations": [{"id": "desk", "purpose": "lending"}],
        "scanners": [{"name": "hid", "station": "desk", "transport": "evdev", "path": str(dev / "*-event-kbd")}],
    }
    adapter, out, emit = make(tmp_path, doc)
    refused = [True]

    async def sometimes(r: Reading) -> None:
        if refused.pop() if refused else False:
            raise RuntimeError("the buffer refused the reading")
        await emit(r)

    fifo = dev / "usb-scanner-event-kbd"
    os.mkfifo(fifo)
    w = os.open(fifo, os.O_RDWR)
    task = asyncio.create_task(adapter.run(sometimes))
    try:
        key = f"hid:{fifo}"
        await until(lambda: adapter.connected.get(key) is True, "device found")
        os.write(w, recording(patron(1), JP, 0) + recording(item(5), JP, 1_000_000))
        await until(lambda: adapter.connected.get(key) is False, "device lost")
        assert adapter.last_error == f"{key}: RuntimeError: the buffer refused the reading"
        await until(lambda: adapter.connected.get(key) is True, "device found again")
        # the same book again: its loan never reached the buffer, so it is a loan now (not "already lent")
        os.write(w, recording(patron(1), JP, 2_000_000) + recording(item(5), JP, 3_000_000))
        await until(lambda: len(out) == 1, "the loan scanned again")
        assert out[0].attributes["item"].value == "000000059"  # item 5 with its check digit
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(w)


async def test_what_a_refused_scan_would_have_changed_is_done_by_the_next_one(tmp_path: Path) -> None:
    """A check-in the buffer refused stayed in the station's memory: the child's next scan was ignored as a
    repeat (debounced), and the one after it a check-out without a check-in for the platform."""
    adapter, out, emit = make(tmp_path, {"stations": [{"id": "kids", "purpose": "attendance"}]})
    refusing = [True]

    async def sometimes(r: Reading) -> None:
        if refusing[0]:
            raise RuntimeError("the buffer refused the reading")
        await emit(r)

    card = adapter.classify(unframe(patron(5) + "\r", FramingConfig()))
    at = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    task = asyncio.create_task(adapter.run(sometimes))
    try:
        await asyncio.sleep(0)  # run() has its emit
        with pytest.raises(RuntimeError):
            await adapter.process("kids", card, at)
        refusing[0] = False
        step = await adapter.process("kids", card, at + timedelta(seconds=1))
        assert (step.reason, [r.entity_type for r in out]) == ("checkIn", ["AttendanceEvent", "ChildAttendance"])
        assert out[0].attributes["action"].value == "checkIn"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

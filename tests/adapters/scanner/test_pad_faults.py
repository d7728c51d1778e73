"""A FEIG pad that answers about a tag that is gone stays online; one that does not answer is lost.

The pad stand-in speaks the manual's protocol on a socat pty; a book is lifted off the pad at a
chosen request, so the reader answers STATUS 0x01 (no transponder) mid-read or mid-write, or the field
is noisy (STATUS 0x84, RF warning) during an inventory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.pad import AFI_ON_LOAN, AFI_SECURED
from adapters.scanner.adapter import ScannerAdapter
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread
from tests.adapters.scanner.test_adapter import make, until

UID = bytes.fromhex("E004010000000007")
REFUSED_BEEP = bytes((0x01, 2, 1, 1, 0, 5, 3, 1, 0, 10))  # beeper 500 ms, red LED


@dataclass
class LiftingSim(FeigSim):
    """The stand-in with a patron who lifts the book when the host sends ISO command `lift_at` for it;
    `mute` is a reader that hears nothing (power off, cable cut)."""

    lift_at: int | None = None
    lifted: list[SimTag] = field(default_factory=list)
    mute: bool = False
    rf_warnings: int = 0  # inventories answered with STATUS 0x84 (RF warning: noise in the field) first

    def _inventory(self, *, more: bool) -> tuple[int, bytes]:
        if self.rf_warnings:
            self.rf_warnings -= 1
            return 0x84, b""
        return super()._inventory(more=more)

    def answer(self, frame: bytes) -> bytes | None:
        if self.mute:
            return None
        if frame[2] in (0xB0, 0xB1) and frame[3] == self.lift_at and self.tags:
            self.lifted.append(self.tags.pop())
            self.lift_at = None  # once: put back, the book stays
        return super().answer(frame)


def book(item: str = "40000007", uid: bytes = UID) -> SimTag:
    memory = bytearray(encode_danish(DanishTag(primary_item_id=item, country="JP", isil="1000001")))
    return SimTag(uid=uid, memory=memory, afi=AFI_ON_LOAN, eas=False)


@dataclass
class Desk:
    sim: LiftingSim
    adapter: ScannerAdapter
    out: list[Reading]
    key: str
    pair: PtyPair


@pytest.fixture
async def desk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Desk]:
    """A return desk with one pad; the adapter's log captured from the start, so a "lost" line is seen."""
    caplog.set_level(logging.DEBUG, logger="adapters.scanner.adapter")
    pair = PtyPair(tmp_path)
    sim = LiftingSim()
    thread = SimThread(sim, pair.b)
    doc = {
        "stations": [{"id": "ret", "purpose": "return"}],
        "pads": [{"name": "pad", "station": "ret", "port": pair.a, "poll_ms": 50}],
    }
    adapter, out, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    try:
        key = f"pad:{pair.a}"
        await until(lambda: adapter.connected.get(key) is True, "pad online")
        yield Desk(sim=sim, adapter=adapter, out=out, key=key, pair=pair)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()


def lost_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]


async def lift_and_poll_on(desk: Desk) -> None:
    """Wait until the book was lifted and the pad polled once more after it."""
    await until(lambda: desk.sim.lifted != [], "the book lifted")
    seen = len(desk.sim.requests)
    await until(lambda: any(r[3] == 0x01 for r in desk.sim.requests[seen:]), "the next inventory")


async def test_a_book_lifted_mid_read_leaves_the_pad_online_and_is_read_when_put_back(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: the reader's "no transponder" for a book lifted between the inventory and the read marked
    the pad lost, closed it and reopened it; the reader had answered and works."""
    desk.sim.lift_at = 0x2B  # Get System Information, the first request of a tag's read
    desk.sim.tags.append(book())
    await lift_and_poll_on(desk)
    assert lost_lines(caplog) == []
    assert desk.adapter.connected[desk.key] is True
    assert desk.out == []  # nothing was read, so nothing is returned
    assert desk.adapter.diagnostics()["pad_errors"] == {"rfid_tag_status": 1}
    desk.sim.tags.append(desk.sim.lifted.pop())  # put back: read as a new tag
    await until(lambda: len(desk.out) == 1, "the return")
    assert desk.out[0].attributes["item"].value == "40000007"
    # the security is set after the return is handed on: waited for, not read at once
    await until(lambda: desk.sim.tags[0].afi == AFI_SECURED, "the book secured")
    assert lost_lines(caplog) == []


async def test_a_book_lifted_before_its_security_is_set_is_returned_once_with_a_refused_beep(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    desk.sim.lift_at = 0x27  # Write AFI: the return is recorded, the book is gone before it is secured
    desk.sim.tags.append(book())
    await lift_and_poll_on(desk)
    assert lost_lines(caplog) == []
    assert desk.adapter.connected[desk.key] is True
    assert desk.sim.outputs == [REFUSED_BEEP]  # the operator learns the book is not secured
    assert [r.entity_type for r in desk.out] == ["LibraryReturn"]
    assert (desk.sim.lifted[0].afi, desk.sim.lifted[0].eas) == (AFI_ON_LOAN, False)
    assert desk.adapter.diagnostics()["pad_errors"] == {"rfid_tag_status": 1}


async def test_noise_in_the_field_during_an_inventory_leaves_the_pad_online(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    desk.sim.rf_warnings = 2
    desk.sim.tags.append(book())
    await until(lambda: len(desk.out) == 1, "the return, once the field is quiet")
    assert lost_lines(caplog) == []
    assert desk.adapter.connected[desk.key] is True
    assert desk.adapter.pad_errors == {"rfid_tag_status": 2}
    assert [r.getMessage() for r in caplog.records if "inventory failed" in r.getMessage()] == [
        "pad pad: inventory failed, the reader is fine: rfid feig reader: reader status not OK, got 0x84; "
        "see the status table in the manual"
    ] * 2


async def test_a_reader_that_stops_answering_is_lost_once_and_found_again(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    """The other side of the line: no answer at all is a lost device, logged once."""
    desk.sim.mute = True
    await until(lambda: desk.adapter.connected[desk.key] is False, "pad lost")
    assert lost_lines(caplog) == [
        f"device {desk.key} lost: rfid feig reader: no reply within the timeout, got 0.5 s; check the cable"
    ]
    desk.sim.mute = False
    await until(lambda: desk.adapter.connected[desk.key] is True, "pad found again")
    assert len(lost_lines(caplog)) == 1

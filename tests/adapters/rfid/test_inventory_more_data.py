"""A FEIG pad whose firmware never stops answering "more data" (STATUS 0x94) ends the inventory as a fault.

Regression (review 3, finding 4): `SerialPad.inventory()` followed STATUS 0x94 for good, its UID list
growing with every reply (~25 KB/s at 38,400 baud); the poll never finished, nothing was logged or
counted and the pad still showed online. The stand-in speaks the manual's frames on a socat pty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.rfid.feig import FeigEndlessInventory
from adapters.rfid.pad import MAX_INVENTORY_UIDS, SerialPad
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread
from tests.adapters.scanner.test_adapter import make, until

# Long enough for a bounded inventory over a pty (11 full frames take under a second), far shorter than
# the old code's "never"
BOUND_S = 15


@dataclass
class EndlessSim(FeigSim):
    """A reader that answers every inventory with STATUS 0x94: `per_reply` new tags each time, or the same
    `per_reply` tags again and again when `repeat`; once `fixed`, the manual's reader with no tag on it."""

    per_reply: int = 24
    repeat: bool = False
    fixed: bool = False
    inventories: int = 0

    def _inventory(self, *, more: bool) -> tuple[int, bytes]:
        if self.fixed:
            return super()._inventory(more=more)
        out = bytearray((self.per_reply,))
        for i in range(self.per_reply):
            n = i if self.repeat else self.inventories * self.per_reply + i
            out += bytes((0x03, 0x00)) + bytes((0xE0, 0x04, 0x01, 0, 0, 0, n >> 8, n & 0xFF))
        self.inventories += 1
        return 0x94, bytes(out)


@pytest.fixture
def endless(tmp_path: Path) -> Iterator[tuple[EndlessSim, str]]:
    pair = PtyPair(tmp_path)
    s = EndlessSim()
    thread = SimThread(s, pair.b)
    try:
        yield s, pair.a
    finally:
        thread.stop()
        pair.close()


async def _inventory(path: str) -> tuple[SerialPad, FeigEndlessInventory]:
    pad = SerialPad(path)
    try:
        with pytest.raises(FeigEndlessInventory) as info:
            await asyncio.wait_for(pad.inventory(), BOUND_S)
    finally:
        await asyncio.to_thread(pad.close)
    return pad, info.value


async def test_new_tags_in_every_reply_stop_at_a_pads_worth(endless: tuple[EndlessSim, str]) -> None:
    s, path = endless
    pad, exc = await _inventory(path)
    # 24 new tags a reply: the tag bound is reached in the 11th reply
    rounds = -(-MAX_INVENTORY_UIDS // 24)
    assert s.inventories == rounds
    assert str(exc) == (
        f'rfid pad {path}: the reader keeps answering "more data" (STATUS 0x94) to the inventory, past 256 tags, '
        f"got {rounds} replies with {rounds * 24} distinct tags; check the reader's firmware and settings "
        "(power it off and on); the pad is opened again when it is found again"
    )
    assert exc.code == "rfid_reader_endless_inventory"
    assert pad.frame_errors == {"rfid_reader_endless_inventory": 1}


async def test_one_new_tag_a_reply_stops_at_the_tag_bound(endless: tuple[EndlessSim, str]) -> None:
    s, path = endless
    s.per_reply = 1
    _, exc = await _inventory(path)
    assert s.inventories == MAX_INVENTORY_UIDS
    assert "past 256 tags, got 256 replies with 256 distinct tags" in str(exc)


async def test_the_same_tags_again_stop_at_the_second_reply(endless: tuple[EndlessSim, str]) -> None:
    s, path = endless
    s.repeat = True
    _, exc = await _inventory(path)
    assert s.inventories == 2
    assert "with no tag it had not listed already, got 2 replies with 24 distinct tags" in str(exc)


async def test_a_full_pad_read_in_many_replies_is_still_read_whole(tmp_path: Path) -> None:
    """The bound is far from a real stack of books: 60 tags at 2 a reply (30 replies, 0x94 in 29) all listed (a
    review found a bound of 16 replies refusing a reader sending 3)."""
    pair = PtyPair(tmp_path)
    uids = [bytes((0xE0, 0x04, 0x01, 0, 0, 0, 0, n)) for n in range(60)]
    thread = SimThread(FeigSim(tags=[SimTag(uid=u, memory=bytearray(8)) for u in uids], max_sets=2), pair.b)
    pad = SerialPad(pair.a)
    try:
        assert await asyncio.wait_for(pad.inventory(), BOUND_S) == uids
    finally:
        await asyncio.to_thread(pad.close)
        thread.stop()
        pair.close()


async def test_the_pad_is_lost_once_and_found_when_the_reader_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.scanner.adapter")
    pair = PtyPair(tmp_path)
    sim = EndlessSim(repeat=True)
    thread = SimThread(sim, pair.b)
    doc = {
        "stations": [{"id": "ret", "purpose": "return"}],
        "pads": [{"name": "pad", "station": "ret", "port": pair.a, "poll_ms": 50}],
    }
    adapter, _, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    key = f"pad:{pair.a}"
    try:
        await until(lambda: adapter.connected.get(key) is False, "the pad lost")
        # opened again at every look (rescan_s 0.2 s) and refused again: still said only once
        await until(lambda: sim.inventories >= 8, "three more looks")
        lost = [r for r in caplog.records if "lost" in r.getMessage()]
        assert [(r.levelname, r.getMessage()) for r in lost] == [
            (
                "WARNING",
                f'device {key} lost: rfid pad {pair.a}: the reader keeps answering "more data" (STATUS 0x94) '
                "to the inventory, with no tag it had not listed already, got 2 replies with 24 distinct tags; "
                "check the reader's firmware and settings (power it off and on); "
                "the pad is opened again when it is found again",
            )
        ]
        assert adapter.diagnostics()["devices"] == {key: False}
        assert adapter.last_error.startswith(f"{key}: rfid pad {pair.a}: the reader keeps answering")
        sim.fixed = True  # the firmware set right: the next look's inventory ends
        await until(lambda: adapter.connected.get(key) is True, "the pad found again")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()

"""A book put back on the pad after its security write failed is the same loan or return, written again.

The FEIG stand-in runs on a socat pty; the patron of `test_pad_faults.LiftingSim` lifts the book at a
chosen ISO command. The adapter's clock is one the test moves, so the retry window's end is reached
without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.rfid.pad import AFI_ON_LOAN, AFI_SECURED
from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.classify import ScanClass, ScanKind
from adapters.scanner.config import ScannerAdapterConfig
from gateway.adapter_api import AdapterContext
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import SimTag, SimThread
from tests.adapters.scanner.test_adapter import RULES, until
from tests.adapters.scanner.test_pad_faults import REFUSED_BEEP, UID, LiftingSim, book

ACCEPTED_BEEP = bytes((0x01, 2, 1, 1, 0, 1, 2, 1, 0, 10))  # beeper 100 ms, green LED
WRITE_AFI, RESET_EAS, SYSTEM_INFO = 0x27, 0xA3, 0x2B
WINDOW_S = 60  # how long after a failed write a book put back is written again rather than read anew


class MovableClock:
    """The adapter's wall clock: a second per call, as scans take time, and `jump` for a wait."""

    def __init__(self) -> None:
        self.t = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t

    def jump(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@dataclass
class Desk:
    sim: LiftingSim
    adapter: ScannerAdapter
    out: list[Reading]
    clock: MovableClock
    key: str

    def put_back(self) -> None:
        self.sim.tags.append(self.sim.lifted.pop())

    def asked(self, since: int, command: int) -> bool:
        return any(len(r) > 3 and r[2] in (0xB0, 0xB1) and r[3] == command for r in self.sim.requests[since:])

    async def polled_after(self, since: int) -> None:
        """Wait for an inventory after request `since`: whatever the pad would do with the tags before it is done."""
        await until(lambda: any(r[2:4] == b"\xb0\x01" for r in self.sim.requests[since:]), "the next inventory")

    async def lift_at(self, command: int, tag: SimTag) -> None:
        """Lay `tag` on the pad and wait until the patron lifted it at `command` and the pad polled on."""
        self.sim.lift_at = command
        self.sim.tags.append(tag)
        await until(lambda: self.sim.lifted != [], "the book lifted")
        await self.polled_after(len(self.sim.requests))


@asynccontextmanager
async def desk_for(tmp_path: Path, purpose: str, sim: LiftingSim | None = None) -> AsyncIterator[Desk]:
    pair = PtyPair(tmp_path)
    sim = sim or LiftingSim()
    thread = SimThread(sim, pair.b)
    cfg = ScannerAdapterConfig.model_validate(
        {
            "name": "lib",
            "type": "scanner",
            "rescan_s": 0.2,
            "rules": RULES,
            "stations": [{"id": "desk", "purpose": purpose}],
            "pads": [{"name": "pad", "station": "desk", "port": pair.a, "poll_ms": 50}],
        }
    )
    clock = MovableClock()
    # the test's waits move both clocks: the return's debounce is measured on the monotonic one
    adapter = ScannerAdapter(
        cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)), clock=clock, monotonic=lambda: clock.t.timestamp()
    )
    out: list[Reading] = []

    async def emit(r: Reading) -> None:
        out.append(r)

    task = asyncio.create_task(adapter.run(emit))
    try:
        key = f"pad:{pair.a}"
        await until(lambda: adapter.connected.get(key) is True, "pad online")
        if purpose == "lending":
            await adapter.process("desk", ScanClass(kind=ScanKind.PATRON, value="A73100001B"), clock())
        yield Desk(sim=sim, adapter=adapter, out=out, clock=clock, key=key)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()


async def test_a_return_whose_write_failed_is_secured_when_put_back_without_a_second_return(tmp_path: Path) -> None:
    """Regression: the book put back after the refused beep was read as a new tag, a second LibraryReturn."""
    async with desk_for(tmp_path, "return") as desk:
        await desk.lift_at(WRITE_AFI, book())
        assert desk.sim.outputs == [REFUSED_BEEP]
        since = len(desk.sim.requests)
        desk.put_back()
        await until(lambda: len(desk.sim.outputs) == 2, "the beep after the retry")
        await desk.polled_after(len(desk.sim.requests))
        assert [r.entity_type for r in desk.out] == ["LibraryReturn"]
        assert desk.sim.outputs == [REFUSED_BEEP, ACCEPTED_BEEP]
        assert (desk.sim.tags[0].afi, desk.sim.tags[0].eas) == (AFI_SECURED, True)
        assert not desk.asked(since, SYSTEM_INFO)  # written again, not read again
        diag = desk.adapter.diagnostics()
        assert diag["scans"] == {"return": 1}
        assert diag["security_retries"] == {"done": 1}
        assert diag["pad_errors"] == {"rfid_tag_status": 1}


async def test_a_loan_whose_eas_reset_failed_is_released_when_put_back_without_a_second_loan(tmp_path: Path) -> None:
    """The same at a lending desk, the book lifted after its AFI and before its EAS bit: still one loan."""
    async with desk_for(tmp_path, "lending") as desk:
        tag = book()
        tag.afi, tag.eas = AFI_SECURED, True  # in the library
        await desk.lift_at(RESET_EAS, tag)
        assert (desk.sim.lifted[0].afi, desk.sim.lifted[0].eas) == (AFI_ON_LOAN, True)
        desk.put_back()
        await until(lambda: len(desk.sim.outputs) == 2, "the beep after the retry")
        await desk.polled_after(len(desk.sim.requests))
        assert [r.entity_type for r in desk.out] == ["LibraryLoan"]
        assert desk.sim.outputs == [REFUSED_BEEP, ACCEPTED_BEEP]
        assert (desk.sim.tags[0].afi, desk.sim.tags[0].eas) == (AFI_ON_LOAN, False)


async def test_a_retry_that_fails_again_beeps_refused_and_may_be_tried_once_more(tmp_path: Path) -> None:
    async with desk_for(tmp_path, "return") as desk:
        await desk.lift_at(WRITE_AFI, book())
        desk.sim.lift_at = WRITE_AFI  # lifted again during the retry
        desk.put_back()
        await until(lambda: desk.sim.lifted != [], "the book lifted again")
        await desk.polled_after(len(desk.sim.requests))
        assert desk.sim.outputs == [REFUSED_BEEP, REFUSED_BEEP]
        desk.clock.jump(WINDOW_S - 5)  # the window runs from the last refused beep
        desk.put_back()
        await until(lambda: len(desk.sim.outputs) == 3, "the beep after the second retry")
        await desk.polled_after(len(desk.sim.requests))
        assert [r.entity_type for r in desk.out] == ["LibraryReturn"]
        assert desk.sim.outputs[-1] == ACCEPTED_BEEP
        assert desk.sim.tags[0].afi == AFI_SECURED
        assert desk.adapter.diagnostics()["security_retries"] == {"failed": 1, "done": 1}


async def test_a_book_put_back_after_the_window_is_a_new_read(tmp_path: Path) -> None:
    async with desk_for(tmp_path, "return") as desk:
        await desk.lift_at(WRITE_AFI, book())
        desk.clock.jump(WINDOW_S)
        desk.put_back()
        await until(lambda: len(desk.out) == 2, "the second return")
        await until(lambda: len(desk.sim.outputs) == 2, "its beep")
        assert [r.entity_type for r in desk.out] == ["LibraryReturn", "LibraryReturn"]
        assert desk.sim.outputs == [REFUSED_BEEP, ACCEPTED_BEEP]


async def test_only_the_same_tag_is_retried(tmp_path: Path) -> None:
    """Another book laid on the pad during the window is a new return; the lifted one is still retried."""
    async with desk_for(tmp_path, "return") as desk:
        await desk.lift_at(WRITE_AFI, book())
        other = book("40000015", bytes.fromhex("E004010000000008"))
        desk.sim.tags.append(other)
        await until(lambda: len(desk.out) == 2 and len(desk.sim.outputs) == 2, "the other book returned")
        desk.put_back()
        await until(lambda: len(desk.sim.outputs) == 3, "the beep after the retry")
        await desk.polled_after(len(desk.sim.requests))
        assert [r.attributes["tagUid"].value for r in desk.out] == [UID.hex().upper(), other.uid.hex().upper()]
        assert [t.afi for t in desk.sim.tags] == [AFI_SECURED, AFI_SECURED]


@pytest.mark.parametrize(
    ("purpose", "event", "again"),
    [("return", "LibraryReturn", "already_returned"), ("lending", "LibraryLoan", "already_lent")],
)
async def test_a_book_lifted_and_put_back_after_its_write_succeeded_is_one_loan_or_return(
    tmp_path: Path, purpose: str, event: str, again: str
) -> None:
    """Regression: a tag taken off and put back (its write done) was read as new, a second loan or return
    for the platform. It is read again and beeped as accepted, with no second event."""
    async with desk_for(tmp_path, purpose) as desk:
        desk.sim.tags.append(book())
        await until(lambda: len(desk.sim.outputs) == 1, "the first beep")
        desk.sim.lifted.append(desk.sim.tags.pop())
        await desk.polled_after(len(desk.sim.requests))
        desk.put_back()
        await until(lambda: len(desk.sim.outputs) == 2, "the second beep")
        assert [r.entity_type for r in desk.out] == [event]
        assert desk.sim.outputs == [ACCEPTED_BEEP, ACCEPTED_BEEP]
        assert desk.adapter.counts[again] == 1


@dataclass
class CutSim(LiftingSim):
    """The stand-in whose reader stops answering at ISO command `cut_at` until `mute` is cleared."""

    cut_at: int | None = None

    def answer(self, frame: bytes) -> bytes | None:
        if frame[2] in (0xB0, 0xB1) and frame[3] == self.cut_at:
            self.cut_at = None
            self.mute = True
        return super().answer(frame)


async def test_a_pad_lost_mid_write_secures_the_book_left_on_it_without_a_second_return(tmp_path: Path) -> None:
    """Regression: the pad found again read the book still lying on it as a new tag, a second LibraryReturn."""
    async with desk_for(tmp_path, "return", CutSim(cut_at=WRITE_AFI)) as desk:
        desk.sim.tags.append(book())
        await until(lambda: desk.adapter.connected[desk.key] is False, "pad lost")
        desk.sim.mute = False
        await until(lambda: desk.adapter.connected[desk.key] is True, "pad found again")
        await until(lambda: desk.sim.outputs == [ACCEPTED_BEEP], "the beep after the retry")
        await desk.polled_after(len(desk.sim.requests))
        assert [r.entity_type for r in desk.out] == ["LibraryReturn"]
        assert (desk.sim.tags[0].afi, desk.sim.tags[0].eas) == (AFI_SECURED, True)

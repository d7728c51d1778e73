"""A CU16 infrared sensor that flickers behind a locked door (a thin book lying flat) is not a door opened and
closed between two statuses: the empty reading counts only once it held for 3 statuses in a row, and an
`emptiedUnseen` alert is raised once until the door is seen open again.

The sensor is scripted one reading per status the adapter receives, so each flicker lasts exactly as many statuses
as the test says, whatever the timing of the line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from adapters.locker.pickup import PickupState
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_adapter import Rig, _assign, adapter_on, until
from tests.adapters.locker.test_emptied_unseen import EMPTIED, subcategories
from tests.adapters.locker.test_kiosk_unconfirmed import NO_STATUS, LosesReplies, picked_up

A02 = 1  # A-02's index on the board
STABLE = 3  # statuses an empty reading must hold (adapters/locker/emptied.py EMPTIED_STATUSES)


@contextlib.asynccontextmanager
async def on_pty(tmp_path: Path, sim: BoardSim) -> AsyncIterator[Rig]:
    """The adapter and the sim on a pty pair, the board kept online through answers lost to a loaded box.

    A status answered later than the bus's reply timeout (0.1 s) is lost; under load a few in a row are, and
    at 5 (test_kiosk_unconfirmed's `on_pty`) the board went offline: its readings forgotten (a forgotten
    alert is raised again), and its next probe 5 s away on the test's clock, which stands still.
    """
    with pty_pair(tmp_path) as (gw, boards):
        async with serve_pty(sim, boards), adapter_on(gw, sim, tmp_path / "data", offline_after=100) as rig:
            yield rig


class Flickers(LosesReplies):
    """A CU16 whose A-02 sensor reads from `script`, one reading per status the adapter receives (a status lost
    after an unlock reads nothing); once the script is done the last reading stays.

    A reading moves on only once the bus took an answer since it was first given (`received`: the board's answer
    count): an answer that came too late for the bus (the event loop held up on a loaded box, the reply timeout is
    0.1 s) was never seen, and moving on regardless cut a flicker one status short."""

    lose_after_unlock = False

    def __init__(self) -> None:
        super().__init__([SimBoard("cu16", 0)])
        self.script: list[bool] = []
        self.before_script: Callable[[], None] | None = None  # run as the script's first reading is answered
        self.received: Callable[[], int] = lambda: 0  # the answers the bus took from the board (`watch`)
        self._given_at: int | None = None  # `received` when the reading A-02 shows was first given

    def watch(self, rig: Rig) -> None:
        self.received = lambda: rig.adapter.boards["b0"].counters.answers

    @property
    def done(self) -> bool:
        """The script played and its last reading received."""
        return not self.script and (self._given_at is None or self.received() > self._given_at)

    def _answer(self, board: SimBoard, lock: int) -> bytes:
        if lock == 0 and not self.losing:
            if self._given_at is not None and self.received() > self._given_at:
                self._given_at = None
            if self._given_at is None and self.script:
                if self.before_script is not None:
                    self.before_script()
                    self.before_script = None
                board.occupied[A02] = self.script.pop(0)
                self._given_at = self.received()
        return super()._answer(board, lock)


async def play(rig: Rig, sim: Flickers, readings: Iterable[bool], *, before: Callable[[], None] | None = None) -> None:
    """The sensor reads `readings`, one per status the adapter receives; back once the adapter has seen the last.
    `before` runs as the first of them is answered: the bus waits for each status to be handled before asking
    again, so every status answered earlier has been seen by then (run from the test instead, a status answered
    before it could still be on its way)."""
    sim.watch(rig)
    sim.before_script = before
    sim.script = list(readings)
    await until(lambda: sim.done)
    await rig.settle()


def flicker(empty: int, occupied: int, flips: int) -> list[bool]:
    """`flips` times: empty for `empty` statuses, then occupied for `occupied`."""
    return ([False] * empty + [True] * occupied) * flips


async def test_a_flickering_sensor_is_no_alert(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: every occupied -> empty flip behind the locked door was an `emptiedUnseen` alert and a WARNING:
    six flips, six high-severity alerts for a book that never left."""
    caplog.set_level(logging.INFO)
    sim = Flickers()
    async with on_pty(tmp_path, sim) as rig:
        _, code = await _assign(rig)
        await play(rig, sim, flicker(1, 1, 6) + flicker(STABLE - 1, 1, 6))
        assert subcategories(rig) == []
        assert "emptied without an unlock command" not in caplog.text
        assert rig.out.last("A-02")["pickupState"] == "reserved"
        assert (await rig.command("A-02", "pickup", {"code": code})).ok  # the code untouched


async def test_a_sensor_that_flickers_for_long_alerts_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Empty long enough to count, six times over, the door never seen open: one alert, one WARNING; once the door
    is seen open (staff look in), the next emptying behind the closed door is news again."""
    caplog.set_level(logging.INFO)
    sim = Flickers()
    async with on_pty(tmp_path, sim) as rig:
        await _assign(rig)
        await play(rig, sim, flicker(STABLE + 1, STABLE + 1, 6))
        assert subcategories(rig) == [EMPTIED]
        assert caplog.text.count("compartment A-02: emptied without an unlock command") == 1
        rig.clock.advance(11)  # an unlock of ours 10 s back or more is not ours
        assert (await rig.command("A-02", "unlock")).ok  # staff look: the book is there
        rig.sim.boards[0].locked[A02] = True
        await until(lambda: rig.out.last("A-02")["doorState"] == "locked")
        rig.clock.advance(11)
        await play(rig, sim, flicker(STABLE, 1, 1))
        assert subcategories(rig) == [EMPTIED, EMPTIED]
        assert rig.out.last("A-02")["pickupState"] == "reserved"


class Stalls(Flickers):
    """Holds the event loop up (a loaded box) as it answers with the reading that has `left` more after it in the
    script, for longer than the bus's reply timeout: the bus gives up on that answer."""

    left: int | None = None

    def _answer(self, board: SimBoard, lock: int) -> bytes:
        stall = lock == 0 and not self.losing and self.left is not None and len(self.script) == self.left + 1
        reply = super()._answer(board, lock)
        if stall:
            self.left = None
            time.sleep(0.5)
        return reply


async def test_an_answer_too_late_for_the_bus_does_not_cut_a_reading_short(tmp_path: Path) -> None:
    """Regression (the test above failed once under load): the answer with the second of exactly STABLE empty
    readings came after the bus's reply timeout, so the adapter saw two, and the sim went on to occupied."""
    sim = Stalls()
    async with on_pty(tmp_path, sim) as rig:
        await _assign(rig)
        await play(rig, sim, [False, True])  # A-02 read occupied behind its locked door before the run
        sim.left = STABLE - 1  # the second empty reading: one more empty and the occupied one after it
        await play(rig, sim, flicker(STABLE, 1, 1))
        assert rig.adapter.boards["b0"].counters.timeouts >= 1  # the stall cost the bus an answer (load: more)
        assert subcategories(rig) == [EMPTIED]


async def test_empty_counts_on_its_third_status(tmp_path: Path) -> None:
    """The boundary: empty for 2 statuses is a flicker, for 3 it is the compartment emptied."""
    from adapters.locker.emptied import EMPTIED_STATUSES

    assert EMPTIED_STATUSES == STABLE
    sim = Flickers()
    async with on_pty(tmp_path, sim) as rig:
        await _assign(rig)
        sim.watch(rig)
        sim.script = [False] * (STABLE - 1)
        await until(lambda: sim.done)
        await until(lambda: rig.out.last("A-02")["occupied"] is False)  # what the sensor reads is published as is
        await play(rig, sim, [True])
        assert subcategories(rig) == []
        await play(rig, sim, [False] * STABLE + [True])
        assert subcategories(rig) == [EMPTIED]


async def test_a_flicker_after_a_code_is_no_pickup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: the code used, the unlock's status lost and the door never opened; the sensor flickered once and
    that was taken for the door opened and closed: the code spent, a pickup recorded and the patron's address
    erased, the book still in the compartment."""
    caplog.set_level(logging.INFO)
    sim = Flickers()
    sim.lose_after_unlock = True
    sim.boards[0].open_on_unlock = False  # the solenoid did not pull
    async with on_pty(tmp_path, sim) as rig:
        _, code = await _assign(rig)
        assert (await rig.command("A-02", "pickup", {"code": code})).info == NO_STATUS
        sim.losing = False
        await play(rig, sim, flicker(1, 1, 3) + flicker(STABLE - 1, 1, 3))
        assert picked_up(rig) == 0
        assert "emptied behind its closed door after its pickup code" not in caplog.text
        store = rig.adapter.store
        assert store is not None
        assert store.email_of(1) is not None  # the address kept
        rig.clock.advance(10)
        await until(lambda: rig.out.last("A-02")["pickupState"] == "reserved")  # the code given back, not spent
        assert subcategories(rig) == []
        sim.boards[0].open_on_unlock = True
        sim.lose_after_unlock = False
        opened = await rig.command("A-02", "pickup", {"code": code})
        assert (opened.ok, opened.info) == (True, "opened: compartment A-02")


async def test_a_stable_empty_after_a_code_is_the_pickup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The door opened and closed between two statuses after its code, the book gone: the pickup, as before, once
    the empty reading held."""
    caplog.set_level(logging.INFO)
    sim = Flickers()
    sim.lose_after_unlock = True
    async with on_pty(tmp_path, sim) as rig:
        _, code = await _assign(rig)
        assert (await rig.command("A-02", "pickup", {"code": code})).info == NO_STATUS
        sim.boards[0].locked[A02] = True  # shut again before the board answered
        sim.losing = False
        await play(rig, sim, [False, True, False, False, True])  # a flicker, then not long enough
        assert picked_up(rig) == 0
        await play(rig, sim, [False] * STABLE)
        await until(lambda: picked_up(rig) == 1 and rig.out.last("A-02")["pickupState"] == "free")
        assert "compartment A-02: emptied behind its closed door after its pickup code (assignment 1)" in caplog.text
        store = rig.adapter.store
        assert store is not None and store.email_of(1) is None
        done = store.get(1)
        assert done is not None and done.state is PickupState.COLLECTED
        assert subcategories(rig) == []


async def test_a_book_left_behind_that_flickers_is_not_picked_up(tmp_path: Path) -> None:
    """Regression: the patron opened the door with the code and shut it on the book; a single empty reading behind
    the shut door then recorded the pickup and erased the address."""
    sim = Flickers()
    async with on_pty(tmp_path, sim) as rig:
        _, code = await _assign(rig)
        assert (await rig.command("A-02", "pickup", {"code": code})).ok
        sim.boards[0].locked[A02] = True  # shut on the book
        await until(lambda: rig.out.last("A-02")["doorState"] == "locked")
        assert rig.out.last("A-02")["pickupState"] == "opened"
        await play(rig, sim, flicker(1, 1, 6) + flicker(STABLE - 1, 1, 2))
        assert picked_up(rig) == 0
        assert rig.out.last("A-02")["pickupState"] == "opened"
        store = rig.adapter.store
        assert store is not None and store.email_of(1) is not None
        await play(rig, sim, [False] * STABLE)  # the door opened and closed unseen, the book gone
        await until(lambda: picked_up(rig) == 1)
        assert subcategories(rig) == []


async def test_the_code_is_not_given_back_while_an_empty_reading_settles(tmp_path: Path) -> None:
    """The code used, its door read locked and occupied for statuses enough and 10 s gone; then the compartment
    reads empty: while that reading settles the code is not given back, and once it held it is the pickup (given
    back first, the pickup would be taken for a theft: an alert, the code working again)."""
    sim = Flickers()
    sim.lose_after_unlock = True
    sim.boards[0].open_on_unlock = False  # not seen to move before the next statuses
    async with on_pty(tmp_path, sim) as rig:
        _, code = await _assign(rig)
        assert (await rig.command("A-02", "pickup", {"code": code})).info == NO_STATUS
        sim.losing = False
        await play(rig, sim, [True] * 3)
        # opened and shut between two statuses, the book taken, 10 s on
        await play(rig, sim, [False] * STABLE, before=lambda: rig.clock.advance(10))
        await until(lambda: picked_up(rig) == 1)
        assert rig.out.last("A-02")["pickupState"] == "free"
        assert subcategories(rig) == []

"""A door that opened and closed between two statuses: on a CU16 the infrared sensor still tells, the compartment
that was occupied reads empty behind a door that reads locked.

After its pickup code that is the pickup (the code spent, the event sent); with no code used and no unlock from us
it is an alert. Boards without infrared sensors (CU48, XOR) cannot tell: nothing is inferred there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.locker.pickup import PickupState
from gateway.records import Lane
from tests.adapters.locker.board_sim import SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_adapter import Rig, _assign, adapter_on, running, until
from tests.adapters.locker.test_kiosk_unconfirmed import NO_STATUS, LosesReplies, on_pty, picked_up

EMPTIED = "emptiedUnseen"


def subcategories(rig: Rig) -> list[str]:
    return [a.attributes["subCategory"].value for a in rig.out.of("Alert")]


async def test_emptied_behind_a_closed_door_after_its_code_is_the_pickup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: the unlock's status lost, the door swung open and shut before the next status the board
    answered, the book gone: the code was given back 10 s later, the reservation kept as if the book were still
    there, and the code opened the empty compartment a second time."""
    caplog.set_level(logging.INFO)
    sim = LosesReplies([SimBoard("cu16", 0)])
    async with on_pty(tmp_path, sim) as rig:
        _, code = await _assign(rig)  # the book in A-02: occupied
        first = await rig.command("A-02", "pickup", {"code": code})
        assert first.info == NO_STATUS
        board = sim.boards[0]
        assert board.unlocks == [2] and not board.locked[1]  # it opened, and no status showed it
        board.occupied[1] = False  # the patron took the book
        board.locked[1] = True  # and shut the door, all before the board answered again
        sim.losing = False
        await until(lambda: picked_up(rig) == 1 and rig.out.last("A-02")["pickupState"] == "free")
        assert rig.out.last("A-02")["doorState"] == "locked"  # it was never seen open
        assert (
            "compartment A-02: emptied behind its closed door after its pickup code (assignment 1): the door opened "
            "and closed between two statuses" in caplog.text
        )
        rig.clock.advance(10)  # past the window that gave the code back
        await rig.settle()
        store = rig.adapter.store
        assert store is not None
        assert "A-02" not in store.active()
        done = store.get(1)
        assert done is not None and done.state is PickupState.COLLECTED
        assert store.email_of(1) is None  # erased once the event is on the buffer
        again = await rig.command("A-02", "pickup", {"code": code})
        assert again.info.startswith("used_code:")
        assert board.unlocks == [2]  # opened once
        assert subcategories(rig) == []  # ours: no alert


async def test_a_reserved_compartment_emptied_without_an_unlock_is_an_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: no code used, no unlock sent, and the occupied compartment read empty behind its locked door
    (it opened between two statuses: a key, a forced door): nothing was said, the reservation kept as is."""
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as rig:
        _, code = await _assign(rig)
        rig.sim.boards[0].occupied[1] = False
        await until(lambda: EMPTIED in subcategories(rig))
        (alert,) = rig.out.of("Alert")
        assert alert.lane is Lane.ALERT
        assert alert.attributes["alertSource"].value == rig.entity("A-02")
        assert alert.attributes["severity"].value == "high"
        assert alert.attributes["description"].value == (
            "compartment A-02 emptied without unlock: its door opened and closed between two statuses"
        )
        assert (
            "compartment A-02: emptied without an unlock command, its door opened and closed between two statuses; "
            "assignment 1 is still reserved, its code unused: check the compartment and cancel the assignment on "
            "/lockers if the book is gone" in caplog.text
        )
        # staff decide: the reservation and its code stay, no pickup is made up
        assert picked_up(rig) == 0
        assert rig.out.last("A-02")["pickupState"] == "reserved"
        await rig.settle()
        assert subcategories(rig) == [EMPTIED]  # once, not at every status
        assert (await rig.command("A-02", "pickup", {"code": code})).ok


async def test_a_free_compartment_emptied_without_an_unlock_is_an_alert(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        rig.sim.boards[0].occupied[0] = True  # something in A-01, not assigned
        await until(lambda: rig.out.last("A-01")["occupied"] is True)
        rig.sim.boards[0].occupied[0] = False
        await until(lambda: rig.out.last("A-01")["occupied"] is False)
        await until(lambda: subcategories(rig) == [EMPTIED])  # once the empty reading held (emptied.py)
        await rig.settle()
        assert subcategories(rig) == [EMPTIED]


async def test_emptied_after_our_own_unlock_is_no_alert(tmp_path: Path) -> None:
    """Staff opened the door from /lockers; its status was lost and the next one shows it shut and empty."""
    sim = LosesReplies([SimBoard("cu16", 0)])
    async with on_pty(tmp_path, sim) as rig:
        sim.boards[0].occupied[0] = True
        await until(lambda: rig.out.last("A-01")["occupied"] is True)
        staff = await rig.command("A-01", "unlock")
        assert staff.info == "offline: board b0 gave no status after the unlock"
        sim.boards[0].occupied[0] = False
        sim.boards[0].locked[0] = True
        sim.losing = False
        await until(lambda: rig.out.last("A-01")["occupied"] is False)
        assert subcategories(rig) == []


async def test_an_emptied_compartment_seen_as_it_empties_is_no_alert(tmp_path: Path) -> None:
    """Empty before the door is seen closed is the usual pickup; empty with the door seen open is no news."""
    async with running(tmp_path) as rig:
        _, code = await _assign(rig)
        assert (await rig.command("A-02", "pickup", {"code": code})).ok
        rig.sim.boards[0].occupied[1] = False  # the door seen open, the book taken
        await until(lambda: rig.out.last("A-02")["occupied"] is False)
        rig.sim.boards[0].locked[1] = True
        await until(lambda: picked_up(rig) == 1)
        assert subcategories(rig) == []


@pytest.mark.parametrize("model", ["cu48", "xor24"])
async def test_boards_without_infrared_infer_nothing(tmp_path: Path, model: str) -> None:
    """No occupancy on these boards: a door not seen open after its code gets the code back, as before."""
    sim = LosesReplies([SimBoard(model, 0 if model == "cu48" else 1)])
    with pty_pair(tmp_path) as (gw, boards):
        async with serve_pty(sim, boards), adapter_on(gw, sim, tmp_path / "data", model=model, offline_after=5) as rig:
            _, code = await _assign(rig)
            assert (await rig.command("A-02", "pickup", {"code": code})).info == NO_STATUS
            sim.boards[0].locked[1] = True
            sim.losing = False
            await rig.settle()
            await rig.settle()
            rig.clock.advance(10)
            await until(lambda: rig.out.last("A-02")["pickupState"] == "reserved")
            assert picked_up(rig) == 0 and subcategories(rig) == []

"""A code past its deadline, or already used to collect the book, typed at the kiosk gets its own answer.

Before, both lost their hash: an overdue compartment's code (`expire()` dropped it) and a collected
one's (dropped once the door was seen open) were, once staff had cancelled and reassigned the
compartment, wrong codes for it: a late patron's tries, or a patron checking their old code,
counted against the next assignment and `max_wrong` of them locked the next patron out. Now their
keyed digests stay for `valid_days` (after the deadline, after the pickup), as a cancelled code's
do: answered `expired_code:` / `used_code:`, opening nothing, counting no try, counted in the
diagnostics and logged without the code; then forgotten.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
from pathlib import Path

import pytest

from adapters.locker.pickup import PickupError, PickupStore
from tests.adapters.locker.test_adapter import Rig, running, until
from tests.adapters.locker.test_cancel_code_at_kiosk import (
    VALID_S,
    assigned,
    logged_about,
    tried_at_the_next_assignment,
    wrong_tries,
)

EXPIRED = (
    "expired_code: the pickup deadline for compartment A-02 has passed; this code no longer opens it, ask the library"
)
USED = "used_code: the book in compartment A-02 was collected with this code already; it opens nothing now"


async def overdue_then_cancelled(rig: Rig) -> str:
    """A-02 assigned, its code mail sent, the deadline passed (overdue), then cancelled by staff: the late code."""
    code = await assigned(rig, "late@example.jp", "R-1")
    rig.clock.advance(VALID_S)
    await rig.adapter.housekeeping()
    assert rig.out.last("A-02")["pickupState"] == "overdue"
    assert (await rig.command("A-02", "pickup", {"code": code})).info == EXPIRED  # while overdue too
    assert (await rig.command("A-02", "cancel")).ok
    return code


async def collected(rig: Rig) -> str:
    """A-02 assigned, opened with its code, the book taken and the door closed: the pickup; the used code."""
    code = await assigned(rig, "first@example.jp", "R-1")
    assert (await rig.command("A-02", "pickup", {"code": code})).info == "opened: compartment A-02"
    board = rig.sim.boards[0]
    board.occupied[1] = False
    board.locked[1] = True
    await until(lambda: len(rig.out.of("LockerPickup")) == 1 and rig.out.last("A-02")["pickupState"] == "free")
    return code


def digest_of(data: Path, code: str) -> str:
    return hmac.new((data / "locker-lockers.key").read_bytes(), code.encode(), hashlib.sha256).hexdigest()


async def known_until_valid_days_are_over(rig: Rig, code: str, answer: str) -> None:
    """`code` still answered `answer` at the next assignment a second before `valid_days` are over; then that
    second passed and housekeeping done."""
    rig.clock.advance(VALID_S - 1)
    await rig.adapter.housekeeping()
    await assigned(rig, "second@example.jp", "R-2")
    assert (await rig.command("A-02", "pickup", {"code": code})).info == answer
    rig.clock.advance(1)
    await rig.adapter.housekeeping()


def hashes(data: Path) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(data / "locker-lockers.db") as db:
        return db.execute("SELECT id, state, code_hash FROM assignments ORDER BY id").fetchall()


async def test_an_expired_code_neither_opens_nor_counts_against_the_next_assignment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as rig:
        late = await overdue_then_cancelled(rig)
        new, tries = await tried_at_the_next_assignment(rig, late)
        assert [(r.ok, r.info) for r in tries] == [(False, EXPIRED)] * len(tries)
        assert wrong_tries(rig, "A-02") == 0
        assert rig.out.last("A-02")["pickupState"] == "reserved"
        opened = await rig.command("A-02", "pickup", {"code": new})
        assert (opened.ok, opened.info) == (True, "opened: compartment A-02")
        assert rig.sim.boards[0].unlocks == [2]  # the next patron's door only
        assert rig.adapter.diagnostics()["expired_codes"] == 1 + len(tries)
    assert logged_about(caplog, "after its deadline", late)[0] == (
        "compartment A-02: the pickup code of assignment 1 was entered after its deadline; it opens nothing and "
        "is not counted as a wrong try (counted in expired_codes)"
    )


async def test_a_used_code_neither_opens_nor_counts_against_the_next_assignment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as rig:
        used = await collected(rig)
        again = await rig.command("A-02", "pickup", {"code": used})  # the compartment free: told so too
        assert (again.ok, again.info) == (False, USED)
        new, tries = await tried_at_the_next_assignment(rig, used)
        assert [(r.ok, r.info) for r in tries] == [(False, USED)] * len(tries)
        assert wrong_tries(rig, "A-02") == 0
        opened = await rig.command("A-02", "pickup", {"code": new})
        assert (opened.ok, opened.info) == (True, "opened: compartment A-02")
        assert rig.sim.boards[0].unlocks == [2, 2]  # the first pickup and the next patron's
        assert rig.adapter.diagnostics()["used_codes"] == 1 + len(tries)
        # only at its own compartment: elsewhere a code like any other
        assert (
            await rig.command("A-03", "pickup", {"code": used})
        ).info == "no_code: no valid code for this compartment"
    assert logged_about(caplog, "collected assignment", used)[0] == (
        "compartment A-02: the pickup code of collected assignment 1 was entered again; it opens nothing and is not "
        "counted as a wrong try (counted in used_codes)"
    )


async def test_a_wrong_code_still_counts_beside_an_expired_and_a_used_one(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        late = await overdue_then_cancelled(rig)  # first: its deadline is valid_days on, which a pickup's code outlives
        used = await collected(rig)
        new = await assigned(rig, "third@example.jp", "R-3")
        other = next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in (used, late, new))
        assert (await rig.command("A-02", "pickup", {"code": other})).info == "wrong_code: wrong code"
        assert (await rig.command("A-02", "pickup", {"code": late})).info == EXPIRED
        assert (await rig.command("A-02", "pickup", {"code": used})).info == USED
        assert wrong_tries(rig, "A-02") == 1


async def test_an_expired_code_is_kept_as_its_keyed_digest_for_valid_days_after_its_deadline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(tmp_path, data) as rig:
        late = await overdue_then_cancelled(rig)  # cancelled at the deadline
        assert hashes(data) == [(1, "cancelled", digest_of(data, late))]
        assert late.encode() not in (data / "locker-lockers.db").read_bytes()
        await known_until_valid_days_are_over(rig, late, EXPIRED)
        assert hashes(data)[0] == (1, "cancelled", None)
        # forgotten: from now on it is a wrong code like any other
        assert (await rig.command("A-02", "pickup", {"code": late})).info == "wrong_code: wrong code"
        assert wrong_tries(rig, "A-02") == 1


async def test_an_overdue_code_is_forgotten_valid_days_after_its_deadline_even_if_staff_never_cancel(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(tmp_path, data) as rig:
        code = await assigned(rig, "late@example.jp", "R-1")
        rig.clock.advance(VALID_S)
        await rig.adapter.housekeeping()
        assert hashes(data) == [(1, "overdue", digest_of(data, code))]
        rig.clock.advance(VALID_S)
        await rig.adapter.housekeeping()
        assert hashes(data) == [(1, "overdue", None)]
        assert (
            await rig.command("A-02", "pickup", {"code": code})
        ).info == "no_code: no valid code for this compartment"


async def test_a_used_code_is_kept_as_its_keyed_digest_for_valid_days_after_the_pickup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(tmp_path, data) as rig:
        used = await collected(rig)
        (row,) = hashes(data)
        assert row[:2] == (1, "collected") and row[2] is not None and digest_of(data, used) in row[2]
        assert used.encode() not in (data / "locker-lockers.db").read_bytes()
        await known_until_valid_days_are_over(rig, used, USED)
        assert hashes(data)[0] == (1, "collected", None)
        assert (await rig.command("A-02", "pickup", {"code": used})).info == "wrong_code: wrong code"
        assert wrong_tries(rig, "A-02") == 1


async def test_expired_and_used_codes_are_still_known_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(tmp_path / "first", data) as rig:
        late = await overdue_then_cancelled(rig)  # first: its deadline is valid_days on, which a pickup's code outlives
        used = await collected(rig)
    async with running(tmp_path / "second", data) as rig:
        await assigned(rig, "third@example.jp", "R-3")
        assert (await rig.command("A-02", "pickup", {"code": late})).info == EXPIRED
        assert (await rig.command("A-02", "pickup", {"code": used})).info == USED
        assert wrong_tries(rig, "A-02") == 0


def test_a_used_code_is_never_issued_again_while_it_is_known(tmp_path: Path) -> None:
    """With one-digit codes there are ten: one used, nine cancelled; no eleventh is left to give a new patron
    (before, the used one was: that patron's right code would now be answered `used_code`)."""
    store = PickupStore(tmp_path / "locker-lockers.db", clock=lambda: 1_800_000_000.0, code_length=1)
    try:
        a, code = store.assign("A-01", email="p@example.jp", reference="R-0", valid_s=VALID_S)
        store.check_code("A-01", code)
        store.seen_open(a.id)
        assert store.collected("A-01") is not None
        issued = {code}
        for n in range(1, 10):
            _, other = store.assign("A-01", email="p@example.jp", reference=f"R-{n}", valid_s=VALID_S)
            issued.add(other)
            store.cancel("A-01")
        assert issued == set("0123456789")
        with pytest.raises(PickupError, match="no unused code found"):
            store.assign("A-01", email="p@example.jp", reference="R-10", valid_s=VALID_S)
    finally:
        store.close()

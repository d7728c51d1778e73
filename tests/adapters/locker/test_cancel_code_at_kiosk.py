"""A code mailed for an assignment that staff then cancelled, typed at the kiosk, gets its own answer.

Before, once the cancelled code mail had left (the queue could not withdraw it), the patron's old
code was a wrong code for the compartment: each try counted against its next assignment, and
`max_wrong` of them locked the next patron out of a compartment holding their book. Now the code of
a cancelled assignment is recognised for `valid_days` after the cancel (by its keyed digest, never in
clear), answered `cancelled_code:`, counted in the diagnostics, and neither opens nor counts a try.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.records import CommandResult
from tests.adapters.locker.test_adapter import PICKUP, Rig, running

VALID_S = 7 * 86400  # valid_days' default, which PICKUP leaves
CANCELLED = (
    "cancelled_code: the reservation for compartment A-02 was cancelled; this code no longer opens it, ask the library"
)


def code_in(text: str) -> str:
    return text.split("暗証番号　：")[1].split("\n")[0]


async def mailed_then_cancelled(rig: Rig) -> str:
    """An assignment of A-02 whose code mail was sent, then cancelled: the code the patron holds."""
    assert (await rig.command("A-02", "assign", {"email": "first@example.jp", "reference": "R-1"})).ok
    (pending,) = await rig.mail.due(now=1e12)
    await rig.mail.mark_sent(pending.id)  # the server took it: it can no longer be withdrawn
    cancel = await rig.command("A-02", "cancel")
    assert cancel.info.endswith("had been sent already; the code no longer works"), cancel.info
    return code_in(pending.mail.text)


async def assigned(rig: Rig, email: str, reference: str) -> str:
    assert (await rig.command("A-02", "assign", {"email": email, "reference": reference})).ok
    (pending,) = await rig.mail.due(now=1e12)
    await rig.mail.mark_sent(pending.id)
    return code_in(pending.mail.text)


async def tried_at_the_next_assignment(rig: Rig, code: str) -> tuple[str, list[CommandResult]]:
    """The next patron's assignment of A-02, and `code` tried there more often than it takes to lock the compartment
    (before: the next patron was locked out): the next patron's code, and the answers to the tries."""
    new = await assigned(rig, "second@example.jp", "R-2")
    assert new != code
    return new, [await rig.command("A-02", "pickup", {"code": code}) for _ in range(PICKUP["max_wrong"] + 1)]


def logged_about(caplog: pytest.LogCaptureFixture, part: str, code: str) -> list[str]:
    """The log lines holding `part`; no line may show the patron's `code` in clear."""
    assert not [r for r in caplog.records if code in r.getMessage()]
    return [r.getMessage() for r in caplog.records if part in r.getMessage()]


def wrong_tries(rig: Rig, label: str) -> int:
    store = rig.adapter.store
    assert store is not None
    return store.active()[label].wrong


async def test_a_cancelled_code_neither_opens_nor_counts_against_the_next_assignment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as rig:
        old = await mailed_then_cancelled(rig)
        new, late = await tried_at_the_next_assignment(rig, old)
        assert wrong_tries(rig, "A-02") == 0
        assert rig.out.last("A-02")["pickupState"] == "reserved"
        opened = await rig.command("A-02", "pickup", {"code": new})
        assert (opened.ok, opened.info) == (True, "opened: compartment A-02")
        assert [(r.ok, r.info) for r in late] == [(False, CANCELLED)] * len(late)
        assert rig.sim.boards[0].unlocks == [2]  # the next patron's door only
        assert rig.adapter.diagnostics()["cancelled_codes"] == len(late)
    assert logged_about(caplog, "cancelled assignment", old)[0] == (
        "compartment A-02: a pickup code of cancelled assignment 1 was entered; it opens nothing and is not "
        "counted as a wrong try (counted in cancelled_codes)"
    )


async def test_a_cancelled_code_at_the_free_compartment_is_told_so(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        old = await mailed_then_cancelled(rig)
        free = await rig.command("A-02", "pickup", {"code": old})
        assert (free.ok, free.info) == (False, CANCELLED)
        assert rig.sim.boards[0].unlocks == []
        # only at the compartment it was mailed for: elsewhere it is a code like any other
        assert (
            await rig.command("A-03", "pickup", {"code": old})
        ).info == "no_code: no valid code for this compartment"


async def test_a_wrong_code_still_counts_beside_a_cancelled_one(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        old = await mailed_then_cancelled(rig)
        new = await assigned(rig, "second@example.jp", "R-2")
        other = next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in (old, new))
        assert (await rig.command("A-02", "pickup", {"code": other})).info == "wrong_code: wrong code"
        assert (await rig.command("A-02", "pickup", {"code": old})).info == CANCELLED
        assert wrong_tries(rig, "A-02") == 1


async def test_a_cancelled_code_is_kept_as_its_keyed_digest_for_valid_days_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(tmp_path, data) as rig:
        old = await mailed_then_cancelled(rig)
        digest = hmac.new((data / "locker-lockers.key").read_bytes(), old.encode(), hashlib.sha256).hexdigest()
        with sqlite3.connect(data / "locker-lockers.db") as db:
            assert db.execute("SELECT state, code_hash FROM assignments").fetchall() == [("cancelled", digest)]
        assert old.encode() not in (data / "locker-lockers.db").read_bytes()
        rig.clock.advance(VALID_S - 1)
        await assigned(rig, "second@example.jp", "R-2")
        assert (await rig.command("A-02", "pickup", {"code": old})).info == CANCELLED
        rig.clock.advance(1)
        await rig.adapter.housekeeping()
        with sqlite3.connect(data / "locker-lockers.db") as db:
            assert db.execute("SELECT code_hash FROM assignments WHERE id=1").fetchone() == (None,)
        # forgotten: from now on it is a wrong code like any other
        assert (await rig.command("A-02", "pickup", {"code": old})).info == "wrong_code: wrong code"
        assert wrong_tries(rig, "A-02") == 1


async def test_a_cancelled_code_is_still_known_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(tmp_path / "first", data) as rig:
        old = await mailed_then_cancelled(rig)
    async with running(tmp_path / "second", data) as rig:
        await assigned(rig, "second@example.jp", "R-2")
        assert (await rig.command("A-02", "pickup", {"code": old})).info == CANCELLED
        assert wrong_tries(rig, "A-02") == 0

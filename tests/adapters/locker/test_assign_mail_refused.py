"""An assignment whose code mail cannot be queued is not made: the code exists only in that mail.

Before, the assignment was committed first and the mail queued after it: an address the mail queue
refuses (typed with the Japanese IME on), a full disk under mail.db, or a crash between the two left
the compartment `reserved` with no mail and no code, staff saw "operation failed" and "not free".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.locker.pickup import PickupStore
from gateway.mail import Mail, MailQueue
from tests.adapters.locker.test_adapter import Clock, running
from tests.support.tmpfs import fill

FULL_WIDTH = "ｈａｎａｋｏ@example.jp"  # one '@', no spaces: what the IME gives with half-width off


async def test_an_address_the_mail_queue_refuses_is_refused_before_anything_is_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with running(tmp_path) as rig:
            refused = await rig.command("A-02", "assign", {"email": FULL_WIDTH, "reference": "R-1"})
            assert (refused.ok, refused.info) == (
                False,
                "invalid_email: the e-mail address is not valid, got a value not shown here; it must be "
                "local@domain in half-width ASCII (an internationalised domain in its xn-- form)",
            )
            assert rig.adapter.store is not None and rig.adapter.store.active() == {}
            assert await rig.mail.due(now=1e12) == []
            assert rig.out.last("A-02")["pickupState"] == "free"
            again = await rig.command("A-02", "assign", {"email": "hanako@example.jp", "reference": "R-1"})
            assert again.ok, again.info
    assert "ｈａｎａｋｏ" not in caplog.text


async def test_a_full_mail_disk_undoes_the_assignment_and_says_why(
    tmp_path: Path, tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    disk = tmpfs("512k", at=tmp_path / "maildisk")
    with caplog.at_level(logging.DEBUG):
        async with running(tmp_path, mail_dir=disk) as rig:
            await asyncio.to_thread(fill, disk)
            refused = await rig.command("A-02", "assign", {"email": "hanako@example.jp", "reference": "R-1"})
            assert (refused.ok, refused.info) == (
                False,
                "mail_failed: the code mail for compartment A-02 could not be queued, got OperationalError: "
                "database or disk is full; nothing was assigned, assign again once the mail queue works (see the "
                "status)",
            )
            assert rig.adapter.store is not None and rig.adapter.store.active() == {}
            assert rig.adapter.store.email_of(1) is None  # the undone assignment keeps no address
            assert rig.out.last("A-02")["pickupState"] == "free"
            assert rig.adapter.diagnostics()["mail_failures"] == 1
            (disk / "filler").unlink()  # room again: the same assignment goes through
            again = await rig.command("A-02", "assign", {"email": "hanako@example.jp", "reference": "R-1"})
            assert again.ok, again.info
            assert [p.mail.to for p in await rig.mail.due(now=1e12)] == [("hanako@example.jp",)]
    assert (
        "compartment A-02: the code mail of assignment 1 could not be queued, got OperationalError: database or "
        "disk is full; assignment undone (counted in mail_failures)" in caplog.messages
    )
    assert "hanako" not in caplog.text


async def _left_by_a_crash(data_dir: Path, *, queued: bool) -> None:
    """What a kill -9 between the two commits leaves: assignment 1 stored, its mail id never noted (its mail
    queued or not)."""

    def assign() -> None:
        data_dir.mkdir(parents=True)
        store = PickupStore(data_dir / "locker-lockers.db", clock=lambda: Clock().now().timestamp())
        store.assign("A-02", email="hanako@example.jp", reference="R-1", valid_s=7 * 86400)
        store.close()

    await asyncio.to_thread(assign)
    queue = await MailQueue.open(data_dir, clock=lambda: Clock().now().timestamp())
    if queued:
        await queue.enqueue(
            Mail(to=("hanako@example.jp",), subject="s", text="t", purpose="locker.pickup", reference="lockers:1")
        )
    await queue.close()


async def test_an_assignment_a_crash_left_without_its_mail_is_shown_and_can_be_cancelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    await _left_by_a_crash(data_dir, queued=False)
    with caplog.at_level(logging.INFO):
        async with running(tmp_path / "run", data_dir=data_dir) as rig:
            d = rig.adapter.diagnostics()
            assert d["unmailed"] == {"A-02": 1}
            assert d["summary"] == (
                "boards online 1/1; assigned without a code mail: A-02 (cancel and assign again on /lockers)"
            )
            cancelled = await rig.command("A-02", "cancel")
            assert (cancelled.ok, cancelled.info) == (
                True,
                "cancelled: assignment 1; mail=none; no code mail on record",
            )
            assert rig.adapter.diagnostics()["unmailed"] == {}
            assert (await rig.command("A-02", "assign", {"email": "p@example.jp", "reference": "R-2"})).ok
    assert (
        "compartment A-02: assignment 1 has no code mail, got none queued (the gateway stopped between assigning "
        "it and queueing its mail); the patron has no code: cancel it on /lockers and assign again" in caplog.messages
    )


async def test_a_mail_queued_before_the_crash_is_found_again_and_withdrawn_on_cancel(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _left_by_a_crash(data_dir, queued=True)
    async with running(tmp_path / "run", data_dir=data_dir) as rig:
        assert rig.adapter.diagnostics()["unmailed"] == {}
        assert rig.adapter.store is not None and rig.adapter.store.active()["A-02"].mail_id == 1
        cancelled = await rig.command("A-02", "cancel")
        assert (cancelled.ok, cancelled.info) == (
            True,
            "cancelled: assignment 1; mail=withdrawn; its code mail 1 was withdrawn before it was sent",
        )
        assert await rig.mail.due(now=1e12) == []

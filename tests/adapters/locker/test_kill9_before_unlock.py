"""kill -9 after the kiosk's code check was stored and before the unlock reached the board: no pickup is recorded
for the door that never opened, and the code works again once the door was not seen open after the restart.

The adapter runs in a child process (kiosk_child.py) on a socat pty whose board stand-in holds a status query
unanswered, so the line is busy and the unlock waits behind it; the child is killed with SIGKILL as soon as
its store shows the code used. The restart runs here, on the same pty and store, with the time injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.locker.adapter import LockerAdapter
from gateway.adapter_api import AdapterContext
from gateway.mail.queue import MailQueue
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_adapter import PICKUP, Clock, Collector, Rig, config, until

ROOT = Path(__file__).resolve().parents[3]
CHILD = Path(__file__).with_name("kiosk_child.py")


class HoldsStatus(BoardSim):
    """`hold`: status queries get no reply (counted in `held`), so the gateway's line stays busy for its timeout."""

    hold = False
    held = 0

    def _answer(self, board: SimBoard, lock: int) -> bytes:
        if self.hold and not lock:
            self.held += 1
            self.requests += 1
            return b""
        return super()._answer(board, lock)


def state_of(db: Path) -> str | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as c:
            r = c.execute("SELECT state FROM assignments WHERE label='A-02'").fetchone()
    except sqlite3.Error:
        return None
    return None if r is None else str(r[0])


class WallClock(Clock):
    """Clock starting now: the child stored its deadline in real time."""

    def __init__(self) -> None:
        super().__init__()
        self.t = datetime.now(UTC)


@pytest.mark.parametrize(("model", "book_inside"), [("xor24", False), ("cu16", True)])
async def test_kill_9_between_the_code_check_and_the_unlock(tmp_path: Path, model: str, book_inside: bool) -> None:
    """Regression: the code check stored `opened` before the unlock, and after a restart the door reading locked
    at the first status recorded a pickup (XOR, CU48: no occupancy), or on a CU16 with the book inside the
    assignment stayed `opened` for good, its code spent."""
    data = tmp_path / "data"
    data.mkdir()
    sim = HoldsStatus([SimBoard(model, 0 if model == "cu16" else 1)])
    board = sim.boards[0]
    board.occupied[1] = book_inside
    with pty_pair(tmp_path) as (gw, boards):
        async with serve_pty(sim, boards):
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CHILD),
                gw,
                str(data),
                model,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert child.stdin is not None and child.stdout is not None
            try:
                line = await asyncio.wait_for(child.stdout.readline(), 30)
                assert line.startswith(b"CODE "), line
                code = line.split()[1].decode()
                sim.hold = True
                held = sim.held
                await until(lambda: sim.held > held)  # a status query in flight: the line is busy for 5 s
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                db = data / "locker-lockers.db"
                await until(lambda: state_of(db) == "opened", timeout=4)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGKILL)
                await child.wait()
            assert child.returncode == -signal.SIGKILL
            assert board.unlocks == []  # killed before the unlock reached the board
            sim.hold = False

            clock = WallClock()
            mail = await MailQueue.open(data, clock=lambda: clock.now().timestamp())
            adapter = LockerAdapter(
                config(gw, model=model, pickup=PICKUP),
                AdapterContext(gateway_id="gw1", data_dir=str(data), mail=mail),
                clock=clock.now,
                monotonic=clock.monotonic,
            )
            out = Collector()
            task = asyncio.create_task(adapter.run(out))
            try:
                rig = Rig(adapter, sim, out, clock, mail)
                await until(lambda: adapter.boards["b0"].state.value == "online")
                await rig.settle()
                await rig.settle()
                assert out.of("LockerPickup") == []  # the door never opened
                assert out.last("A-02")["pickupState"] == "opened"  # not known yet: 10 s after the start
                clock.advance(10)
                await until(lambda: out.last("A-02")["pickupState"] == "reserved")
                assert out.of("LockerPickup") == []
                opened = await rig.command("A-02", "pickup", {"code": code})
                assert (opened.ok, opened.info) == (True, "opened: compartment A-02")
                assert board.unlocks == [2]
                board.occupied[1] = False
                board.locked[1] = True
                await until(lambda: len(out.of("LockerPickup")) == 1 and out.last("A-02")["pickupState"] == "free")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await mail.close()

"""A bundle whose uplink waits on its backlog's random start delay is not judged until the delay can have ended.

Each apply starts a new generation, whose first catch-up batch waits uniform(0, start_delay_max_s)
(up to 3600 s) while the health window may be 60 s: the fix for a broken uplink was rolled back to
the broken config because it had not delivered yet. The window now counts from the delay's end, at
most `start_delay_max_s` past the apply, so a broken bundle is still rolled back, only later.
"""

from __future__ import annotations

import asyncio
import random
import types
from pathlib import Path

import pytest

from gateway import delivery
from gateway.fleet import remote
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import bundle, config_text, runtime_on, settled, steps_of
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

PACED = "retry_max_s = 0.2\nbatch_max_rows = 1\nstart_delay_max_s = 3600"


def paced(text: str) -> str:
    """One row a batch (so a backlog of two is a catch-up), a start delay of up to an hour, a 60 s window."""
    return text.replace("retry_max_s = 0.2", PACED).replace("health_window_s = 600", "health_window_s = 60")


@pytest.fixture
def long_start_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every delivery loop's randomness seeded: its first draw makes the start delay 3039 s of the 3600."""
    monkeypatch.setattr(delivery, "random", types.SimpleNamespace(Random=lambda: random.Random(0)))


def uplink_states(doc: dict[str, object]) -> list[str]:
    return [str(u["state"]) for u in doc["uplinks"]]  # type: ignore[attr-defined]


async def test_a_fix_whose_uplink_waits_on_its_start_delay_is_not_rolled_back_at_the_window(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, long_start_delay: None
) -> None:
    path = tmp_path / "gateway.toml"
    broken = paced(config_text(tmp_path, f"http://127.0.0.1:{free_port()}"))
    fixed = paced(config_text(tmp_path, orion_double.url))
    async with runtime_on(path, broken) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        await fleet.tick(clock())  # the Device entity waits: the uplink is down
        assert (await fleet.offer(bundle(fixed, 1), via="push"))["applied"] is True
        data_dir = fleet.data_dir
        await until(lambda: (remote.RemoteState(data_dir).pending or {}).get("reloaded") is True)
        fleet = runtime.gateway.fleet  # the fixed generation
        assert fleet is not None
        await fleet.tick(clock())  # another Device entity: two rows waiting, a catch-up batch
        doc = await fleet.status()
        for _ in range(200):
            if uplink_states(doc) == ["waiting"]:
                break
            await asyncio.sleep(0.02)
            doc = await fleet.status()
        assert uplink_states(doc) == ["waiting"]
        applied_at = remote.RemoteState(fleet.data_dir).pending["applied_at"]  # type: ignore[index]

        clock.advance(61)  # past the 60 s window: the uplink still waits on its delay (3039 s)
        await fleet.tick(clock())
        pending = remote.RemoteState(fleet.data_dir).pending
        assert pending is not None and pending.get("rolling_back") is None
        assert [s for s, _, _ in steps_of(tmp_path)] == ["verified", "applied"]
        assert path.read_text() == fixed
        # the window counts from the delay's end, which is at most start_delay_max_s after the apply: that
        # bound is written once (test_remote_start_delay_writes.py), the delay's end is judged in memory
        assert pending["deadline"] == pytest.approx(applied_at + 3600 + 60, abs=1e-6)

        # bounded: still waiting once the longest delay and the window after it are over, it is judged
        clock.now = applied_at + 3600 + 60
        await fleet.tick(clock())
        await until(lambda: settled(1))
        assert [s for s, _, _ in steps_of(tmp_path)][-2:] == ["rolling_back", "rolled_back"]


def test_only_an_uplink_waiting_with_nothing_delivered_since_the_apply_is_held_by_its_start_delay() -> None:
    delays = {"a": 3600.0, "b": 5.0}
    at = 1000.0

    def doc(*uplinks: tuple[str, str, float]) -> dict[str, object]:
        return {"uplinks": [{"name": n, "state": s, "last_delivery": d} for n, s, d in uplinks]}

    assert remote.start_delay_held(doc(("a", "waiting", 0.0)), at, delays) == 3600.0
    assert remote.start_delay_held(doc(("a", "waiting", 0.0), ("b", "waiting", 0.0)), at, delays) == 3600.0
    assert remote.start_delay_held(doc(("b", "waiting", 999.0)), at, delays) == 5.0
    # delivered since the apply (the drain rate's pace is `waiting` too): judged as usual
    assert remote.start_delay_held(doc(("a", "waiting", 1001.0)), at, delays) == 0.0
    # failing or sending is no start delay
    assert remote.start_delay_held(doc(("a", "backing-off", 0.0), ("b", "sending", 0.0)), at, delays) == 0.0
    # an uplink the running config does not name (status of another generation): no delay known
    assert remote.start_delay_held(doc(("c", "waiting", 0.0)), at, delays) == 0.0

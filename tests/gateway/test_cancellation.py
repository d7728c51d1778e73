"""A cancellation is never lost: not to a task that takes its time to end, not to an event set at the same moment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cancellation import cancel_and_wait, event_set_within

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop_name: str, main: Callable[[], object]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())  # type: ignore[arg-type]


async def child(cleanup_rounds: int, *, swallow: bool = False) -> str:
    """A task that takes `cleanup_rounds` loop turns to end when cancelled (a transport closing, a lock let go)."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        for _ in range(cleanup_rounds):
            await asyncio.sleep(0)
        if swallow:
            return "ended anyway"
        raise
    return "never"


@pytest.mark.parametrize("loop_name", LOOPS)
@settings(max_examples=80, deadline=None)
@given(cleanup_rounds=st.integers(0, 6), cancel_after=st.integers(0, 8), swallow=st.booleans())
def test_the_callers_cancellation_is_raised_whenever_it_lands(
    loop_name: str, cleanup_rounds: int, cancel_after: int, swallow: bool
) -> None:
    # the Modbus adapter's stop, in small: the caller cancels a child it started and waits for it, and is
    # itself cancelled after `cancel_after` loop turns, before, while or after the child ends
    async def main() -> None:
        stopped = asyncio.Event()

        async def caller() -> str:
            task = asyncio.create_task(child(cleanup_rounds, swallow=swallow))
            await asyncio.sleep(0)  # the child is waiting
            await cancel_and_wait(task)
            stopped.set()
            await asyncio.Event().wait()  # an adapter's next poll: only a cancellation ends it
            return "ran on"

        outer = asyncio.create_task(caller())
        for _ in range(cancel_after):
            await asyncio.sleep(0)
        outer.cancel()
        done, _ = await asyncio.wait({outer}, timeout=2.0)
        assert done == {outer}, "the caller ran on after it was cancelled"
        assert outer.cancelled()

    run(loop_name, main)


async def test_a_caller_cancelled_in_its_finally_ends_cancelled_and_the_child_has_ended() -> None:
    task = asyncio.create_task(child(3))
    ended: list[bool] = []

    async def caller() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await cancel_and_wait(task)
            ended.append(task.done())

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert ended == [True]
    assert task.cancelled()


async def test_a_child_that_failed_has_its_failure_raised_to_the_caller() -> None:
    async def failing() -> None:
        raise ValueError("the unit answered nonsense")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="answered nonsense"):
        await cancel_and_wait(task)


async def test_cancelling_a_task_that_ended_returns_at_once() -> None:
    async def quick() -> int:
        return 7

    task = asyncio.create_task(quick())
    await task
    await cancel_and_wait(task)
    assert task.result() == 7


async def test_an_event_set_within_the_time_is_true_and_one_never_set_is_false() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await event_set_within(event, 5.0) is True
    assert await event_set_within(asyncio.Event(), 0.02) is False
    assert await event_set_within(event, 0) is True  # already set: no wait at all
    assert await event_set_within(asyncio.Event(), -1.0) is False  # a deadline already past


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_cancellation_that_lands_as_the_event_is_set_is_raised(loop_name: str) -> None:
    # the bus's sleep is woken (a command to write) in the same loop turn the gateway stops it:
    # asyncio.wait_for returned True here on Python 3.11, and the bus polled on
    async def main() -> None:
        event = asyncio.Event()
        polls = 0

        async def bus() -> None:
            nonlocal polls
            while True:
                await event_set_within(event, 60.0)
                event.clear()
                polls += 1

        task = asyncio.create_task(bus())
        await asyncio.sleep(0)  # the bus waits
        event.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done == {task}, f"the bus ran on after it was cancelled ({polls} polls)"
        assert task.cancelled()

    run(loop_name, main)


def test_no_module_takes_a_cancellation_for_its_childs_by_hand() -> None:
    # the idiom cancel_and_wait replaces; ruff's TID251 keeps asyncio.wait_for out the same way
    root = Path(__file__).resolve().parents[2]
    found = [
        f"{path.relative_to(root)}:{n}"
        for top in ("gateway", "adapters")
        for path in sorted((root / top).rglob("*.py"))
        if path.name != "cancellation.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "suppress(asyncio.CancelledError" in line or "suppress(CancelledError" in line
    ]
    assert found == [], "use gateway.cancellation.cancel_and_wait: " + ", ".join(found)

"""The infrared debounce (adapters/locker/emptied.py) against an oracle written from its rule, over any readings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.locker.emptied import EMPTIED_STATUSES, EmptiedWatch

N = EMPTIED_STATUSES
LOCKED_OCCUPIED, LOCKED_EMPTY = (True, True), (True, False)

# (door locked, occupied: None on a board without sensors); the door mostly locked, as in a locker
readings = st.lists(
    st.tuples(st.sampled_from([True, True, True, False]), st.sampled_from([True, False, None])), max_size=60
)


def fires_at(history: list[tuple[bool, bool | None]], i: int) -> bool:
    """The rule: read occupied behind the locked door, then empty behind it for N statuses, this one the Nth."""
    return i >= N and history[i - N] == LOCKED_OCCUPIED and all(r == LOCKED_EMPTY for r in history[i - N + 1 : i + 1])


@settings(max_examples=400)
@given(readings)
def test_emptied_exactly_when_the_empty_reading_held(history: list[tuple[bool, bool | None]]) -> None:
    watch = EmptiedWatch()
    alerted_since_open = False
    for i, (locked, occupied) in enumerate(history):
        now = 100.0 + i
        fired = watch.status(locked=locked, occupied=occupied, now=now)
        assert fired == fires_at(history, i), (i, history[: i + 1])
        if not locked:
            alerted_since_open = False
        if fired:
            assert watch.since == now - (N - 1)  # the run's first status
            assert watch.alert_due() is not alerted_since_open
            alerted_since_open = True
        run_under_way = any(
            history[j] == LOCKED_OCCUPIED and all(r == LOCKED_EMPTY for r in history[j + 1 : i + 1])
            for j in range(max(0, i - N + 1), i)  # a run 1 .. N-1 statuses long
        )
        assert watch.settling == run_under_way


def test_a_flicker_of_single_statuses_never_counts() -> None:
    watch = EmptiedWatch()
    fired = [watch.status(locked=True, occupied=k % 2 == 0, now=k) for k in range(200)]
    assert not any(fired)


def test_a_long_flicker_behind_the_shut_door_alerts_once_until_the_door_opens() -> None:
    watch = EmptiedWatch()

    def alerts(sensor: list[bool]) -> list[bool]:
        """`alert_due` at each emptying the door-shut readings `sensor` make."""
        return [watch.alert_due() for occupied in sensor if watch.status(locked=True, occupied=occupied, now=0.0)]

    assert alerts(([True] * N + [False] * N) * 6) == [True] + [False] * 5
    watch.status(locked=False, occupied=True, now=0.0)  # staff look in
    assert alerts([True] + [False] * N) == [True]


def test_nothing_is_inferred_after_the_state_was_unknown() -> None:
    watch = EmptiedWatch()
    watch.status(locked=True, occupied=True, now=0.0)
    watch.forget()  # the board offline: the door may have opened meanwhile
    assert not any(watch.status(locked=True, occupied=False, now=t) for t in range(2 * N))

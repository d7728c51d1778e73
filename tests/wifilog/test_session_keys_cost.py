"""The id key of a sent session event costs one lookup digest, however many periods are live.

`session_keys` runs for every event sent to the platform, under the store's lock that the receivers' commits wait
for; probing every live period's digest made it grow with `retention_months` (up to 121 live periods). The
digests are counted by wrapping the period keys' own digest (the real one still runs), and the keys compared
with those a store made anew finds by probing every period: the ids must not change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.runner import PENDING_LIMIT, SESSION_EVENT_ID
from gateway.wifilog.store import JST, REMEMBERED, _PeriodKeys

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LIVE_PERIODS = 13  # a year's retention


class Digests:
    """Counts the lookup digests the store computes while `counting`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.counting = False
        real = _PeriodKeys.session_index

        def session_index(keys: _PeriodKeys, pair: bytes) -> bytes:
            self.count += self.counting
            return real(keys, pair)

        monkeypatch.setattr(_PeriodKeys, "session_index", session_index)

    @contextmanager
    def during(self) -> Iterator[None]:
        self.count, self.counting = 0, True
        try:
            yield
        finally:
            self.counting = False


def start(sid: str, t: datetime, **kw: object) -> SessionEvent:
    return SessionEvent(nas="wlc1", session_id=sid, kind=EventKind.START, time=t, **kw)  # type: ignore[arg-type]


def stop(sid: str, t: datetime) -> SessionEvent:
    return SessionEvent(nas="wlc1", session_id=sid, kind=EventKind.STOP, time=t)  # no session time: a syslog leave


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WifiLogStore]:
    store = WifiLogStore(tmp_path)
    # one session in each of a year's periods, so that every one of them is live
    store.apply([start(f"seed{m}", NOW - timedelta(days=31 * m)) for m in range(LIVE_PERIODS)])
    assert len(store.stats()["sessions_per_period"]) == LIVE_PERIODS
    yield store
    store.close()


def keys_probing_every_period(data_dir: Path, sessions: list[tuple[str, str]]) -> list[bytes | None]:
    """The keys as a store that stored none of the sessions finds them (after a restart)."""
    fresh = WifiLogStore(data_dir)
    try:
        return fresh.session_keys(SESSION_EVENT_ID, sessions)
    finally:
        fresh.close()


def test_the_id_key_of_a_stored_event_costs_one_digest(
    store: WifiLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = Digests(monkeypatch)
    new = [start(f"S{i}", NOW + timedelta(seconds=i), client_mac="aa:bb:cc:00:00:01") for i in range(20)]
    store.apply(new)
    sessions = [(ev.nas, ev.session_id) for ev in new]
    with digests.during():
        keys = store.session_keys(SESSION_EVENT_ID, sessions)
    assert digests.count == len(sessions)  # not one per live period (13 each)
    assert None not in keys and keys == keys_probing_every_period(tmp_path, sessions)
    # their Stops: the same keys, one digest each again
    store.apply([stop(ev.session_id, ev.time + timedelta(minutes=5)) for ev in new])
    with digests.during():
        assert store.session_keys(SESSION_EVENT_ID, sessions) == keys
    assert digests.count == len(sessions)


def test_a_stop_in_the_next_month_costs_one_digest_and_keeps_its_start_s_key(
    store: WifiLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = Digests(monkeypatch)
    november = datetime(2026, 11, 30, 23, 50, tzinfo=JST)
    store.apply([start("late", november)])
    [key] = store.session_keys(SESSION_EVENT_ID, [("wlc1", "late")])
    # the Stop carries no session time: its own time says December, its session is November's
    store.apply([stop("late", november + timedelta(minutes=20))])
    with digests.during():
        assert store.session_keys(SESSION_EVENT_ID, [("wlc1", "late")]) == [key]
    assert digests.count == 1
    assert keys_probing_every_period(tmp_path, [("wlc1", "late")]) == [key] and key is not None


def test_a_stop_before_its_start_keeps_one_key(
    store: WifiLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the Stop, stored first, made the session December's; its Start (November) merges into that row
    december = datetime(2026, 12, 1, 0, 10, tzinfo=JST)
    store.apply([stop("reordered", december)])
    [key] = store.session_keys(SESSION_EVENT_ID, [("wlc1", "reordered")])
    store.apply([start("reordered", december - timedelta(minutes=30))])
    digests = Digests(monkeypatch)
    with digests.during():
        assert store.session_keys(SESSION_EVENT_ID, [("wlc1", "reordered")]) == [key]
    assert digests.count == 1
    assert keys_probing_every_period(tmp_path, [("wlc1", "reordered")]) == [key] and key is not None


def test_a_session_another_store_wrote_or_none_wrote_is_still_found_or_not(store: WifiLogStore, tmp_path: Path) -> None:
    # the other receiver's store on the same file: its sessions are found by probing every live period
    other = WifiLogStore(tmp_path)
    try:
        other.apply([start("theirs", NOW)])
        [theirs] = other.session_keys(SESSION_EVENT_ID, [("wlc1", "theirs")])
    finally:
        other.close()
    assert store.session_keys(SESSION_EVENT_ID, [("wlc1", "theirs"), ("wlc1", "never")]) == [theirs, None]
    assert theirs is not None


def test_the_remembered_periods_are_bounded_and_a_forgotten_one_is_probed(
    store: WifiLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as many as the session events' queue holds: a full queue's events cost one digest each
    assert REMEMBERED >= PENDING_LIMIT
    # sessions no longer remembered (more than that, or stored before a restart): found all the same
    many = [start(f"S{i}", NOW + timedelta(seconds=i)) for i in range(REMEMBERED + 1)]
    for i in range(0, len(many), 256):
        store.apply(many[i : i + 256])
    digests = Digests(monkeypatch)
    oldest, newest = ("wlc1", "S0"), ("wlc1", f"S{REMEMBERED}")
    with digests.during():
        keys = store.session_keys(SESSION_EVENT_ID, [oldest, newest])
    assert digests.count == LIVE_PERIODS + 1
    assert keys == keys_probing_every_period(tmp_path, [oldest, newest]) and None not in keys

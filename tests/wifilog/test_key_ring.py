"""The KEK ring shared by every store on one data dir, and the data keys a store caches: no key lost, none brought back.

The radius and syslog receivers each open a `WifiLogStore` on the same data dir (the CLI and the web
UI too), and each runs `expire`: the first session of a month (a key added) and the erasure of an
old month (a key destroyed) happen at the same moment, and neither may undo the other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier, Event
from typing import Any

import pytest

from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogStore
from gateway.wifilog.store import JST, KEYS_SECRET

MARCH = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)  # noon on 1 May in Tokyo: March is past one month's retention


def start(t: datetime, sid: str, n: int, **kw: object) -> SessionEvent:
    mac = f"aa:bb:cc:00:00:{n:02x}"
    return SessionEvent(nas="id:ap1", session_id=sid, kind=EventKind.START, time=t, client_mac=mac, **kw)  # type: ignore[arg-type]


def found(store: WifiLogStore, n: int) -> list[str]:
    return [s.session_id for s in store.search(Query(mac=f"aa:bb:cc:00:00:{n:02x}"))]


def ring(data_dir: Path) -> list[str]:
    return sorted(json.loads(SecretStore(data_dir).get(KEYS_SECRET)))


def test_new_months_keys_made_while_another_store_erases_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    radius, syslog = WifiLogStore(tmp_path, retention_months=1), WifiLogStore(tmp_path, retention_months=1)
    radius.apply([start(MARCH, "march", 1)])
    months = iter([NOW, datetime(2026, 6, 2, tzinfo=JST), datetime(2026, 7, 3, tzinfo=JST)])
    stored: list[tuple[str, int]] = []
    read = syslog.secrets.get

    def reading(name: str) -> str:
        # each time the erasing store has read the ring, the other stores the first session of a new month
        # (and answers the NAS) before the erasing store writes: the old code wrote its copy back over it
        value = read(name)
        if name == KEYS_SECRET and (t := next(months, None)) is not None:
            n = 2 + len(stored)
            radius.apply([start(t, f"new{n}", n)])
            stored.append((f"new{n}", n))
        return value

    monkeypatch.setattr(syslog.secrets, "get", reading)
    [cert] = syslog.expire(NOW)
    assert cert["period"] == "2026-03" and stored
    radius.close()
    syslog.close()
    again = WifiLogStore(tmp_path, retention_months=1)  # after a restart, from the secret store alone
    for sid, n in stored:
        assert found(again, n) == [sid]
    assert again.expire(NOW) == []  # no current month taken for erased
    assert [c["period"] for c in again.certificates()] == ["2026-03"]
    assert ring(tmp_path) == ["2026-05", "2026-06", "2026-07"][: len(stored)]


def test_a_key_made_while_another_store_erases_does_not_bring_back_the_erased_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    radius, syslog = WifiLogStore(tmp_path, retention_months=1), WifiLogStore(tmp_path, retention_months=1)
    radius.apply([start(MARCH, "march", 1)])
    destroyed = Event()

    def signalling(write: Callable[..., Any]) -> Callable[..., Any]:
        def writing(*args: Any, **kw: Any) -> Any:
            result = write(*args, **kw)
            destroyed.set()
            return result

        return writing

    for method in ("set", "update"):  # whichever way the erasing store writes the secret store
        monkeypatch.setattr(syslog.secrets, method, signalling(getattr(syslog.secrets, method)))
    erasing: list[Future[list[dict[str, Any]]]] = []
    read = radius.secrets.get

    def reading(name: str) -> str:
        # the erasure destroys March's key between the adding store's reading of the ring and its
        # writing (the erasure's own transaction then waits for the adding store's batch)
        value = read(name)
        if name == KEYS_SECRET and not erasing:
            erasing.append(pool.submit(syslog.expire, NOW))
            assert destroyed.wait(30)
        return value

    monkeypatch.setattr(radius.secrets, "get", reading)
    with ThreadPoolExecutor(1) as pool:
        radius.apply([start(NOW, "may", 2)])
        certs = erasing[0].result(timeout=60) if erasing else syslog.expire(NOW)
    assert [c["period"] for c in certs] == ["2026-03"]
    assert ring(tmp_path) == ["2026-05"]  # March's key, certified destroyed, stays destroyed
    radius.close()
    syslog.close()
    again = WifiLogStore(tmp_path, retention_months=1)
    assert found(again, 2) == ["may"] and found(again, 1) == []
    assert again.expire(NOW) == [] and [c["period"] for c in again.certificates()] == ["2026-03"]


def test_two_stores_adding_and_erasing_keys_at_once_lose_none(tmp_path: Path) -> None:
    old = [datetime(2024, m, 10, tzinfo=UTC) for m in range(1, 9)]
    new = [datetime(2026, m, 10, tzinfo=UTC) for m in range(1, 9)]
    first = WifiLogStore(tmp_path, retention_months=1)
    first.apply([start(t, f"old{i}", i) for i, t in enumerate(old)])
    first.close()
    radius, syslog = WifiLogStore(tmp_path, retention_months=1), WifiLogStore(tmp_path, retention_months=1)
    together = Barrier(2)

    def adding() -> None:
        together.wait()
        for i, t in enumerate(new):
            radius.apply([start(t, f"new{i}", 100 + i)])

    def erasing() -> list[dict[str, object]]:
        together.wait()
        return syslog.expire(datetime(2025, 6, 1, tzinfo=JST))

    with ThreadPoolExecutor(2) as pool:
        added, certs = pool.submit(adding), pool.submit(erasing)
        added.result(timeout=120)
        assert len(certs.result(timeout=120)) == len(old)
    radius.close()
    syslog.close()
    assert ring(tmp_path) == [f"2026-{m:02d}" for m in range(1, 9)]
    again = WifiLogStore(tmp_path, retention_months=1)
    assert all(found(again, 100 + i) == [f"new{i}"] for i in range(len(new)))
    assert [c["period"] for c in again.certificates()] == [f"2024-{m:02d}" for m in range(1, 9)]
    assert again.expire(datetime(2025, 6, 1, tzinfo=JST)) == []


def test_a_batch_rolled_back_after_its_period_key_was_made_caches_no_key(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path, retention_months=3)
    store.apply([start(MARCH, "march", 1)])
    # the disk is full: sqlite may not grow the file by a page, and a long SSID needs overflow pages
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    may = start(NOW, "may1", 2, ssid="x" * 8000)
    with pytest.raises(sqlite3.OperationalError) as failed:
        store.apply([may])  # May's key was made in this batch, then its `periods` row rolled back
    # sqlite rolls a full-disk transaction back itself: the error raised is that one, not a failed ROLLBACK
    assert "database or disk is full" in str(failed.value)
    assert not store._db.in_transaction
    store._db.execute("PRAGMA max_page_count = 1073741823")  # room again
    store.apply([may])  # the NAS retransmits: stored under a key the database holds wrapped
    assert found(store, 2) == ["may1"]
    store.apply([start(NOW + timedelta(days=1), "may2", 3)])
    day = Query(time_from=NOW, time_to=NOW + timedelta(days=2))
    assert [s.session_id for s in store.search(day)] == ["may1", "may2"]
    store.close()
    again = WifiLogStore(tmp_path, retention_months=3)
    assert [s.session_id for s in again.search(day)] == ["may1", "may2"] and found(again, 2) == ["may1"]
    assert ring(tmp_path) == ["2026-03", "2026-05"]


def test_a_new_session_of_a_period_whose_key_is_destroyed_but_rows_not_yet_erased_is_forgotten(tmp_path: Path) -> None:
    first = WifiLogStore(tmp_path, retention_months=1)
    first.apply([start(MARCH, "march", 1)])
    first.close()
    # a crash between `expire`'s two steps: March's key destroyed, its rows not yet deleted
    SecretStore(tmp_path).update(
        KEYS_SECRET, lambda text: json.dumps({p: e for p, e in json.loads(text or "{}").items() if p != "2026-03"})
    )
    store = WifiLogStore(tmp_path, retention_months=1)
    store.apply([start(MARCH + timedelta(hours=1), "late", 2)])  # stopped the batch (an assertion) before
    assert store.stats()["sessions_per_period"] == {"2026-03": 1}
    [cert] = store.expire(MARCH + timedelta(days=1))  # the next expire finishes the erasure
    assert (cert["period"], cert["records"]) == ("2026-03", 1)

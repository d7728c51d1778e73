"""The Wi-Fi pages never run the log's SQLite on the event loop, nor wait there for a search to end.

The handlers closed the store on the loop, and close() waits for the worker thread's search (the store
serialises its connection under a lock): a client that went away mid-search (aiohttp cancels its handler)
stalled every other user's page for the rest of that search. The overview (certificates, counts) was also
read on the loop, and a store opened for a handler cancelled while opening it stayed open until the garbage
collector found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from gateway.accounts.store import Role
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog import store as wifilog_store
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.web.conftest import WebEnv, csrf_token, login, post_form
from tests.web.test_wifi_pages import MAC
from tests.web.test_wifi_pages import filled as filled

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
# enough rows that an inquiry over a day they all ended before scans for about half a second here
SESSIONS = 400_000
SEARCH = {"reference": "R-5", "time_from": "2026-01-20T00:00", "time_to": "2026-01-21T00:00"}


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a log of SESSIONS sessions of January, none in SEARCH's range: made once.

    One session written by the gateway's own writer, then copied in SQL under new session ids (the writer
    seals each session on its own, about 40 µs apiece). The copies' blobs do not open under their new ids
    (the id is the seal's associated data), which SEARCH never asks of them: they all end before its range.
    """
    data = tmp_path_factory.mktemp("big-log")
    store = WifiLogStore(data)
    store.publish_public_key()  # the signing key, which a reader's inquiry key derives from
    store.apply(
        [SessionEvent(nas="id:ap1", session_id="s0", kind=EventKind.STOP, time=T0, session_time=60, client_mac=MAC)]
    )
    store.close()
    db = sqlite3.connect(data / STORE_DIR / DB_FILE, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")  # one bulk transaction; the writer turns WAL on again
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' AND sql IS NOT NULL"
        ).fetchall()
        db.execute("BEGIN")
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")  # built once after the rows: far quicker than row by row
        # starts scattered over the days before (7919 is prime to SESSIONS): rows in start order lie
        # apart in the file, as a real log's interleaved access points leave them
        db.execute(
            f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SESSIONS - 1})
            INSERT INTO sessions (period, nas, session_id, start, end_at, open, mac_idx, ip_idx, user_idx, blob)
            SELECT period, nas, 'c' || i, start - i * 7919 % {SESSIONS}, end_at - i * 7919 % {SESSIONS}, 0,
                   mac_idx, ip_idx, user_idx, blob
            FROM n, (SELECT * FROM sessions WHERE session_id = 's0')"""
        )
        for _, sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
    finally:
        db.close()
    WifiLogStore(data).close()  # back in WAL, as the gateway keeps it
    return data


@pytest.fixture
def big(web_env: WebEnv, big_log: Path) -> WebEnv:
    data = web_env.state_dir.parent
    for secret in big_log.glob("secrets.*"):
        shutil.copy2(secret, data / secret.name)
    # linked, not copied: a reader opens the file read-only, and its -wal and -shm are made here
    shutil.copytree(big_log / STORE_DIR, data / STORE_DIR, copy_function=os.link)
    return web_env


def _open_files(path: Path) -> int:
    """How many descriptors of this process (the test's and the server's) have `path` open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since the listing
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.005)


class LagProbe:
    """How late the loop wakes a task that sleeps 10 ms at a time: how long something held the loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._asleep_since = self._loop.time()
        self._worst = 0.0
        self._task = asyncio.create_task(self._run())

    def _late(self) -> float:
        return self._loop.time() - self._asleep_since - 0.01

    async def _run(self) -> None:
        while True:
            self._asleep_since = self._loop.time()
            await asyncio.sleep(0.01)
            self._worst = max(self._worst, self._late())

    async def stop(self) -> float:
        """The worst lateness, counting the sleep under way: its wake-up may be due but not yet run."""
        worst = max(self._worst, self._late())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return worst


@pytest.mark.parametrize(("path", "action"), [("/wifi/search", "wifi.search"), ("/wifi/export", "wifi.export")])
async def test_a_search_whose_client_went_away_neither_stalls_the_loop_nor_leaves_the_log_open(
    big: WebEnv, path: str, action: str
) -> None:
    db = big.state_dir.parent / STORE_DIR / DB_FILE
    big.add_user("auditor", Role.WIFI_AUDITOR)
    await login(big.client, "auditor")
    token = await csrf_token(big.client, "/wifi")
    assert _open_files(db) == 0
    loop = asyncio.get_running_loop()
    probe = LagProbe()
    request = asyncio.create_task(big.client.post(path, data={"csrf_token": token, **SEARCH}, allow_redirects=False))
    await _until(lambda: _open_files(db) > 0, 10, "the handler opened the log")
    await asyncio.sleep(0.15)  # it is searching now: the search takes about half a second
    request.cancel()  # the browser goes away: aiohttp cancels the handler (handler_cancellation)
    gone = loop.time()
    await _until(lambda: _open_files(db) == 0, 30, "the cancelled handler's store closed")
    still_searching = loop.time() - gone
    worst = await probe.stop()
    assert request.cancelled()
    assert not big.entries(action), "the handler was not cancelled mid-search: it finished and audited"
    assert still_searching > 0.2, f"the search ended {still_searching:.3f} s after the client left: nothing tested"
    # the loop went on while the worker thread finished the search and closed the store
    assert worst < still_searching / 3, f"loop held {worst:.3f} s of the search's last {still_searching:.3f} s"
    page = await big.client.get("/wifi")
    assert page.status == 200  # and the pages go on reading the log


async def test_a_page_whose_client_went_away_while_the_log_opened_leaves_it_closed(filled: WebEnv) -> None:
    """Opening waits on SQLite's busy timeout while another connection holds the file in exclusive locking
    mode (a maintenance tool's); the browser gives up meanwhile. The store its thread opens after is closed,
    not left to the garbage collector (switched off here: the cycle collector runs when it pleases)."""
    db = filled.state_dir.parent / STORE_DIR / DB_FILE
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    holder = sqlite3.connect(db, isolation_level=None)
    gc.disable()
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM certificates WHERE 0")  # changes nothing; the lock stays after the commit
        holder.execute("COMMIT")
        request = asyncio.create_task(filled.client.get("/wifi"))
        await _until(lambda: _open_files(db) == 2, 5, "the handler's thread opening the log")
        request.cancel()
        await asyncio.sleep(0.2)  # the server sees the connection gone and cancels the handler
        holder.close()  # the thread's open goes on: its busy handler finds the file free
        await _until(lambda: _open_files(db) == 0, 5, "the store opened for the cancelled handler closed")
    finally:
        holder.close()
        gc.enable()
    assert request.cancelled()
    assert (await filled.client.get("/wifi")).status == 200


def _store_calls_on_this_thread() -> tuple[list[str], Callable[[], None]]:
    """The WifiLogStore methods called on this thread (the event loop's) until the returned stop is called.

    A profile hook only observes: it sees every call this thread makes, and none of the worker threads'."""
    calls: list[str] = []
    store_file = wifilog_store.__file__

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename == store_file and code.co_qualname.startswith("WifiLogStore."):
            calls.append(code.co_qualname)

    sys.setprofile(profile)
    return calls, lambda: sys.setprofile(None)


async def test_no_page_reads_or_closes_the_log_on_the_event_loop(filled: WebEnv) -> None:
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    token = await csrf_token(filled.client, "/wifi")
    calls, stop = _store_calls_on_this_thread()
    try:
        page = await filled.client.get("/wifi")
        assert page.status == 200 and "2025-11" in await page.text()
        data = {"csrf_token": token, "mac": MAC}
        r = await filled.client.post("/wifi/search", data={**data, "reference": ""}, allow_redirects=False)
        assert r.status == 400 and "照会番号を入力してください" in await r.text()
        r = await filled.client.post("/wifi/search", data={**data, "time_from": "yesterday", "reference": "R-1"})
        assert r.status == 400
        r = await filled.client.post("/wifi/search", data={**data, "reference": "R-1"}, allow_redirects=False)
        assert r.status == 200 and "10.0.0.5" in await r.text()
        r = await filled.client.post("/wifi/export", data={**data, "reference": "R-2"}, allow_redirects=False)
        assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
        assert (await filled.client.get("/wifi/certificates/2025-11.json")).status == 200
        assert (await filled.client.get("/wifi/certificates/2025-12.json")).status == 404
    finally:
        stop()
    assert calls == []
    assert [e.action for e in filled.entries("wifi.search") + filled.entries("wifi.export")] == [
        "wifi.search",
        "wifi.export",
    ]


async def test_a_log_that_cannot_be_read_still_says_why(web_env: WebEnv) -> None:
    web_env.add_user("auditor", Role.WIFI_AUDITOR)
    await login(web_env.client, "auditor")
    page = await web_env.client.get("/wifi")  # no gateway ever made the log here
    assert page.status == 503 and "no such file" in await page.text()
    r = await post_form(web_env.client, "/wifi/search", {"reference": "R-1", "mac": MAC}, token_from="/wifi")
    assert r.status == 503
    assert (await web_env.client.get("/wifi/certificates/2025-11.json")).status == 503

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
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from gateway.accounts.store import Role
from gateway.wifilog import Query, WifiLogStore
from gateway.wifilog import store as wifilog_store
from gateway.wifilog.sessions import Session
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.web.conftest import WebEnv, csrf_token, login, post_form
from tests.web.test_wifi_pages import MAC
from tests.web.test_wifi_pages import filled as filled

HOLD = 0.5  # the search held after its client left: far longer than the loop may lag on a busy machine


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


class HeldSearch:
    """The real search, held inside its store's lock (where close() waits for it, as for a long search) until HOLD
    after a handler began closing that store: the search's length is then the test's, not the machine's.

    Instrumentation, not a stand-in: the search runs, held at its first period's keys (taken under the lock).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.held = threading.Event()  # the search is inside the store's lock, waiting for its release
        self.closing = threading.Event()  # then a handler's store began closing: the handler ended
        self.released_at = self.closed_at = float("nan")  # not yet: compares false
        self._release = threading.Event()
        self._timer: threading.Timer | None = None
        self._searching = threading.local()
        search, period_keys, close = WifiLogStore.search, WifiLogStore._period_keys, WifiLogStore.close

        def held_search(store: WifiLogStore, query: Query) -> list[Session]:
            self._searching.on = True
            try:
                return search(store, query)
            finally:
                self._searching.on = False

        def held_period_keys(store: WifiLogStore, *args: Any, **kwargs: Any) -> Any:
            if getattr(self._searching, "on", False) and not self.held.is_set():
                self.held.set()
                self._release.wait(10)  # bounded: a test that went wrong leaves no thread waiting for ever
            return period_keys(store, *args, **kwargs)

        def timed_close(store: WifiLogStore) -> None:
            # timed from a thread of its own: a close on the loop (the old code's) holds the test's loop too
            cancelled_handlers = self.held.is_set() and not self.closing.is_set()
            if cancelled_handlers:
                self.closing.set()
                self._timer = threading.Timer(HOLD, self.release)
                self._timer.start()
            close(store)
            if cancelled_handlers:
                self.closed_at = time.monotonic()

        monkeypatch.setattr(WifiLogStore, "search", held_search)
        monkeypatch.setattr(WifiLogStore, "_period_keys", held_period_keys)
        monkeypatch.setattr(WifiLogStore, "close", timed_close)

    def release(self) -> None:
        if not self._release.is_set():
            self.released_at = time.monotonic()
            self._release.set()

    def stop(self) -> None:
        self.release()
        if self._timer is not None:
            self._timer.cancel()


@pytest.fixture
def held_search(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSearch]:
    held = HeldSearch(monkeypatch)
    yield held
    held.stop()


@pytest.mark.parametrize(("path", "action"), [("/wifi/search", "wifi.search"), ("/wifi/export", "wifi.export")])
async def test_a_search_whose_client_went_away_neither_stalls_the_loop_nor_leaves_the_log_open(
    filled: WebEnv, held_search: HeldSearch, path: str, action: str
) -> None:
    db = filled.state_dir.parent / STORE_DIR / DB_FILE
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    token = await csrf_token(filled.client, "/wifi")
    assert _open_files(db) == 0
    form = {"csrf_token": token, "reference": "R-5", "mac": MAC}
    request = asyncio.create_task(filled.client.post(path, data=form, allow_redirects=False))
    await _until(held_search.held.is_set, 5, "the handler's search began")
    probe = LagProbe()
    request.cancel()  # the browser goes away: aiohttp cancels the handler (handler_cancellation)
    await _until(held_search.closing.is_set, 5, "the server cancelled the handler, which began closing its store")
    await _until(lambda: _open_files(db) == 0, 5 + HOLD, "the cancelled handler's store closed")
    worst = await probe.stop()
    assert request.cancelled()
    assert not filled.entries(action), "the handler was not cancelled mid-search: it finished and audited"
    assert held_search.closed_at >= held_search.released_at, "the close did not wait for the search: nothing tested"
    # the loop went on while a worker thread waited for the search to end, then closed the store
    assert worst < 0.1, f"loop held {worst:.3f} s of the search's {HOLD} s after its client left"
    page = await filled.client.get("/wifi")
    assert page.status == 200  # and the pages go on reading the log


def _connections(env: WebEnv) -> set[object]:
    """The server's connections: aiohttp lets one go as it sees the client gone, and in the same step asks its
    handler to stop (cancels it); the handler's own end is then seen by what it reads or closes."""
    runner = env.server.runner
    assert runner is not None and runner.server is not None
    return set(runner.server.connections)


async def test_a_page_whose_client_went_away_while_the_log_opened_leaves_it_closed(
    filled: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening waits on SQLite's busy timeout while another connection holds the file in exclusive locking
    mode (a maintenance tool's); the browser gives up meanwhile. The store its thread opens after is closed,
    not left to the garbage collector (switched off here: the cycle collector runs when it pleases)."""
    db = filled.state_dir.parent / STORE_DIR / DB_FILE
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    read: list[str] = []  # the page's reads of the log: a handler that got to them was not cancelled
    closed = threading.Event()
    certificates, close = WifiLogStore.certificates, WifiLogStore.close

    def recorded_certificates(store: WifiLogStore) -> list[dict[str, Any]]:
        read.append("certificates")
        return certificates(store)

    def recorded_close(store: WifiLogStore) -> None:
        close(store)
        closed.set()

    monkeypatch.setattr(WifiLogStore, "certificates", recorded_certificates)
    monkeypatch.setattr(WifiLogStore, "close", recorded_close)
    holder = sqlite3.connect(db, isolation_level=None)
    gc.disable()
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM certificates WHERE 0")  # changes nothing; the lock stays after the commit
        holder.execute("COMMIT")
        request = asyncio.create_task(filled.client.get("/wifi"))
        await _until(lambda: _open_files(db) == 2, 5, "the handler's thread opening the log")
        serving = _connections(filled)
        request.cancel()
        # within the busy timeout (10 s): a handler left running would still be waiting for the file here
        await _until(
            lambda: not serving <= _connections(filled), 5, "the server cancelled the handler that lost its client"
        )
        holder.close()  # the thread's open goes on: its busy handler finds the file free
        await _until(closed.is_set, 5, "the store opened for the cancelled handler closed")
    finally:
        holder.close()
        gc.enable()
    assert _open_files(db) == 0
    assert request.cancelled()
    assert read == [], "the handler was not cancelled while the log opened: it went on to read the page"
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

"""The adapters' stores are called from worker threads (`asyncio.to_thread`) and from the loop: one caller
at a time on their connection, and a close that waits for the caller still inside.

Found by a CI run that died of SIGSEGV: the locker adapter stopped (its task cancelled) while a pickup's
`event_sent` still ran in a worker thread, and `close()` on the loop freed SQLite's connection under the
worker's statement. The station store had no lock at all: two stations scanning at once interleaved their
transactions on its one connection ("cannot start a transaction within a transaction", and the failing
one's ROLLBACK undid the other's half-done scan).

The close is raced in a process of its own: on the old code it killed the process, which must not be pytest.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adapters.scanner.station import StationState
from adapters.scanner.store import StationStore

ROOT = str(Path(__file__).resolve().parents[2])

# The worker's write waits inside SQLite (its busy handler sleeping) on a lock another connection holds;
# the store is closed from a third thread meanwhile; then the lock is let go.
_CLOSE_DURING_CALL = """
import sqlite3, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
tmp = Path(sys.argv[2])
{setup}
holder = sqlite3.connect(path, isolation_level=None)
holder.execute("BEGIN IMMEDIATE")
said = []

def worker():
    try:
        call()
        said.append("done")
    except Exception as exc:
        said.append(f"{{type(exc).__name__}}: {{exc}}")

w = threading.Thread(target=worker)
w.start()
deadline = time.monotonic() + 10
while Path(f"/proc/self/task/{{w.native_id}}/syscall").read_text().split()[0] not in ("35", "230"):
    assert time.monotonic() < deadline, "the worker never waited inside SQLite"
    time.sleep(0.01)
closer = threading.Thread(target=store.close)
closer.start()
time.sleep(0.3)
holder.execute("COMMIT")
w.join(10)
closer.join(10)
try:
    call()
    said.append("called after close")
except Exception as exc:
    said.append(f"{{type(exc).__name__}}: {{exc}}")
print("|".join(said))
"""

_PICKUP = """
from adapters.locker.pickup import PickupStore
path = tmp / "locker-x.db"
store = PickupStore(path, clock=time.time)
a, _ = store.assign("A1", email="hanako@example.jp", reference="R-1", valid_s=3600)
call = lambda: store.event_sent(a.id)
"""

_STATION = """
from adapters.scanner.station import StationState
from adapters.scanner.store import StationStore
path = tmp / "stations.db"
store = StationStore(path)
call = lambda: store.record("desk", 1, 0, "loan", "accepted", ["urn:ngsi-ld:LibraryLoan:desk:1"], StationState())
"""


@pytest.mark.parametrize(
    ("setup", "closed"),
    [
        (_PICKUP, "PickupError: locker store {tmp}/locker-x.db: closed, the locker adapter has stopped; try again"),
        (_STATION, "StationStoreError: station store {tmp}/stations.db: closed, the scanner adapter has stopped"),
    ],
    ids=["locker", "station"],
)
def test_a_store_closed_while_a_worker_thread_is_inside_it_waits_for_that_call(
    tmp_path: Path, setup: str, closed: str
) -> None:
    script = _CLOSE_DURING_CALL.format(setup=setup)
    proc = subprocess.run(
        [sys.executable, "-c", script, ROOT, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    done, after = proc.stdout.strip().split("|")
    assert done == "done"  # the call in the worker finished and committed before the close
    assert after.startswith(closed.format(tmp=tmp_path))


def test_stations_recording_at_once_keep_every_scan_and_every_number(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "stations.db")
    stations, scans = ["desk", "outreach", "kids"], 150
    failed: list[str] = []
    numbers: dict[str, list[int]] = {s: [] for s in stations}
    start = threading.Barrier(len(stations))

    def desk(station: str) -> None:
        start.wait()
        for i in range(scans):
            try:
                n = store.reserve(station)
                numbers[station].append(n)
                state = StationState(shelf=f"shelf-{i}", shelf_count=i)
                store.record(station, n, i, "loan", "accepted", [f"urn:ngsi-ld:LibraryLoan:{station}:{n}"], state)
            except Exception as exc:  # what broke, for the assertion
                failed.append(f"{station}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=desk, args=(s,)) for s in stations]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert failed == []
        for station in stations:
            assert numbers[station] == list(range(1, scans + 1))
            assert [r.scan_no for r in store.recent(station, scans)] == numbers[station][::-1]
            assert store.load_state(station).shelf_count == scans - 1  # the last scan's state, whole
    finally:
        store.close()

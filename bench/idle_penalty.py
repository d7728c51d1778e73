"""What the same work costs after the thread idled for a while: the machine's wake-up penalty (issue 18).

The gateway at everyday rates does small pieces of work with idle gaps between them (a reading
every 2 ms at 500/s, a commit group every 60 ms, a delivery batch every 10 ms). How much such a
piece costs depends on the machine as much as on the code: after an idle gap its caches may hold
other processes' data, and a virtual CPU that halted has to be resumed. This measures the thread
CPU of two fixed pieces of the gateway's own work, back to back and after idle gaps:

- `encode`: 31 race readings (the 500/s commit group) through `encode_row` and `decode_reading`;
- `commit`: those 31 rows inserted and committed in the buffer's SQLite file (its pragmas,
  `full` durability: the commit's fsync is in it).

    .venv/bin/python bench/idle_penalty.py [--gaps 0,2,10,60] [--rounds 300]

Prints the median thread CPU of each piece per gap, and its ratio to the back-to-back figure.
Run it on the box itself to see how much of the race bench's CPU a reading at 500/s is this
machine's penalty rather than the gateway's code. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.buffer.config import Durability  # noqa: E402
from gateway.buffer.schema import open_database  # noqa: E402
from gateway.records import Lane, Source, TimeSource, decode_reading, encode_row, make_attribute, make_reading  # noqa: E402

GROUP = 31  # readings a commit group holds at 500/s (60 ms)
_INSERT = "INSERT INTO outbox (lane, entity_id, observed_us, appended_ms, size, body) VALUES (?, ?, ?, ?, ?, ?)"


def race_rows() -> list[tuple[int, str, int, int, int, bytes]]:
    now = datetime.now(UTC)
    rows = []
    for i in range(GROUP):
        r = make_reading(
            f"urn:ngsi-ld:Device:d{i:03d}",
            "Device",
            {
                "seq": make_attribute(i, "Number"),
                "t": make_attribute(1.5e9 + i, "Number"),
                "level": make_attribute(1.5, "Number"),
                "controlledProperty": make_attribute(["level"], "StructuredValue"),
            },
            now,
            TimeSource.GATEWAY,
            Source(adapter="race", device=f"d{i:03d}"),
            Lane.NORMAL,
        )
        body = encode_row(r)
        rows.append((int(Lane.NORMAL), r.entity_id, 0, 0, len(body), body))
    return rows


def measure(work: Callable[[], None], gap_s: float, rounds: int) -> float:
    clock = time.thread_time_ns
    costs = []
    for _ in range(rounds):
        t0 = clock()
        work()
        costs.append((clock() - t0) / 1e3)
        if gap_s:
            time.sleep(gap_s)
    return statistics.median(costs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaps", default="0,2,10,60", help="idle gaps in ms")
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    rows = race_rows()
    bodies = [(row[1], row[5]) for row in rows]

    def encode() -> None:
        for entity_id, body in bodies:
            encode_row(decode_reading(body, 1, entity_id, 0))

    with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
        conn = open_database(Path(tmp) / "buffer.db", durability=Durability.FULL).conn

        def commit() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")

        gaps = [float(g) for g in args.gaps.split(",")]
        for name, work in (("encode", encode), ("commit", commit)):
            base = 0.0
            for gap in gaps:
                cost = measure(work, gap / 1000, args.rounds)
                base = base or cost
                print(f"{name:6s} after {gap:4g} ms idle: {cost:7.1f} µs ({cost / base:.1f}×)", flush=True)
        conn.close()


if __name__ == "__main__":
    main()

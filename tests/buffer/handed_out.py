"""Subprocess for the kill -9 test of early delivery: rows delivered and acknowledged before their commit.

Appends 5 readings and waits for their commit, delivers and acknowledges them; appends 5 more and,
before their commit, reads them (served from memory), acknowledges them and makes the outbox write
its cursors. Then it holds the file's write lock so that the commit cannot happen, prints the seqs it
delivered (`committed <seqs>` and `handed-out <seqs>`) and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import reading


async def main(db: Path) -> None:
    # a group waits 250 ms without new rows before its commit: the time to do all the rest in
    box = await Outbox.open(
        db, BufferConfig(durability=Durability.FULL, commit_interval_ms=1000, commit_quiet_ms=250), ["orion"]
    )
    await box.append_many([reading(i) for i in range(5)])
    first = await box.read("orion", 10)
    await box.ack("orion", first, [DELIVERED] * len(first))
    pending = box.append_many([reading(i) for i in range(5, 10)])
    second = await box.read("orion", 10)
    await box.ack("orion", second, [DELIVERED] * len(second))
    await box.stats()  # writes the cursors held in memory
    lock = sqlite3.connect(db, timeout=0, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the group's commit now waits for the kill
    done = asyncio.ensure_future(pending).done()
    print("committed", *[r.seq for r in first], flush=True)
    print("handed-out", *[r.seq for r in second], "done" if done else "pending", flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))

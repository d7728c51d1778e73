"""Subprocess for the kill -9 test: appends forever and prints `<n>` after each append is committed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from tests.buffer.readings import reading


async def main(db: Path, start: int) -> None:
    box = await Outbox.open(db, BufferConfig(durability=Durability.FULL, commit_interval_ms=2), ["orion"])
    out = sys.stdout

    async def producer(p: int) -> None:
        n = start + p
        while True:
            await box.append(reading(n, entity=f"e{p}"))
            out.write(f"{n}\n")
            out.flush()
            n += 8

    await asyncio.gather(*(producer(p) for p in range(8)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))

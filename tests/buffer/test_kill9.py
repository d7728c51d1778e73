"""kill -9 at random moments never loses a reading whose append had resolved (durability full)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from tests.buffer.readings import ns

ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(db: Path, start: int, after: float) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.buffer.appender", str(db), str(start)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    # wait for the first committed line so the kill lands while appends are in flight
    first = proc.stdout.readline()
    assert first, proc.stderr.read().decode() if proc.stderr else "no output"
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    rest, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    text = (first + rest).decode()
    lines = text.split("\n")[:-1]  # a line cut by the kill has no newline and was not printed whole
    return [int(line) for line in lines]


async def test_every_printed_append_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    rng = random.Random(7)
    printed: list[int] = []
    for round_ in range(4):
        printed += _run_and_kill(db, round_ * 1_000_000, rng.uniform(0.05, 0.6))
    assert len(printed) > 100
    box = await Outbox.open(db, BufferConfig(durability=Durability.FULL), ["orion"])
    stats = await box.stats()
    assert stats.recovered_from is None
    stored = ns(await box.read("orion", 10_000_000))
    await box.close()
    missing = sorted(set(printed) - set(stored))
    assert missing == []
    # order per entity: producer p appends start+p, start+p+8, ... one after the other
    by_entity: dict[int, list[int]] = {}
    for n in stored:
        by_entity.setdefault(n % 8, []).append(n)
    for values in by_entity.values():
        assert values == sorted(values)

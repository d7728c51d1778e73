"""Locker bus: 4 boards × 48 locks (CU48) on one RS-485 line at 9600 baud, against the board stand-in on a socat pty.

Prints (1) the status cycle's time against the bytes' wire time (target: within 20 %), and (2) the
latency from a door changing on a board to its compartment reading being emitted (target: p99 < 1 s
at the default poll_interval of 0.5 s; with --uplink also through a real gateway, buffer and Orion uplink
to the Orion double). The stand-in delays each reply by the request's and the
reply's wire time at 9600 baud (a pty itself has none); it shares this process's event loop, so its
own wake-up lateness is measured and printed apart from the cycle's time. Medians of several runs; the machine is
shared and noisy, so the figures vary between runs.

Usage: python bench/locker_bench.py [--runs N] [--cycles N] [--changes N] [--gap S] [--uplink]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, not whichever the venv's editable install points at

from adapters.locker.adapter import LockerAdapter  # noqa: E402
from adapters.locker.config import LockerConfig  # noqa: E402
from gateway.adapter_api import AdapterContext  # noqa: E402
from gateway.records import Reading  # noqa: E402
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty  # noqa: E402

BAUD = 9600
BOARDS = 4
REQUEST, REPLY = 6, 12  # CU48 status query and reply, bytes


GAP: float | None = None  # --gap: the bus's quiet time between frames; None: its default (one character)


def config(port: str, poll_interval: float) -> LockerConfig:
    bus: dict[str, object] = {"name": "rs485", "port": port, "baud": BAUD, "timeout": 0.2, "unlock_settle": 0}
    if GAP is not None:
        bus["gap"] = GAP
    return LockerConfig.model_validate(
        {
            "name": "bench",
            "type": "locker",
            "poll_interval": poll_interval,
            "buses": [bus],
            "boards": [
                {
                    "name": f"b{i}",
                    "bus": "rs485",
                    "model": "cu48",
                    "address": i,
                    "compartments": {f"{'ABCD'[i]}-{k:02d}": k for k in range(1, 49)},
                }
                for i in range(BOARDS)
            ],
        }
    )


async def measure(tmp: Path, cycles: int, changes: int) -> tuple[float, float, list[float]]:
    sim = BoardSim([SimBoard("cu48", i) for i in range(BOARDS)], baud=BAUD)
    with pty_pair(tmp) as (gw, boards):
        async with serve_pty(sim, boards):
            # (1) back-to-back cycles: their length is the bus's own overhead plus the wire time
            seen: dict[str, float] = {}

            async def emit(reading: Reading) -> None:
                label = reading.attributes.get("compartmentLabel")
                if label is not None:
                    seen[str(label.value)] = time.monotonic()

            fast = LockerAdapter(config(gw, 0.0), AdapterContext(gateway_id="bench", data_dir=str(tmp / "a")))
            task = asyncio.create_task(fast.run(emit))
            bus = fast.buses["rs485"]
            while bus.cycles < 3:
                await asyncio.sleep(0.01)
            first, late0, t0 = bus.cycles, sim.late_s, time.monotonic()
            while bus.cycles < first + cycles:
                await asyncio.sleep(0.01)
            n = bus.cycles - first
            elapsed, late = time.monotonic() - t0, sim.late_s - late0
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            cycle = elapsed / n
            stand_in = late / n  # the stand-in's own lateness (it shares this process's loop), not the bus's

            # (2) door changes at random phases of the default 0.5 s cycle
            slow = LockerAdapter(config(gw, 0.5), AdapterContext(gateway_id="bench", data_dir=str(tmp / "b")))
            task = asyncio.create_task(slow.run(emit))
            await asyncio.sleep(1.0)
            latencies: list[float] = []
            for n in range(changes):
                board, lock = n % BOARDS, n % 48
                label = f"{'ABCD'[board]}-{lock + 1:02d}"
                seen.pop(label, None)
                changed = time.monotonic()
                sim.boards[board].locked[lock] = not sim.boards[board].locked[lock]
                while label not in seen:
                    await asyncio.sleep(0.002)
                latencies.append(seen[label] - changed)
                await asyncio.sleep(0.05 + (n % 7) * 0.061)  # spread the changes over the cycle's phase
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return cycle, stand_in, latencies


@dataclass(frozen=True, kw_only=True)
class Hop:
    """One door change through the gateway: where its time went."""

    total: float  # the door changing on the board → its doorState at the Orion double
    detect: float  # → the adapter seeing it (the compartment's lastChange): the poll interval's phase, the bus
    deliver: float  # lastChange → the Orion double: the emit's commit group, the delivery loop, HTTP


async def measure_uplink(tmp: Path, changes: int) -> list[Hop]:
    """Door change on a board → the compartment's new doorState applied by the Orion double, through a real
    gateway (adapter, buffer on disk, Orion uplink over HTTP on loopback) at the default poll interval.

    Changes start once the platform has every compartment's first door state (a fixed warm-up let the
    first changes fall into the start-up's 192 first readings, a tail that is no steady-state latency)."""
    from importlib.metadata import EntryPoint

    from gateway import registry
    from gateway.app import Runtime
    from gateway.config import load_config
    from tests.support.orion_double import OrionDouble

    registry._names(registry.ADAPTER_GROUP).setdefault(
        "locker", EntryPoint(name="locker", value="adapters.locker.adapter:LockerAdapter", group=registry.ADAPTER_GROUP)
    )
    sim = BoardSim([SimBoard("cu48", i) for i in range(BOARDS)], baud=BAUD)
    boards = "".join(
        f"""
[[adapters.boards]]
name = "b{i}"
bus = "rs485"
model = "cu48"
address = {i}
compartments = {{ {", ".join(f'"{"ABCD"[i]}-{k:02d}" = {k}' for k in range(1, 49))} }}
"""
        for i in range(BOARDS)
    )
    hops: list[Hop] = []
    async with OrionDouble() as orion:
        with pty_pair(tmp) as (gw, board_side):
            async with serve_pty(sim, board_side):
                path = tmp / "gateway.toml"
                path.write_text(
                    f"""[gateway]
id = "bench"
data_dir = "{tmp / "data"}"

[[adapters]]
name = "lockers"
type = "locker"
poll_interval = 0.5

[[adapters.buses]]
name = "rs485"
port = "{gw}"
baud = {BAUD}
{boards}
[[uplinks]]
name = "orion"
type = "orion"
url = "{orion.url}"
"""
                )
                runtime = Runtime(path, load_config(path))
                await runtime.start()
                try:
                    known: set[str] = set()
                    while len(known) < BOARDS * 48:
                        known.update(
                            e["compartmentLabel"]["value"]
                            for e in orion.written[-500:]
                            if e.get("doorState", {}).get("value") == "locked"
                        )
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)  # and the delivery loop idle again, as in service
                    for n in range(changes):
                        board, lock = n % BOARDS, (n * 7) % 48
                        label = f"{'ABCD'[board]}-{lock + 1:02d}"
                        want = "open" if sim.boards[board].locked[lock] else "locked"
                        mark = len(orion.written)
                        changed, wall = time.monotonic(), time.time()
                        sim.boards[board].locked[lock] = not sim.boards[board].locked[lock]
                        found: dict[str, Any] | None = None
                        while found is None:
                            found = next(
                                (
                                    e
                                    for e in orion.written[mark:]
                                    if e.get("compartmentLabel", {}).get("value") == label
                                    and e.get("doorState", {}).get("value") == want
                                ),
                                None,
                            )
                            if found is None:
                                await asyncio.sleep(0.002)
                        total = time.monotonic() - changed
                        seen = datetime.fromisoformat(found["lastChange"]["value"]).timestamp() - wall
                        hops.append(Hop(total=total, detect=seen, deliver=total - seen))
                        await asyncio.sleep(0.05 + (n % 7) * 0.061)
                finally:
                    await runtime.stop()
    return hops


def spread(values: list[float]) -> str:
    """p50 / p99 / max in ms."""
    v = sorted(values)
    return (
        f"{statistics.median(v) * 1000:.0f} / {v[min(len(v) - 1, int(len(v) * 0.99))] * 1000:.0f} / {v[-1] * 1000:.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uplink", action="store_true", help="also through a real gateway to the Orion double")
    parser.add_argument("--gap", type=float, default=None, help="seconds between frames (default: the bus default)")
    args = parser.parse_args()
    global GAP
    GAP = args.gap
    logging.disable(logging.WARNING)  # the toggled doors are "forced open" alerts here, by design
    wire = BOARDS * (REQUEST + REPLY) * 10 / BAUD
    cycles: list[float] = []
    p99s: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            cycle, stand_in, latencies = asyncio.run(measure(Path(tmp), args.cycles, args.changes))
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        cycles.append(cycle)
        p99s.append(p99)
        print(
            f"run {run + 1}: cycle {cycle * 1000:.1f} ms (wire {wire * 1000:.1f} ms, +{(cycle / wire - 1) * 100:.0f} %; "
            f"of it the stand-in's own lateness {stand_in * 1000:.1f} ms), "
            f"door→emit median {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        )
    uplink_p99s: list[float] = []
    for run in range(args.runs if args.uplink else 0):
        with tempfile.TemporaryDirectory() as tmp:
            hops = asyncio.run(measure_uplink(Path(tmp), args.changes))
        lat = sorted(h.total for h in hops)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        uplink_p99s.append(p99)
        print(
            f"run {run + 1}: door change → Orion double p50 / p99 / max {spread(lat)} ms; of it "
            f"change → adapter {spread([h.detect for h in hops])} ms, adapter → Orion {spread([h.deliver for h in hops])} ms"
        )
    if uplink_p99s:
        up = statistics.median(uplink_p99s)
        print(
            f"median of {args.runs}: door change → platform p99 {up * 1000:.0f} ms (target < 1000 ms) "
            f"{'OK' if up < 1.0 else 'MISSED'}"
        )
    cycle, p99 = statistics.median(cycles), statistics.median(p99s)
    over = cycle / wire - 1
    print(
        f"median of {args.runs}: cycle {cycle * 1000:.1f} ms vs wire time {wire * 1000:.1f} ms: +{over * 100:.1f} % "
        f"(target ≤ 20 %) {'OK' if over <= 0.2 else 'MISSED'}"
    )
    print(
        f"median of {args.runs}: door change → reading emitted p99 {p99 * 1000:.0f} ms (target < 1000 ms) "
        f"{'OK' if p99 < 1.0 else 'MISSED'}"
    )
    return 0 if over <= 0.2 and p99 < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end figures of the gateway spine: simulated source → buffer → uplink → broker acknowledgement.

Prints one line per measurement; run from the repository root:
    .venv/bin/python bench/e2e_bench.py [--seconds 10] [--only throughput-mqtt,backlog,...]

Scenarios (the issue's targets in brackets, for a 2-core machine):
  throughput-mqtt    sustained readings/s, simulated source at full speed, MQTT uplink QoS1 [>= 50,000/s]
  throughput-orion   the same against the Orion double (validation off) in its own process [>= 50,000/s]
  backlog            a 1,000,000-reading backlog drained to the MQTT uplink [>= 50,000/s]
  latency            p50/p99 from emit to broker PUBACK at 1,000 readings/s [p99 < 100 ms]
  memory             resident memory of `edgegw run` with 10 simulated adapters [< 80 MB]
Each throughput figure is given for `full` (default) and `normal` durability.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.app import Gateway, tune_runtime  # noqa: E402
from gateway.buffer.config import BufferConfig, Durability  # noqa: E402
from gateway.buffer.outbox import Outbox  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.records import Attribute, Reading, Source, TimeSource  # noqa: E402
from gateway.uplinks.api import Outcome  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402


def gateway_doc(
    data_dir: Path, uplink: dict[str, object], *, durability: str, adapters: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "gateway": {"id": "bench-gw", "data_dir": str(data_dir), "log_level": "warning"},
        "buffer": {"durability": durability},
        "adapters": adapters,
        "uplinks": [uplink],
    }


def mqtt_uplink(port: int) -> dict[str, object]:
    return {
        "name": "mqtt",
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "format": "iota-json",
        "apikey": "bench",
        "batch_max_rows": 5000,
        "max_inflight": 1000,
    }


def sim(rate: float, entities: int = 100, name: str = "sim") -> dict[str, object]:
    return {"name": name, "type": "simulated", "kind": "river-level", "entities": entities, "rate": rate}


async def run_throughput(doc: dict[str, object], seconds: float, warmup: float = 2.0) -> tuple[float, float]:
    """(delivered readings/s, emitted readings/s) over `seconds` after a warm-up."""
    gw = Gateway(parse_config(doc))
    await gw.start()
    try:
        await asyncio.sleep(warmup)
        assert gw.supervisor is not None
        d0, e0, t0 = gw.loops[0].delivered, sum(s.emitted for s in gw.supervisor.status()), time.perf_counter()
        await asyncio.sleep(seconds)
        d1, e1, t1 = gw.loops[0].delivered, sum(s.emitted for s in gw.supervisor.status()), time.perf_counter()
        return (d1 - d0) / (t1 - t0), (e1 - e0) / (t1 - t0)
    finally:
        await gw.stop()


def start_orion_double() -> tuple[subprocess.Popen[str], str]:
    code = (
        "import asyncio, sys\n"
        "from tests.support.orion_double import OrionDouble\n"
        "async def main():\n"
        "    async with OrionDouble(keep_log=False) as d:\n"
        "        d.written = type('Sink', (), {'append': lambda self, x: None, 'extend': lambda self, x: None})()\n"
        "        print(d.url, flush=True)\n"
        "        await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:bench-{n % 100}",
        entity_type="WaterObserved",
        attributes={
            "waterLevel": Attribute(value=1.0 + (n % 1000) / 1000, type="Number", unit="MTR"),
            "sequence": Attribute(value=n, type="Number"),
        },
        observed_at=datetime.now(UTC),
        time_source=TimeSource.DEVICE,
        source=Source(adapter="bench"),
    )


async def run_backlog(data_dir: Path, port: int, durability: str, total: int) -> float:
    outbox = await Outbox.open(data_dir / "buffer.db", BufferConfig(durability=Durability(durability)), ["mqtt"])
    chunk = [reading(i) for i in range(10_000)]
    for _ in range(total // len(chunk)):
        await outbox.append_many(chunk)
    await outbox.close()
    gw = Gateway(parse_config(gateway_doc(data_dir, mqtt_uplink(port), durability=durability, adapters=[])))
    t0 = time.perf_counter()
    await gw.start()
    try:
        while gw.loops[0].delivered < total:
            await asyncio.sleep(0.05)
        return total / (time.perf_counter() - t0)
    finally:
        await gw.stop()


class TimedUplink:
    """Wraps the real uplink: notes when each reading's delivery (PUBACK) completed."""

    def __init__(self, inner: object, done: dict[tuple[str, int], float]) -> None:
        self.inner = inner
        self.done = done

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        outcomes: list[Outcome] = await self.inner.deliver(batch)  # type: ignore[attr-defined]
        now = time.perf_counter()
        for r in batch:
            self.done.setdefault((r.entity_id, r.attributes["sequence"].value), now)
        return outcomes


async def run_latency(data_dir: Path, port: int, seconds: float) -> tuple[float, float, int]:
    emitted: dict[tuple[str, int], float] = {}
    done: dict[tuple[str, int], float] = {}
    doc = gateway_doc(data_dir, mqtt_uplink(port), durability="full", adapters=[sim(1000, entities=10)])
    gw = Gateway(parse_config(doc))
    inner_emit_many = gw._emit_many  # the simulated adapter hands its readings over in bursts

    def timed_emit_many(readings: Sequence[Reading], *, processed: bool = False) -> Awaitable[None]:
        now = time.perf_counter()
        for r in readings:
            emitted[(r.entity_id, r.attributes["sequence"].value)] = now
        return inner_emit_many(readings, processed=processed)

    gw._emit_many = timed_emit_many  # type: ignore[method-assign]
    await gw.start()
    gw.loops[0].uplink = TimedUplink(gw.loops[0].uplink, done)  # type: ignore[assignment]
    try:
        await asyncio.sleep(1.0 + seconds)
    finally:
        await gw.stop()
    lat = sorted((done[k] - t) * 1000 for k, t in emitted.items() if k in done and t > min(emitted.values()) + 1.0)
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]
    return p50, p99, len(lat)


def run_memory(workdir: Path, port: int, seconds: float) -> tuple[float, float]:
    adapters = "".join(
        f'\n[[adapters]]\nname = "sim{i}"\ntype = "simulated"\nkind = "{"weather" if i % 2 else "river-level"}"\n'
        f"entities = 5\nrate = 50\n"
        for i in range(10)
    )
    cfg = workdir / "memory.toml"
    cfg.write_text(
        f'[gateway]\nid = "bench-mem"\ndata_dir = "{workdir / "mem"}"\nlog_level = "warning"\n{adapters}\n'
        f'[[uplinks]]\nname = "mqtt"\ntype = "mqtt"\nhost = "127.0.0.1"\nport = {port}\n'
        'format = "iota-json"\napikey = "bench"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(seconds)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
        return int(fields["VmRSS"]) / 1024, int(fields["VmHWM"]) / 1024
    finally:
        proc.terminate()
        proc.wait(10)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"load average {load:.1f} at start"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--only", default="throughput-mqtt,throughput-orion,backlog,latency,memory")
    args = ap.parse_args()
    only = set(args.only.split(","))
    # what `edgegw run` does at start (serve()): this process stands in for the gateway's
    tune_runtime()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work / "mosquitto")
        broker.start()
        try:
            for durability in ("full", "normal"):
                if "throughput-mqtt" in only:
                    doc = gateway_doc(
                        work / f"tm-{durability}",
                        mqtt_uplink(broker.port),
                        durability=durability,
                        adapters=[sim(1_000_000)],
                    )
                    delivered, emitted = await run_throughput(doc, args.seconds)
                    print(
                        f"throughput-mqtt  durability={durability:<6} delivered {delivered:>9,.0f} readings/s  "
                        f"(source emitted {emitted:,.0f}/s)"
                    )
                if "throughput-orion" in only:
                    proc, url = start_orion_double()
                    try:
                        uplink = {
                            "name": "orion",
                            "type": "orion",
                            "url": url,
                            "service": "bench",
                            "service_path": "/bench",
                            "batch_max_rows": 5000,
                        }
                        doc = gateway_doc(
                            work / f"to-{durability}", uplink, durability=durability, adapters=[sim(1_000_000)]
                        )
                        delivered, emitted = await run_throughput(doc, args.seconds)
                    finally:
                        proc.terminate()
                        proc.wait(10)
                    print(
                        f"throughput-orion durability={durability:<6} delivered {delivered:>9,.0f} readings/s  "
                        f"(source emitted {emitted:,.0f}/s)"
                    )
                if "backlog" in only:
                    rate = await run_backlog(work / f"bl-{durability}", broker.port, durability, args.backlog)
                    print(
                        f"backlog          durability={durability:<6} drained {args.backlog:,} readings at "
                        f"{rate:>9,.0f} readings/s"
                    )
            if "latency" in only:
                p50, p99, n = await run_latency(work / "lat", broker.port, args.seconds)
                print(
                    f"latency          durability=full   1,000 readings/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                    f"({n:,} readings, emit -> PUBACK)"
                )
            if "memory" in only:
                rss, hwm = run_memory(work, broker.port, max(10.0, args.seconds))
                print(f"memory           10 simulated adapters: RSS {rss:.1f} MB (peak {hwm:.1f} MB)")
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())

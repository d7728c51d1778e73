"""Throughput of the `mqtt` uplink: N readings through `MqttUplink.deliver` in buffer-sized batches.

A real mosquitto (tests/support/mosquitto.MosquittoBroker) on loopback; QoS 1, every record counted
only after its PUBACK. Runs iota-json (multi-measures: `--devices` devices share each batch),
iota-ul and ngsi-v2, and prints readings/s and messages/s for each.
Usage: `python bench/mqtt_uplink_bench.py [--readings 50000] [--batch 1000] [--devices 50] [--inflight 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.support.mosquitto import MosquittoBroker


def make_readings(n: int, devices: int) -> list[Reading]:
    """River-gauge shaped readings: four numeric attributes and a state text, round-robin over devices."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    src = Source(adapter="modbus-1", device="rs485")
    out = []
    for i in range(n):
        attrs = {
            "waterLevel": Attribute(value=round(1.0 + (i % 100) / 100, 3), type="Number", unit="MTR"),
            "flow": Attribute(value=12.5 + i % 7, type="Number"),
            "temperature": Attribute(value=18.25, type="Number", unit="CEL"),
            "batteryLevel": Attribute(value=0.87, type="Number"),
            "state": Attribute(value="ok", type="Text"),
        }
        out.append(
            Reading(
                entity_id=f"urn:ngsi-ld:WaterObserved:gauge{i % devices}",
                entity_type="WaterObserved",
                attributes=attrs,
                observed_at=t0 + timedelta(milliseconds=i),
                source=src,
                seq=i + 1,
            )
        )
    return out


async def run(fmt: str, broker: MosquittoBroker, readings: list[Reading], batch: int, inflight: int, data: str) -> None:
    cfg = MqttUplinkConfig.model_validate(
        {
            "name": f"bench-{fmt}",
            "type": "mqtt",
            "host": broker.host,
            "port": broker.port,
            "format": fmt,
            "apikey": "BENCH",
            "max_inflight": inflight,
            "batch_max_rows": batch,
        }
    )
    up = MqttUplink(cfg, AdapterContext(gateway_id="gw-bench", data_dir=data))
    await up.start()
    started = time.perf_counter()
    delivered = 0
    for i in range(0, len(readings), batch):
        outcomes = await up.deliver(readings[i : i + batch])
        delivered += sum(1 for o in outcomes if o.status is Status.DELIVERED)
    elapsed = time.perf_counter() - started
    await up.close()
    c = up.counters
    print(
        f"{fmt:9}  {delivered:>7} readings in {elapsed:6.2f} s = {delivered / elapsed:9.0f} readings/s, "
        f"{c.acked:>6} msgs = {c.acked / elapsed:8.0f} msgs/s, {c.bytes / elapsed / 1e6:6.2f} MB/s payload"
        + ("" if delivered == len(readings) else f"  ({len(readings) - delivered} NOT delivered)")
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=50, help="distinct entities; readings per message ~ batch/devices")
    ap.add_argument("--inflight", type=int, default=100)
    args = ap.parse_args()
    readings = make_readings(args.readings, args.devices)
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoBroker(Path(tmp) / "broker")
        broker.start()
        try:
            print(
                f"mosquitto on {broker.host}:{broker.port}, {args.readings} readings, batches of {args.batch}, "
                f"{args.devices} devices, max_inflight {args.inflight}"
            )
            for fmt in ("iota-json", "iota-ul", "ngsi-v2"):
                await run(fmt, broker, readings, args.batch, args.inflight, tmp)
            # one message per reading: the pipelining itself, not the packing
            print("one reading per message:")
            await run(
                "iota-json", broker, make_readings(min(args.readings, 20_000), 10**9), args.batch, args.inflight, tmp
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())

"""A 10,000-reading backlog through the buffer, the delivery loop and the `kintone` uplink into the kintone stand-in.

Within kintone's documented limits: at most 100 records per request, one request at a time (the
limit is 100 concurrent per domain), and the requests counted against the app's 10,000 a day.
Two cases: `add` (watch visits, a new record each) and `upsert` (river alerts on 200 tickets).
The stand-in runs in this process with its full validation, so the figure includes its work; it
has no network latency, unlike cybozu.com (tens of ms a request from Japan): the figure is the
gateway's cost, and the request count is what the real time depends on.
Usage: `python bench/kintone_bench.py [--readings 10000] [--runs 3]`; prints each run and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop
from gateway.records import Attribute, Lane, Reading, Source
from gateway.secrets import SecretStore
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from tests.support.kintone_double import KintoneDouble, form_field

T0 = datetime(2026, 7, 1, tzinfo=UTC)
TOKEN = "bench-token-0123456789abcdef"


def visits(n: int) -> list[Reading]:
    return [
        Reading(
            entity_id=f"urn:ngsi-ld:Visit:lib-{i:06d}",
            entity_type="Visit",
            attributes={"visitors": Attribute(value=i % 40, type="Number"), "place": Attribute(value="図書館")},
            observed_at=T0 + timedelta(seconds=i),
            source=Source(adapter="counter"),
        )
        for i in range(n)
    ]


def alerts(n: int, tickets: int = 200) -> list[Reading]:
    return [
        Reading(
            entity_id=f"urn:ngsi-ld:Alert:st{i % tickets}-2-{'up' if i % 2 else 'down'}-{i}",
            entity_type="Alert",
            attributes={
                "alertSource": Attribute(value=f"urn:ngsi-ld:WaterObserved:st{i % tickets}", type="Relationship"),
                "thresholdName": Attribute(value="氾濫注意水位"),
                "waterLevel": Attribute(value=3.0 + (i % 100) / 100, type="Number", unit="MTR"),
                "dateIssued": Attribute(value=(T0 + timedelta(seconds=i)).isoformat(), type="DateTime"),
                "direction": Attribute(value="up" if i % 2 else "down"),
            },
            observed_at=T0 + timedelta(seconds=i),
            source=Source(adapter="river"),
            lane=Lane.ALERT,
        )
        for i in range(n)
    ]


CASES: dict[str, dict[str, Any]] = {
    "add": {
        "fields": [
            form_field("visitors", "NUMBER"),
            form_field("place", "SINGLE_LINE_TEXT"),
            form_field("visit_id", "SINGLE_LINE_TEXT"),
        ],
        "mapping": {
            "entity_types": ["Visit"],
            "mode": "add",
            "fields": {"visitors": "visitors", "place": "place", "visit_id": "$entity_id"},
        },
        "readings": visits,
    },
    "upsert": {
        "fields": [
            form_field("alert_key", "SINGLE_LINE_TEXT", unique=True),
            form_field("level", "NUMBER"),
            form_field("at", "DATETIME"),
            form_field("status", "DROP_DOWN", choices=["対応中", "解消"]),
        ],
        "mapping": {
            "entity_types": ["Alert"],
            "mode": "upsert",
            "key_field": "alert_key",
            "key": "{alertSource}/{thresholdName}",
            "fields": {"level": "waterLevel", "at": "dateIssued", "status": {"value": "対応中"}},
        },
        "readings": alerts,
    },
}


async def run(case: str, n: int) -> dict[str, Any]:
    spec = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        SecretStore(Path(tmp)).set("bench_token", TOKEN)
        async with KintoneDouble() as double:
            double.add_app(1, spec["fields"], TOKEN)
            cfg = KintoneConfig.model_validate(
                {
                    "name": "bench",
                    "type": "kintone",
                    "url": double.url,
                    "app": 1,
                    "api_token": "secret:bench_token",
                    "batch_max_rows": 100,
                    "start_delay_max_s": 0,
                    "mappings": [spec["mapping"]],
                }
            )
            box = await Outbox.open(Path(tmp) / "b.db", BufferConfig(durability=Durability.NORMAL), ["bench"])
            await box.append_many(spec["readings"](n))
            up = KintoneUplink(cfg, AdapterContext(gateway_id="bench", data_dir=tmp))
            loop = DeliveryLoop(up, cfg, box)
            start = time.perf_counter()
            task = asyncio.create_task(loop.run())
            while loop.delivered + loop.rejected < n:
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - start
            loop.stop_soon()
            await task
            diagnostics = up.diagnostics()
            await up.close()
            await box.close()
            writes = [r for r in double.requests if r.path.endswith("records.json")]
            return {
                "s": elapsed,
                "requests": len(double.requests),
                "largest": max(len(r.json()["records"]) for r in writes),
                "concurrent": double.max_in_flight,
                "records": len(double.records_of(1)),
                "today": f"{diagnostics['requests_today']}/{diagnostics['daily_request_limit']}",
                "rejected": loop.rejected,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for r in range(args.runs):
        for case in CASES:  # alternated, so machine noise hits both alike
            out = asyncio.run(run(case, args.readings))
            times[case].append(out["s"])
            print(
                f"run {r + 1} {case:6s}: {args.readings} readings in {out['s']:.2f} s "
                f"({args.readings / out['s']:.0f} readings/s); {out['requests']} requests (form check included), "
                f"at most {out['largest']} records each, {out['concurrent']} at a time; {out['records']} records in "
                f"the app; requests today {out['today']}; rejected {out['rejected']}"
            )
    for case, ts in times.items():
        print(f"median {case:6s}: {statistics.median(ts):.2f} s for {args.readings} readings")


if __name__ == "__main__":
    main()

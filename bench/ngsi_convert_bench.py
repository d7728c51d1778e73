"""Throughput of the NGSI conversion path: check_reading (cached / uncached), v2, NGSI-LD and IoT Agent JSON.

Standalone: `python bench/ngsi_convert_bench.py [--readings 200000] [--repeat 3]`. Each figure is the
best of `--repeat` runs, in readings per second, for typical 3-attribute readings (two numbers with a
unit and a short Japanese text; the "DateTime+geo" line uses a number, a DateTime and a geo:json
Point, whose values are parsed on every check). "cached" checks readings of 100 recurring entities (the identity cache
hits); "uncached" gives every reading its own entity id, more than the cache holds, so every check
validates the id, type and attribute names again.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import to_ld_entity
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Attribute, Reading, Source, TimeSource

JST = timezone(timedelta(hours=9))
CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
PCT = ValueEncoding.PERCENT


def make_readings(n: int, entities: int) -> list[Reading]:
    t0 = datetime(2024, 7, 1, 9, 0, tzinfo=JST)
    return [
        Reading(
            entity_id=f"urn:ngsi-ld:WaterObserved:gauge{i % entities:06d}",
            entity_type="WaterObserved",
            attributes={
                "waterLevel": Attribute(value=1.0 + (i % 500) / 100, type="Number", unit="MTR"),
                "temperature": Attribute(value=20.5, unit="CEL"),
                "name": Attribute(value="人吉(水の手橋)", type="Text"),
            },
            observed_at=t0 + timedelta(seconds=i),
            time_source=TimeSource.DEVICE,
            source=Source(adapter="river", device="gauge1"),
        )
        for i in range(n)
    ]


def make_typed_readings(n: int, entities: int) -> list[Reading]:
    """3 attributes whose values need a per-value parse: Number, DateTime and a geo:json Point."""
    t0 = datetime(2024, 7, 1, 9, 0, tzinfo=JST)
    return [
        Reading(
            entity_id=f"urn:ngsi-ld:WaterObserved:gauge{i % entities:06d}",
            entity_type="WaterObserved",
            attributes={
                "waterLevel": Attribute(value=1.0 + (i % 500) / 100, type="Number", unit="MTR"),
                "dateObserved": Attribute(value=(t0 + timedelta(seconds=i)).isoformat(), type="DateTime"),
                "location": Attribute(value={"type": "Point", "coordinates": [130.76, 32.21]}, type="geo:json"),
            },
            observed_at=t0 + timedelta(seconds=i),
            time_source=TimeSource.DEVICE,
            source=Source(adapter="river", device="gauge1"),
        )
        for i in range(n)
    ]


def rate(fn: Callable[[Reading], Any], readings: Sequence[Reading], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for r in readings:
            fn(r)
        best = min(best, time.perf_counter() - start)
    return len(readings) / best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n, repeat = args.readings, args.repeat

    recurring = make_readings(n, 100)
    distinct = make_readings(n, n)  # more entities than the cache holds: every check misses

    cached = ReadingChecker()
    figures: list[tuple[str, float]] = [
        ("check_reading, cached identity", rate(lambda r: cached.check(r, encoding=PCT), recurring, repeat)),
    ]
    typed = ReadingChecker()
    figures.append(
        (
            "check_reading, cached, DateTime+geo",
            rate(lambda r: typed.check(r, encoding=PCT), make_typed_readings(n, 100), repeat),
        )
    )
    uncached = ReadingChecker()
    figures.append(
        ("check_reading, uncached identity", rate(lambda r: uncached.check(r, encoding=PCT), distinct, repeat))
    )
    figures.append(
        ("to_v2_entity + orjson", rate(lambda r: orjson.dumps(to_v2_entity(r, encoding=PCT)), recurring, repeat))
    )
    figures.append(
        (
            "to_ld_entity + orjson",
            rate(lambda r: orjson.dumps(to_ld_entity(r, encoding=PCT, context=CONTEXT)), recurring, repeat),
        )
    )
    try:
        from gateway.ngsi.iota import json_measure_bytes
    except ImportError:
        print("iota: gateway.ngsi.iota.json_measure_bytes not available, skipped")
    else:
        figures.append(
            ("iota json_measure_bytes", rate(lambda r: json_measure_bytes(r, encoding=PCT), recurring, repeat))
        )

    print(f"{n} readings of 3 attributes, best of {repeat} (Python {sys.version.split()[0]})")
    for label, per_second in figures:
        print(f"  {label:<36} {per_second:>12,.0f} readings/s  ({1e6 / per_second:6.2f} µs each)")


if __name__ == "__main__":
    main()

"""End to end to the strict Orion double: a 503 period is retried through, a poisoned record is
dead-lettered with Orion's reason while everything else arrives, in order per entity."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, GatewayProcess, wait_until
from tests.support.orion_double import OrionDouble

pytestmark = pytest.mark.e2e

POISON = "urn:ngsi-ld:SimulatedEvent:scans-0-7"


def config(url: str, adapters: bool = True) -> str:
    sim = (
        """
[[adapters]]
name = "river"
type = "simulated"
kind = "river-level"
entities = 3
rate = 150
limit = 1500

[[adapters]]
name = "scans"
type = "simulated"
kind = "events"
rate = 10
limit = 40
lane = "bulk"
"""
        if adapters
        else ""
    )
    return f"""
[gateway]
id = "e2e-orion"
data_dir = "@DATA_DIR@"

{sim}
[[uplinks]]
name = "orion"
type = "orion"
url = "{url}"
service = "kumamoto"
service_path = "/river"
batch_max_rows = 200
retry_initial_s = 0.2
retry_max_s = 1.0
"""


def sequences(orion: OrionDouble) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for entity in orion.written:
        out[entity["id"]].append(entity["sequence"]["value"])
    return out


async def test_503_period_then_poisoned_record(tmp_path: Path, orion_double: OrionDouble) -> None:
    orion_double.refuse_entity(POISON, "Invalid characters in attribute value")
    orion_double.fail(503, until=time.monotonic() + 3.0)
    gw = GatewayProcess(tmp_path, config(orion_double.url))
    try:
        gw.start()

        def done() -> bool:
            seqs = sequences(orion_double)
            river = [v for k, v in seqs.items() if ":WaterObserved:" in k]
            scans = [k for k in seqs if ":SimulatedEvent:" in k]
            return sum(len(v) for v in river) >= 1500 and len(scans) >= 39

        await wait_until(done, 60, "every reading but the poisoned one to reach Orion", gw)
        assert orion_double.requests_to("/v2/op/update")[0].status == 503
        seqs = sequences(orion_double)
        for entity, values in seqs.items():
            if ":WaterObserved:" in entity:
                assert values == list(range(1, 501)), f"{entity}: lost or reordered readings"
        assert POISON not in seqs
        assert len([k for k in seqs if ":SimulatedEvent:" in k]) == 39
        current = orion_double.entities[("kumamoto", "/river", "urn:ngsi-ld:WaterObserved:river-0")]
        assert current["sequence"]["value"] == 500  # Orion's current state is the newest reading
        code, took = await gw.terminate()
        assert code == 0 and took < 5.0
    finally:
        gw.stop_now()
    listing = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "buffer", "dead-letters", "--json", "-c", str(gw.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert listing.returncode == 0, listing.stderr
    dead = json.loads(listing.stdout)
    assert [d["entity_id"] for d in dead] == [POISON]
    assert "Invalid characters in attribute value" in dead[0]["reason"]
    assert "400" in dead[0]["reason"]
    logs = gw.logs()
    assert "delivery failing" in logs and "delivery recovered" in logs

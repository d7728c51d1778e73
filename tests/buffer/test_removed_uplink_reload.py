"""A reload (SIGHUP, `edgegw config` apply or rollback) that takes an uplink out and puts it back keeps its backlog.

A reload stops the running generation, closing the buffer, and starts the new one, which opens it
with the new set of uplinks (gateway.app.Runtime.reload): the same path as a restart, where the
removed uplink's cursors were dropped and the rows only it needed deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.app import Runtime
from gateway.config import parse_config
from tests.support.orion_double import ManualClock, OrionDouble

PREFIX = "urn:ngsi-ld:WaterObserved:"


def config(data_dir: Path, generation: str, uplinks: dict[str, str]) -> dict[str, Any]:
    # each generation's entities have their own ids: the simulated adapter starts again at every reload
    return {
        "gateway": {"id": "gw-reload", "data_dir": str(data_dir)},
        "adapters": [
            {
                "name": "gauges",
                "type": "simulated",
                "entities": 20,
                "rate": 1000,
                "limit": 20,
                "id_prefix": f"{PREFIX}{generation}-",
            }
        ],
        "uplinks": [{"name": name, "type": "orion", "url": url} for name, url in uplinks.items()],
    }


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def ids(generation: str) -> set[str]:
    return {f"{PREFIX}{generation}-{n}" for n in range(20)}


async def test_an_uplink_reloaded_out_and_back_in_delivers_its_backlog(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    clock = ManualClock()
    async with OrionDouble(clock=clock) as backup:
        backup.fail(503, until=clock() + 60)  # the backup platform is down: its backlog builds up
        both = {"orion": orion_double.url, "backup": backup.url}
        (tmp_path / "gateway.toml").write_text("")  # reload() is always given the new configuration here
        runtime = Runtime(tmp_path / "gateway.toml", parse_config(config(data, "first", both)))
        await runtime.start()
        try:
            await until(lambda: ids("first") <= set(orion_double.arrivals), "orion to get the first readings")

            # an apply that drops backup by mistake; orion goes on
            assert await runtime.reload(parse_config(config(data, "second", {"orion": orion_double.url}))) == []
            await until(lambda: ids("second") <= set(orion_double.arrivals), "orion to get the second readings")

            # the rollback brings backup back, its platform up again
            clock.advance(120)
            assert await runtime.reload(parse_config(config(data, "third", both))) == []
            wanted = ids("first") | ids("second") | ids("third")
            await until(lambda: wanted <= set(backup.arrivals), "backup to deliver its backlog")
        finally:
            await runtime.stop()
    for generation in ("first", "second", "third"):  # in order: each generation's rows after the last's
        got = [a for a in backup.arrivals if a.startswith(f"{PREFIX}{generation}-")]
        assert set(got) == ids(generation)
    firsts = [backup.arrivals.index(min(ids(g))) for g in ("first", "second", "third")]
    assert firsts == sorted(firsts)

"""The UI hammering the socket (5 clients polling status and latest) while readings flow: nothing lost, still accepting."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.control.client import ControlClient
from tests.control.running import config_text, eventually, running_gateway
from tests.support.orion_double import OrionDouble

READINGS = 4_000


async def test_five_clients_polling_lose_and_block_nothing(orion_double: OrionDouble, tmp_path: Path) -> None:
    text = config_text(tmp_path / "data", orion_double.url, rate=2_000.0).replace(
        "entities = 3", f"entities = 500\nlimit = {READINGS}"
    )
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        stop = asyncio.Event()
        calls = [0] * 5

        async def hammer(i: int) -> None:
            async with ControlClient(gw.socket, timeout_s=10.0) as client:
                while not stop.is_set():
                    await client.call("status")
                    doc = await client.call("latest", filter="waterobserved")
                    assert doc["total"] == len(doc["entities"]) <= 500
                    calls[i] += 1

        clients = [asyncio.create_task(hammer(i)) for i in range(5)]
        await eventually(
            lambda: gw.client.call("status"),
            lambda doc: doc["buffer"]["appended_total"] == READINGS,
            "every simulated reading in the buffer",
            timeout=20.0,
        )
        stop.set()
        await asyncio.gather(*clients)
        assert min(calls) > 3, calls  # every client was served throughout
        done = await eventually(
            lambda: gw.client.call("status"),
            lambda doc: doc["buffer"]["uplinks"]["orion"]["pending"] == {"alert": 0, "normal": 0, "bulk": 0},
            "every reading delivered",
            timeout=20.0,
        )
        assert done["invalid_readings"] == 0 and done["buffer"]["refused_total"] == 0
        assert done["buffer"]["dead_letters"] == {}
        assert done["control"]["bad_requests"] == {}
        assert len({e for (_, _, e) in orion_double.entities}) == 500
        assert (await gw.client.call("latest"))["total"] == 500

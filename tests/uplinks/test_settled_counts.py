"""An NGSI-LD 207 that retries one entity and refuses a later one: counted, logged and dead-lettered once.

The finding (a reviewer's run, reproduced): the broker answers 207 with e0 503 (retry), e1 done, e2
400. `Store.ack` stops the lane's cursor at e0, so e1 and e2 are sent again with it; yet the loop
counted all three outcomes at every try, and said "dead-lettered …:e2 … retry-dead-letters" each
time while the dead-letter table held nothing for it; the uplink's own counters and its metadata
drop count did the same. Three records ended as delivered = 3, rejected = 2.

Now what the acknowledgement settles, and only that, is counted: e2's dead letter is written, said
and counted once, when e0 goes through and the lane settles. Real parts: the NGSI-LD uplink, the
delivery loop and the outbox, against a loopback broker that answers as scripted.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from tests.ngsi.test_ld_dropped_metadata import T0, stored

ID = "urn:ngsi-ld:WaterObserved:"
FAILS = 3  # requests in which the broker cannot write e0
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"{ID}e{n}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=n, type="Number")},
        observed_at=T0,
        source=Source(adapter="gauge"),
    )


class Events(logging.Handler):
    """The broker's requests and the loop's dead-letter lines, in the order they happened."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("dead-lettered"):
            self.seen.append(message.split(";")[0])


async def instant(_: float) -> None:
    await asyncio.sleep(0)


async def test_a_207_retry_ahead_of_a_refusal_counts_and_dead_letters_it_once_when_the_lane_settles(
    tmp_path: Path,
) -> None:
    events = Events()
    requests: list[list[str]] = []
    rejected_at_request: list[int] = []
    holder: dict[str, DeliveryLoop] = {}

    async def upsert(request: web.Request) -> web.Response:
        ids = [e["id"] for e in orjson.loads(await request.read())]
        requests.append([i.removeprefix(ID) for i in ids])
        events.seen.append(f"request {len(requests)}")
        rejected_at_request.append(holder["loop"].status().rejected)
        busy = len(requests) <= FAILS
        errors: list[dict[str, Any]] = [
            {"entityId": f"{ID}e2", "error": {"type": ERRORS + "BadRequestData", "status": 400, "title": "bad value"}}
        ]
        if busy:
            errors.insert(
                0, {"entityId": f"{ID}e0", "error": {"type": ERRORS + "InternalError", "status": 503, "title": "busy"}}
            )
        success = [i for i in ids if i.endswith("e1") or (i.endswith("e0") and not busy)]
        return web.json_response({"success": success, "errors": errors}, status=207)

    app = web.Application()
    app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", upsert)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["ld"])
    # e1 carries metadata an NGSI-LD attribute cannot: its drop counts once, when e1 settles delivered
    e1 = stored({"value": "cal-42"}, entity_id=f"{ID}e1", entity_type="WaterObserved")
    await box.append_many([reading(0), e1, reading(2)])
    config = NgsiLdConfig.model_validate(
        {"name": "ld", "type": "ngsi-ld", "url": f"http://127.0.0.1:{runner.addresses[0][1]}", "start_delay_max_s": 0}
    )
    up = NgsiLdUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))
    loop = holder["loop"] = DeliveryLoop(up, config, box, sleep=instant)
    log = logging.getLogger("gateway.delivery")
    log.addHandler(events)
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(20):
            while not (len(requests) > FAILS and loop.state is UplinkState.IDLE):
                await asyncio.sleep(0.01)
    finally:
        log.removeHandler(events)
        loop.stop_soon()
        await task
        await up.close()
        await runner.cleanup()
    stats = await box.stats()
    await box.close()

    assert requests == [["e0", "e1", "e2"]] * (FAILS + 1)
    # said once, after the request that settled the lane; nothing counted as rejected while e0 kept failing
    assert events.seen == [f"request {n}" for n in range(1, FAILS + 2)] + [
        f"dead-lettered {ID}e2: ld: the NGSI-LD broker refused entity {ID}e2, got HTTP 400 BadRequestData: bad value"
    ]
    assert rejected_at_request == [0] * (FAILS + 1)
    status = loop.status()
    assert (status.delivered, status.rejected) == (2, 1)
    assert (up.counters.delivered, up.counters.rejected, up.counters.retries) == (2, 1, FAILS)
    assert up.diagnostics()["metadata_dropped"] == 1
    assert stats.dead_letters == {"ld": 1}
    assert stats.uplinks["ld"].cursors["normal"] == 3

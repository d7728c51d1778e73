"""A far side that got the request but answers after timeout_s is not "unreachable": it is backed off as usual
(not probed every probe_s), the next requests are smaller, and delivery completes once they are fast enough.
Only a failure before the request goes out (refused, a connect timeout) is probed at the short interval."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Fault, Status
from gateway.uplinks.http.batch import SLOW_RECOVERY_AFTER
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
SLOW_ABOVE = 100  # entities: a larger request takes the far side longer than timeout_s
TIMEOUT_S = 0.5


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{n % 3}",
        entity_type="WaterObserved",
        attributes={"sequence": Attribute(value=n, type="Number")},
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="gauge"),
    )


def make_uplink(url: str, tmp_path: Path, **keys: Any) -> tuple[OrionUplink, OrionConfig]:
    config = OrionConfig.model_validate({"name": "orion", "type": "orion", "url": url, **keys})
    return OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))), config


@asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v2/op/update", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_far_side_that_applies_but_answers_late_is_backed_off_and_sent_less(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[int, int]] = []  # (entities, body bytes) of every request, in arrival order
    applied: list[int] = []  # the readings' sequence numbers, as the far side wrote them

    async def update(request: web.Request) -> web.Response:
        body = await request.read()
        entities = orjson.loads(body)["entities"]
        seen.append((len(entities), len(body)))
        applied.extend(e["sequence"]["value"] for e in entities)  # written, as a loaded Orion does...
        if len(entities) > SLOW_ABOVE:
            await asyncio.sleep(4 * TIMEOUT_S)  # ... and answered too late
        return web.Response(status=204)

    box = await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["orion"]
    )
    await box.append_many([reading(n) for n in range(300)])
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    caplog.set_level(logging.WARNING, logger="gateway.uplinks")
    async with serving(update) as url:
        keys = {"start_delay_max_s": 0, "retry_initial_s": 30, "retry_max_s": 600, "probe_s": 2}
        uplink, config = make_uplink(url, tmp_path, timeout_s=TIMEOUT_S, **keys)
        loop = DeliveryLoop(uplink, config, box, sleep=sleep, rng=random.Random(5))
        task = asyncio.create_task(loop.run())
        try:
            async with asyncio.timeout(30):
                while loop.delivered < 300:
                    await asyncio.sleep(0.01)
        finally:
            loop.stop_soon()
            await asyncio.wait_for(task, 10)
            await uplink.close()
            await box.close()
    counts = [n for n, _ in seen]
    # 300 entities, then half the bytes (about 150), then half again: fast enough, and the rest follows in kind
    assert counts[0] == 300 and SLOW_ABOVE < counts[1] <= 150 and all(n <= 75 for n in counts[2:])
    assert sum(counts[2:]) == 300
    # backed off as for any failure of a far side that answers (retry_initial_s = 30: never below 3 s),
    # not probed within probe_s as when nothing reaches it
    assert len(sleeps) == 2 and min(sleeps) > 2.0
    assert applied[-300:] == list(range(300))  # everything, in order, after the two batches written twice
    first = seen[0][1]
    assert next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == (
        f"orion: no answer from {url}/v2/op/update within timeout_s = {TIMEOUT_S:g} s after sending the request "
        f"(300 entities, {first} bytes); Orion may have applied it: requests are at most {first // 2} bytes until "
        f"{SLOW_RECOVERY_AFTER} in a row are answered in time, then twice that, up to max_batch_bytes; if this keeps "
        "happening, raise timeout_s or lower max_batch_entities; readings stay buffered and are retried"
    )


async def test_requests_grow_back_once_the_far_side_answers_in_time_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, one slow minute of Orion halved the requests for good at each timeout: down to one entity a request
    until the gateway restarted."""
    seen: list[int] = []
    slow = [True]

    async def update(request: web.Request) -> web.Response:
        entities = orjson.loads(await request.read())["entities"]
        seen.append(len(entities))
        if slow[0]:
            await asyncio.sleep(4 * TIMEOUT_S)
        return web.Response(status=204)

    caplog.set_level(logging.INFO, logger="gateway.uplinks")
    async with serving(update) as url:
        # the 200 readings fit one request of at most 70,000 bytes
        uplink, _ = make_uplink(url, tmp_path, timeout_s=TIMEOUT_S, max_batch_bytes=70_000)
        async with uplink:
            batch = [reading(n) for n in range(200)]
            for _ in range(3):  # 200 entities, then 100, then 50: each unanswered in time
                [first, *_] = await uplink.deliver(batch)
                assert first.status is Status.RETRY
            slow[0] = False
            seen.clear()
            # 3 * SLOW_RECOVERY_AFTER would do; a loaded runner may miss the timeout again now and then
            for _ in range(10 * SLOW_RECOVERY_AFTER):
                await uplink.deliver(batch)
                if seen[-SLOW_RECOVERY_AFTER:] == [200] * SLOW_RECOVERY_AFTER:
                    break
    # an eighth of the batch a request, then ever more, then all of it in one request again: the limit doubled
    # after every SLOW_RECOVERY_AFTER requests answered in time, and then went
    assert seen[0] <= 25
    assert seen[-SLOW_RECOVERY_AFTER:] == [200] * SLOW_RECOVERY_AFTER
    assert any(
        r.getMessage().startswith("Orion answers in time again: requests are planned up to 70000 bytes")
        for r in caplog.records
    )


async def test_a_late_answer_is_a_transient_failure_not_unreachable(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.hang()
    uplink, _ = make_uplink(orion_double.url, tmp_path, timeout_s=0.3)
    async with uplink:
        [outcome] = await uplink.deliver([reading(1)])
    assert (outcome.status, outcome.fault) == (Status.RETRY, Fault.TRANSIENT)
    assert outcome.reason == (
        f"orion: no answer from {orion_double.url}/v2/op/update within timeout_s = 0.3 s after sending the request "
        f"(one entity, {uplink.counters.bytes} bytes); Orion may have applied it: if this keeps happening, raise "
        "timeout_s"
    )


async def test_a_connection_closed_after_the_request_went_out_is_transient(tmp_path: Path) -> None:
    async def answer_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)  # the whole request arrived ...
        writer.close()  # ... and the connection is dropped without an answer

    server = await asyncio.start_server(answer_nothing, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        uplink, _ = make_uplink(url, tmp_path)
        async with uplink:
            [outcome] = await uplink.deliver([reading(1)])
    finally:
        server.close()
        await server.wait_closed()
    assert (outcome.status, outcome.fault) == (Status.RETRY, Fault.TRANSIENT)
    assert outcome.reason.startswith(
        f"orion: the connection to {url}/v2/op/update failed after sending the request, got the server closed the "
        "connection"
    )


async def test_connection_refused_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    uplink, _ = make_uplink(url, tmp_path)
    async with uplink:
        outcomes = await uplink.deliver([reading(1), reading(2)])
    assert {(o.status, o.fault) for o in outcomes} == {(Status.RETRY, Fault.UNREACHABLE)}
    assert outcomes[0].reason.startswith(f"orion: cannot reach {url}/v2/op/update, got Cannot connect to host")


async def test_a_connect_that_times_out_is_unreachable(tmp_path: Path) -> None:
    # A listener whose accept queue is full drops new SYNs (Linux), as a firewall does: the connection is never
    # made, and the uplink's whole timeout passes in the connect phase.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    await asyncio.sleep(0.1)
    try:
        uplink, _ = make_uplink(f"http://127.0.0.1:{port}", tmp_path, timeout_s=0.5)
        async with uplink:
            [outcome] = await uplink.deliver([reading(1)])
    finally:
        for s in [*fillers, listener]:
            s.close()
    assert (outcome.status, outcome.fault) == (Status.RETRY, Fault.UNREACHABLE)
    assert (
        outcome.reason == f"orion: cannot reach http://127.0.0.1:{port}/v2/op/update, got no answer within the timeout"
    )


async def test_a_request_that_is_answered_in_time_is_delivered(orion_double: OrionDouble, tmp_path: Path) -> None:
    # the tracing that tells the phases apart changes nothing for a request that goes through
    uplink, _ = make_uplink(orion_double.url, tmp_path, timeout_s=5)
    async with uplink:
        assert await uplink.deliver([reading(1), reading(2)]) == [DELIVERED, DELIVERED]

"""The delivery loop overlaps reads and acknowledgements with deliveries, yet moves cursors only over delivered
records, in order, and sends each record once while nothing fails."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.store import TAIL_ROWS
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.api import Outcome, Status
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{n % 3}",
        entity_type="WaterObserved",
        attributes={"sequence": Attribute(value=n, type="Number")},
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="gauge"),
    )


async def run_until(loop: DeliveryLoop, done: object, timeout: float = 20.0) -> None:
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():  # type: ignore[operator]
                await asyncio.sleep(0.01)
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, timeout)


async def open_box(tmp_path: Path, tail_rows: int = TAIL_ROWS) -> Outbox:
    return await Outbox.open(
        tmp_path / "b.db",
        BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1),
        ["orion"],
        tail_rows=tail_rows,
    )


def orion_loop(orion_double: OrionDouble, tmp_path: Path, box: Outbox, **keys: object) -> DeliveryLoop:
    config = OrionConfig.model_validate({"name": "orion", "type": "orion", "url": orion_double.url, **keys})
    return DeliveryLoop(OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))), config, box)


@pytest.mark.parametrize("tail_rows", [0, TAIL_ROWS], ids=["read-from-file", "read-from-memory"])
async def test_a_retried_batch_drops_the_prefetched_one_and_nothing_is_skipped(
    orion_double: OrionDouble, tmp_path: Path, tail_rows: int
) -> None:
    # with no tail every batch is decoded from the file, so the next one is prefetched while one is in flight
    box = await open_box(tmp_path, tail_rows)
    await box.append_many([reading(n) for n in range(40)])
    # the second request fails: its batch was read while the first was in flight (and, read from the
    # file, the third batch was already prefetched while the second was being refused)
    orion_double.fail(503, count=1, after=1)
    # no random start delay (up to 5 s by default): it spreads a fleet, it is not what this test is about
    loop = orion_loop(
        orion_double, tmp_path, box, batch_max_rows=10, retry_initial_s=0.05, retry_max_s=0.1, start_delay_max_s=0
    )
    try:
        await run_until(loop, lambda: loop.delivered == 40)
    finally:
        await loop.uplink.close()
    sequences = [e["sequence"]["value"] for e in orion_double.written]
    assert sequences == list(range(40))  # the refused batch was applied by nobody, then re-sent in place
    assert loop.retries == 1
    stats = await box.stats()
    assert stats.uplinks["orion"].cursors == {"alert": 0, "normal": 40, "bulk": 0}
    assert stats.rows == 0
    await box.close()


def lane_reading(n: int, entity: str, lane: Lane) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes={"sequence": Attribute(value=n, type="Number")},
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="gauge"),
        lane=lane,
    )


@pytest.mark.parametrize("tail_rows", [0, TAIL_ROWS], ids=["read-from-file", "read-from-memory"])
async def test_while_appends_go_on_every_record_arrives_once_in_order(
    orion_double: OrionDouble, tmp_path: Path, tail_rows: int
) -> None:
    # The loop acknowledges a batch while it delivers the next and reads past what it sent, not past
    # the (lagging) cursors: a lane that was in one batch and not in the next must not be read twice.
    box = await open_box(tmp_path, tail_rows)
    # the producer may fill batches before the first read: no random start delay in a test of order
    loop = orion_loop(orion_double, tmp_path, box, batch_max_rows=7, batch_linger_ms=0, start_delay_max_s=0)
    rng = random.Random(7)
    lanes = {"alarm": Lane.ALERT, "g1": Lane.NORMAL, "g2": Lane.NORMAL, "log": Lane.BULK}
    sent: dict[str, list[int]] = {name: [] for name in lanes}
    n = 0

    async def produce() -> None:
        nonlocal n
        for _ in range(60):
            burst = []
            for _ in range(rng.randrange(1, 12)):
                name = rng.choice(list(lanes))
                burst.append(lane_reading(n, name, lanes[name]))
                sent[name].append(n)
                n += 1
            await box.append_many(burst)
            await asyncio.sleep(rng.choice([0, 0.002, 0.01]))

    try:
        producer = asyncio.create_task(produce())
        await run_until(loop, lambda: producer.done() and loop.delivered == n)
        await producer
    finally:
        await loop.uplink.close()
    got: dict[str, list[int]] = {name: [] for name in lanes}
    for e in orion_double.written:
        got[e["id"].rsplit(":", 1)[1]].append(e["sequence"]["value"])
    assert got == sent  # each once, in order per entity
    assert loop.retries == 0
    stats = await box.stats()
    assert stats.rows == 0  # every acknowledgement was written before the loop returned
    await box.close()


async def test_under_load_a_batch_lingers_to_fill_and_at_low_rates_nothing_waits(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    box = await open_box(tmp_path)
    # the longest linger allowed: "went at once" (< 0.6 s, a loaded CI machine included) is not mistaken for it
    loop = orion_loop(orion_double, tmp_path, box, batch_max_rows=40, batch_linger_ms=1000)
    task = asyncio.create_task(loop.run())

    async def delivered(count: int) -> float:
        t0 = time.monotonic()
        async with asyncio.timeout(10):
            while loop.delivered < count:
                await asyncio.sleep(0.005)
        return time.monotonic() - t0

    try:
        # low rate: one reading goes out at once
        await box.append(reading(0))
        assert await delivered(1) < 0.6
        requests_before = len(orion_double.requests_to("/v2/op/update"))
        # load: a full batch, then a part of one. That part waits for more rather than going alone,
        # so what comes meanwhile shares its request
        await box.append_many([reading(n) for n in range(1, 51)])
        await asyncio.sleep(0.1)
        await box.append_many([reading(n) for n in range(51, 61)])
        await delivered(61)
        requests = orion_double.requests_to("/v2/op/update")[requests_before:]
        assert [len(orjson.loads(r.body)["entities"]) for r in requests] == [40, 20]
        # that batch was small, so the next reading is not held back again
        await box.append(reading(61))
        assert await delivered(62) < 0.6
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 10)
        await loop.uplink.close()
    assert [e["sequence"]["value"] for e in orion_double.written] == list(range(62))
    await box.close()


# ---- dead letters are not silent -------------------------------------------------------------------


def station(n: int, entity: str) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes={"sequence": Attribute(value=n, type="Number")},
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="gauge"),
    )


async def instant(_: float) -> None:
    await asyncio.sleep(0)


async def test_each_dead_letter_is_logged_once_then_summed_up_and_shown_in_the_status(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.delivery")
    bad = [f"bad{n}" for n in range(13)]
    for entity in bad:
        orion_double.refuse_entity(f"urn:ngsi-ld:WaterObserved:{entity}", "Invalid characters in attribute value")
    box = await open_box(tmp_path)
    # each bad record between good ones: their refusals are trusted
    await box.append_many(
        [station(n, e) for n, e in enumerate(x for b in bad for x in ("ok", b))] + [station(99, "ok")]
    )
    loop = orion_loop(orion_double, tmp_path, box, batch_max_rows=100)
    try:
        await run_until(loop, lambda: loop.delivered + loop.rejected == 27)
    finally:
        await loop.uplink.close()

    def reason(entity: str) -> str:
        return (
            f"orion: Orion refused entity urn:ngsi-ld:WaterObserved:{entity}, "
            "got HTTP 400 BadRequest: Invalid characters in attribute value"
        )

    assert [r.getMessage() for r in caplog.records] == [
        f"dead-lettered urn:ngsi-ld:WaterObserved:{e}: {reason(e)}; once the cause is fixed: "
        "edgegw buffer retry-dead-letters --uplink orion"
        for e in bad[:10]
    ] + ["dead-lettered 3 more readings of this batch (13 in all); see edgegw buffer dead-letters --uplink orion"]
    assert all(r.levelno == logging.WARNING and r.component == "orion" for r in caplog.records)  # type: ignore[attr-defined]
    status = loop.status()
    assert (status.rejected, status.delivered, status.last_rejection) == (13, 14, reason("bad12"))
    assert (await box.stats()).dead_letters["orion"] == 13
    await box.close()


class ScriptedUplink:
    """The uplink contract answering what the test says. Only for what no real uplink can be made to do on
    cue here: a batch that is all dead letters right after a failure (the HTTP uplinks hold refusals
    unless something of the same delivery went through)."""

    name = "scripted"

    def __init__(self, answers: list[Status]) -> None:
        self.answers = answers

    async def start(self) -> None:
        pass

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        status = self.answers.pop(0) if self.answers else Status.DELIVERED
        return [Outcome(status, "far side says so")] * len(batch)

    async def close(self) -> None:
        pass


async def test_recovered_is_said_only_when_something_was_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(3)])
    config = OrionConfig.model_validate(
        {"name": "orion", "type": "orion", "url": "http://127.0.0.1:9", "batch_max_rows": 1, "start_delay_max_s": 0}
    )
    uplink = ScriptedUplink([Status.RETRY, Status.REJECTED, Status.DELIVERED])
    loop = DeliveryLoop(uplink, config, box, sleep=instant)  # type: ignore[arg-type]
    await run_until(loop, lambda: loop.delivered == 2)
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records] == [
        ("WARNING", "delivery failing (1 of 1 records to retry)"),
        ("WARNING", "dead-lettered urn"),  # not "recovered": nothing went through
        ("INFO", "delivery recovered after 1 attempts"),
    ]
    await box.close()


class RaisingUplink(ScriptedUplink):
    """An uplink with a bug: it raises instead of answering RETRY, as the contract says, the first `n` times."""

    def __init__(self, n: int) -> None:
        super().__init__([])
        self.raises = n
        self.delivered: list[int] = []

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        if self.raises:
            self.raises -= 1
            raise KeyError("sequence")
        self.delivered += [r.attributes["sequence"].value for r in batch]
        return await super().deliver(batch)


async def test_an_uplink_that_raises_is_retried_and_said_once_not_stopped_for_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(3)])
    config = OrionConfig.model_validate(
        {"name": "orion", "type": "orion", "url": "http://127.0.0.1:9", "start_delay_max_s": 0}
    )
    uplink = RaisingUplink(2)
    loop = DeliveryLoop(uplink, config, box, sleep=instant)  # type: ignore[arg-type]
    await run_until(loop, lambda: loop.delivered == 3)
    assert uplink.delivered == [0, 1, 2]  # nothing skipped, nothing twice
    assert [(r.levelname, r.getMessage().split(" s")[0].rsplit(" in ", 1)[0]) for r in caplog.records] == [
        ("ERROR", "delivery failed unexpectedly: KeyError: 'sequence'; retrying"),  # once, not per attempt
        ("INFO", "delivery recovered after 2 attempts"),
    ]
    assert caplog.records[0].exc_info is not None  # the traceback a developer needs
    assert loop.status().last_error == "KeyError: 'sequence'"
    await box.close()


class EchoingUplink(ScriptedUplink):
    """A far side that rejects and echoes the credentials it was sent, as some error pages do."""

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        return [Outcome(Status.REJECTED, "HTTP 400: bad request; you sent Authorization: Bearer eyJ0.eyJ1.c2ln")] * len(
            batch
        )


async def test_a_dead_letters_reason_is_stored_redacted_whatever_the_uplink_did(tmp_path: Path) -> None:
    box = await open_box(tmp_path)
    await box.append_many([reading(1)])
    config = OrionConfig.model_validate(
        {"name": "orion", "type": "orion", "url": "http://127.0.0.1:9", "start_delay_max_s": 0}
    )
    loop = DeliveryLoop(EchoingUplink([]), config, box, sleep=instant)  # type: ignore[arg-type]
    await run_until(loop, lambda: loop.rejected == 1)
    [letter] = await box.dead_letters()
    assert letter.reason == "HTTP 400: bad request; you sent Authorization: Bearer ***"
    assert loop.status().last_rejection == letter.reason
    await box.close()


class RecordingUplink(ScriptedUplink):
    """Delivers everything and notes each batch's sequence numbers; `during` runs inside the first delivery."""

    def __init__(self, during: object = None) -> None:
        super().__init__([])
        self.batches: list[list[int]] = []
        self.during = during

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        self.batches.append([r.attributes["sequence"].value for r in batch])
        if self.during is not None:
            during, self.during = self.during, None
            during()  # type: ignore[operator]
        return await super().deliver(batch)


@pytest.mark.parametrize(
    ("linger_ms", "batches"),
    [(20, [[0], [1, 2, 3, 4]]), (0, [[0], [1, 2, 3], [4]])],
    ids=["waits-for-the-wake-up", "linger-0-sends-at-once"],
)
async def test_rows_that_came_during_a_delivery_wait_for_their_wake_up_and_go_as_one_batch(
    tmp_path: Path, linger_ms: int, batches: list[list[int]]
) -> None:
    # At 500 readings/s a reading or two comes in while a batch is out; sent at once, every other batch
    # was one of those. They wait for the wake-up the buffer has scheduled for them (10 ms after the
    # first), and what comes meanwhile goes along; batch_linger_ms = 0 says never to wait.
    box = await open_box(tmp_path)
    loop_ = asyncio.get_running_loop()

    def meanwhile() -> None:
        for n in (1, 2, 3):
            box.append_many([reading(n)])  # committed in the background; the tail has them at once
        loop_.call_later(0.005, box.append_many, [reading(4)])  # before their wake-up, after the read

    uplink = RecordingUplink(meanwhile)
    config = OrionConfig.model_validate(
        {
            "name": "orion",
            "type": "orion",
            "url": "http://127.0.0.1:9",
            "start_delay_max_s": 0,
            "batch_linger_ms": linger_ms,
        }
    )
    loop = DeliveryLoop(uplink, config, box)  # type: ignore[arg-type]
    await box.append(reading(0))
    await run_until(loop, lambda: loop.delivered == 5)
    assert uplink.batches == batches
    await box.close()


async def test_stop_soon_ends_an_idle_wait_at_once(tmp_path: Path) -> None:
    box = await open_box(tmp_path)
    config = OrionConfig.model_validate({"name": "orion", "type": "orion", "url": "http://127.0.0.1:9"})
    loop = DeliveryLoop(RecordingUplink(), config, box)  # type: ignore[arg-type]
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(5):
        while loop.state is not UplinkState.IDLE:
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # parked in the buffer's wait (up to 1 s) by now
    t0 = time.monotonic()
    loop.stop_soon()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - t0 < 0.5
    assert loop.status().state is UplinkState.STOPPED
    await box.close()


# ---- a fleet coming back together does not hit the platform at once ------------------------------


class VirtualTime:
    """The loop's clock and sleep: sleeping moves the clock, and each sleep is recorded with how many
    requests the double had seen by then."""

    def __init__(self, orion: OrionDouble) -> None:
        self.now = 1000.0
        self.orion = orion
        self.sleeps: list[tuple[float, int]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append((round(seconds, 9), len(self.orion.requests)))
        self.now += seconds
        await asyncio.sleep(0)


async def test_a_backlog_at_start_waits_a_random_delay_and_live_traffic_does_not(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(30)])
    time_ = VirtualTime(orion_double)
    config = OrionConfig.model_validate(
        {"name": "orion", "type": "orion", "url": orion_double.url, "batch_max_rows": 10, "start_delay_max_s": 20}
    )
    uplink = OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))
    loop = DeliveryLoop(uplink, config, box, clock=time_.clock, sleep=time_.sleep, rng=random.Random(7))
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(10):
            while loop.delivered < 30:
                await asyncio.sleep(0.005)
            await box.append(reading(30))  # live: one reading, nothing waiting behind it
            while loop.delivered < 31:
                await asyncio.sleep(0.005)
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 10)
        await uplink.close()
    # one random delay, before the first request; none for the live reading
    assert time_.sleeps == [(round(random.Random(7).uniform(0, 20), 9), 0)]
    assert [e["sequence"]["value"] for e in orion_double.written] == list(range(31))
    await box.close()


async def test_after_an_outage_the_backlog_waits_a_random_delay_again(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(30)])
    orion_double.fail(503, count=1)
    time_ = VirtualTime(orion_double)
    config = OrionConfig.model_validate(
        {
            "name": "orion",
            "type": "orion",
            "url": orion_double.url,
            "batch_max_rows": 10,
            "start_delay_max_s": 5,
            "retry_initial_s": 2,
        }
    )
    uplink = OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))
    loop = DeliveryLoop(uplink, config, box, clock=time_.clock, sleep=time_.sleep, rng=random.Random(3))
    try:
        await run_until(loop, lambda: loop.delivered == 30)
    finally:
        await uplink.close()
    rng = random.Random(3)
    start = rng.uniform(0, 5)
    backoff = max(0.2, rng.uniform(0, 2))
    after_outage = rng.uniform(0, 5)
    # start delay before any request; the backoff after the 503; the delay again once a batch went through
    assert time_.sleeps == [(round(start, 9), 0), (round(backoff, 9), 1), (round(after_outage, 9), 2)]
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("a backlog is waiting")] == [
        f"a backlog is waiting: draining it in {d:.1f} s (random, up to start_delay_max_s = 5), so gateways that "
        "came back together do not all send at once"
        for d in (start, after_outage)
    ]
    assert [e["sequence"]["value"] for e in orion_double.written] == list(range(30))
    await box.close()


async def test_drain_rate_paces_a_backlog(orion_double: OrionDouble, tmp_path: Path) -> None:
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(100)])
    time_ = VirtualTime(orion_double)
    loop = DeliveryLoop(
        *_orion(orion_double, tmp_path, batch_max_rows=10, drain_rate=50, start_delay_max_s=0),
        box,
        clock=time_.clock,
        sleep=time_.sleep,
    )
    try:
        await run_until(loop, lambda: loop.delivered == 100)
    finally:
        await loop.uplink.close()
    # 10 readings per batch at 50 readings/s: each batch after the first waits 0.2 s for its turn
    assert time_.sleeps == [(0.2, n) for n in range(1, 10)]
    assert len(orion_double.requests) == 10
    await box.close()


async def test_stop_cuts_a_long_start_delay_short_and_keeps_the_backlog(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(30)])
    loop = DeliveryLoop(
        *_orion(orion_double, tmp_path, batch_max_rows=10, start_delay_max_s=3600), box, rng=random.Random(1)
    )  # the real asyncio.sleep: a delay of about 8 minutes
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(5):
        while loop.state is not UplinkState.WAITING:
            await asyncio.sleep(0.005)
    loop.stop_soon()
    await asyncio.wait_for(task, 1.0)
    await loop.uplink.close()
    assert orion_double.requests == []
    assert (await box.stats()).uplinks["orion"].pending["normal"] == 30
    await box.close()


def _orion(orion_double: OrionDouble, tmp_path: Path, **keys: object) -> tuple[OrionUplink, OrionConfig]:
    config = OrionConfig.model_validate({"name": "orion", "type": "orion", "url": orion_double.url, **keys})
    return OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))), config


async def test_an_unreachable_far_side_is_probed_every_probe_s_and_a_failing_one_backed_off(tmp_path: Path) -> None:
    # issue 18: no connection at all is not a refusal; delivery must resume within seconds of its return
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(3)])
    keys = {"name": "orion", "type": "orion", "start_delay_max_s": 0, "retry_max_s": 600, "probe_s": 2}
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    closed = OrionConfig.model_validate({**keys, "url": f"http://127.0.0.1:{free_port()}"})  # nothing listens
    uplink = OrionUplink(closed, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))
    loop = DeliveryLoop(uplink, closed, box, sleep=sleep, rng=random.Random(5))
    try:
        await run_until(loop, lambda: len(sleeps) >= 12)
    finally:
        await uplink.close()
    assert max(sleeps) <= 2.0
    assert sum(sleeps[6:]) / len(sleeps[6:]) >= 0.5  # jittered within [0.5, 1] x probe_s once backoff passes it
    await box.close()


async def test_a_far_side_that_answers_503_is_still_backed_off_to_retry_max_s(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    box = await open_box(tmp_path)
    await box.append_many([reading(n) for n in range(3)])
    orion_double.fail(503, count=1000)
    time_ = VirtualTime(orion_double)
    config = OrionConfig.model_validate(
        {
            "name": "orion",
            "type": "orion",
            "url": orion_double.url,
            "start_delay_max_s": 0,
            "retry_max_s": 600,
            "probe_s": 2,
        }
    )
    uplink = OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))
    loop = DeliveryLoop(uplink, config, box, clock=time_.clock, sleep=time_.sleep, rng=random.Random(5))
    try:
        await run_until(loop, lambda: len(time_.sleeps) >= 12)
    finally:
        await uplink.close()
    assert max(s for s, _ in time_.sleeps) > 2.0  # the far side answers: it is not probed, it is spared
    await box.close()

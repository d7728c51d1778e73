"""A far side that says how long it needs (Retry-After with a 429 or 503) is left alone that long.

The HTTP uplinks ignored it and came back at their own backoff (from retry_initial_s, 1 s): an API
gateway in front of Orion throttling a fleet, or an Orion behind a load balancer in maintenance, got
each gateway's retries at once, and the technician read nothing of what it asked.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.delivery import DeliveryLoop
from gateway.uplinks.api import Fault, Status
from gateway.uplinks.http.client import RETRY_AFTER_MAX_S, retry_after
from gateway.uplinks.orion import OrionUplink
from tests.support.kintone_double import KintoneDouble
from tests.uplinks.kintone.conftest import kintone as kintone
from tests.uplinks.kintone.conftest import visit
from tests.uplinks.kintone.test_uplink import visits
from tests.uplinks.scripted_peer import ScriptedPeer
from tests.uplinks.test_request_refusals import config, deliver, make_uplink, open_box, reading

NOW = 1_780_000_000.0


def test_seconds_and_dates_are_read_and_anything_else_is_no_wait() -> None:
    assert retry_after("120", NOW) == 120.0
    assert retry_after(" 0 ", NOW) == 0.0
    assert retry_after("86400", NOW) == RETRY_AFTER_MAX_S  # a proxy's "come back tomorrow" is not obeyed
    in_90_s = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
    assert retry_after(in_90_s, NOW) == 90.0
    an_hour_ago = format_datetime(datetime.fromtimestamp(NOW - 3600, UTC), usegmt=True)
    assert retry_after(an_hour_ago, NOW) == 0.0
    for bad in (None, "", "-5", "1.5", "soon", "Fri, 31 Dec 1999 23:59:59", "99999999999"):
        assert retry_after(bad, NOW) == 0.0, bad


@given(st.text(max_size=40))
def test_any_header_text_gives_a_wait_within_bounds(text: str) -> None:
    assert 0.0 <= retry_after(text, NOW) <= RETRY_AFTER_MAX_S


async def test_a_429_with_retry_after_is_retried_no_sooner_and_says_so(tmp_path: Path) -> None:
    async with ScriptedPeer(429, body="slow down", content_type="text/plain", headers={"Retry-After": "45"}) as peer:
        [outcomes] = await deliver(make_uplink(peer.url, tmp_path), [reading("g1", 1), reading("g2", 2)])
        assert {(o.status, o.fault, o.retry_after_s) for o in outcomes} == {(Status.RETRY, Fault.TRANSIENT, 45.0)}
        assert outcomes[0].reason.endswith("; it asks to wait 45 s (Retry-After)")

        # the delivery loop waits at least that, though its own backoff would have come back within 1 s
        box = await open_box(tmp_path)
        await box.append_many([reading("g1", 1)])
        cfg = config(peer.url, start_delay_max_s=0, retry_initial_s=0.5, retry_max_s=1)
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            await asyncio.sleep(0)

        loop = DeliveryLoop(
            OrionUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))), cfg, box, sleep=sleep
        )
        task = asyncio.create_task(loop.run())
        try:
            async with asyncio.timeout(10):
                while len(slept) < 2:
                    await asyncio.sleep(0.005)
        finally:
            loop.stop_soon()
            await asyncio.wait_for(task, 10)
            await loop.uplink.close()
            await box.close()
        assert slept[:2] == [45.0, 45.0]


async def test_a_retry_after_date_on_a_503_counts_and_other_statuses_ignore_it(tmp_path: Path) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=100), usegmt=True)
    async with ScriptedPeer(503, body="maintenance", content_type="text/plain", headers={"Retry-After": when}) as peer:
        [outcomes] = await deliver(make_uplink(peer.url, tmp_path), [reading("g1", 1)])
    assert 90.0 <= outcomes[0].retry_after_s <= 100.0
    async with ScriptedPeer(500, body="boom", content_type="text/plain", headers={"Retry-After": "45"}) as peer:
        [outcomes] = await deliver(make_uplink(peer.url, tmp_path), [reading("g1", 1)])
    assert (outcomes[0].status, outcomes[0].retry_after_s) == (Status.RETRY, 0.0)
    assert "Retry-After" not in outcomes[0].reason


async def test_kintone_asking_to_wait_is_waited_for(kintone: KintoneDouble, tmp_path: Path) -> None:
    _, up = visits(kintone.url, tmp_path)
    kintone.retry_after = "30"
    await up.start()
    try:
        kintone.fail(503, 1)
        [outcome] = await up.deliver([visit(1, 1)])
    finally:
        await up.close()
    assert (outcome.status, outcome.retry_after_s) == (Status.RETRY, 30.0)
    assert outcome.reason.endswith("; it asks to wait 30 s (Retry-After)")

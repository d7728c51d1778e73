"""kintone's counters count a reading once, when the buffer's acknowledgement settles it.

The finding (a reviewer's run, reproduced): a batch [a good visit, a visit the plan refuses, a
reading no mapping takes] against kintone answering 503. The good visit is retried, so `Store.ack`
stops the lane's cursor there and the two after it are read and sent again with it; yet every try
counted all three outcomes: after three tries delivered/rejected/retries were 3/3/3 and the
diagnostics said `skipped 3`, while nothing had settled and no dead letter existed.

Here the uplink is given what the buffer would give it: the whole batch, then, once kintone is
back, only the records the first acknowledgement left unsettled.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gateway.adapter_api import AdapterContext
from gateway.records import Lane, Reading
from gateway.secrets import SecretStore
from gateway.uplinks.api import Status
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from tests.support.kintone_double import KintoneDouble
from tests.uplinks.kintone.conftest import VISITS_APP, visit, visits_section


def visits(url: str, tmp_path: Path) -> KintoneUplink:
    SecretStore(tmp_path).set("visits_token", "visits-token-abcdef0123456789")
    cfg = KintoneConfig.model_validate(visits_section(url))
    return KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


def counts(up: KintoneUplink) -> tuple[int, int, int, int]:
    c = up.counters
    assert c.skipped == up.diagnostics()["skipped"]
    return c.delivered, c.rejected, c.retries, c.skipped


def unmapped(n: int) -> Reading:
    return replace(visit(n, n), entity_type="Other")


async def test_nothing_is_counted_delivered_rejected_or_skipped_behind_a_retried_record(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    batch = [visit(1, 5), visit(2, [1, 2]), unmapped(3)]
    up = visits(kintone.url, tmp_path)
    async with up:
        for _ in range(3):
            kintone.fail(503, 1)
            outcomes = await up.deliver(batch)
            assert [o.status for o in outcomes] == [Status.RETRY, Status.REJECTED, Status.DELIVERED]
        assert counts(up) == (0, 0, 3, 0)
        # kintone is back: the lane settles, and each reading is counted once
        outcomes = await up.deliver(batch)
        assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
        assert counts(up) == (2, 1, 3, 1)
    assert [r["visitors"] for r in kintone.records_of(VISITS_APP)] == ["5"]


async def test_another_lanes_records_settle_and_count_while_one_lane_is_retried(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    normal = [visit(1, 5), visit(2, [1, 2]), unmapped(3)]
    alerts = [replace(visit(4, [4]), lane=Lane.ALERT), replace(unmapped(5), lane=Lane.ALERT)]
    up = visits(kintone.url, tmp_path)
    async with up:
        kintone.fail(503, 1)
        outcomes = await up.deliver(normal + alerts)
        assert [o.status for o in outcomes] == [Status.RETRY] + [Status.REJECTED, Status.DELIVERED] * 2
        # the alert lane settles (one refused, one skipped); the normal lane waits behind its retry
        assert counts(up) == (1, 1, 1, 1)
        # the buffer sends the normal lane again, and only it
        outcomes = await up.deliver(normal)
        assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
        assert counts(up) == (3, 2, 1, 2)


async def test_an_all_delivered_batch_counts_every_reading_and_the_skipped_ones(
    kintone: KintoneDouble, tmp_path: Path
) -> None:
    up = visits(kintone.url, tmp_path)
    async with up:
        await up.deliver([visit(1, 1), unmapped(2), visit(3, 3)])
        assert counts(up) == (3, 0, 0, 1)

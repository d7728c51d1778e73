"""Observation times ahead of the gateway clock and older than the last one sent, against a loopback server.

Regressions of review 2: a local time (JST) written as UTC was stored 9 h in the future without a word, and once
a wrong future time was sent every right observation was dropped as stale, silently, until real time passed it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.http_poll.adapter import _CLOCK_WORDS, HttpPollAdapter
from adapters.http_poll.config import HttpPollConfig
from adapters.http_poll.mapping import LastSeen, Mapper, Older
from adapters.jsonmap.ahead import AheadKeeper
from gateway.adapter_api import AdapterContext
from gateway.device_clock import HostClock
from gateway.records import Reading
from tests.adapters.http_poll.peers import DocServer, serve, wait_for
from tests.adapters.http_poll.test_adapter import LOGGER, Collector, config, warnings_of

NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 10:00 JST
SYNCED = HostClock(synced=True, uptime_s=86_400.0, rtc=True)


def iso_cfg(url: str = "http://127.0.0.1:1/x") -> HttpPollConfig:
    return config(
        url,
        interval_s=0.2,
        timeout_s=0.2,  # the machine is noisy: a slow answer is not what these tests are about
        mappings=[
            {
                "items": "観測所",
                "entity_id": "urn:ngsi-ld:WaterObserved:{観測所番号}",
                "entity_type": "WaterObserved",
                "timestamp": {"path": "観測時刻", "format": "iso8601"},
                "attributes": [{"path": "水位", "name": "waterLevel", "unit": "MTR"}],
            }
        ],
    )


def doc(at: str, level: float) -> bytes:
    return json.dumps({"観測所": [{"観測所番号": "0431", "水位": level, "観測時刻": at}]}, ensure_ascii=False).encode()


@asynccontextmanager
async def running(
    cfg: HttpPollConfig,
    clock: Callable[[], datetime],
    host: HostClock = SYNCED,
    not_before: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> AsyncIterator[tuple[HttpPollAdapter, Collector]]:
    adapter = HttpPollAdapter(
        cfg,
        AdapterContext(gateway_id="gw1", data_dir="/nonexistent"),
        clock=clock,
        clock_synced=lambda: host,
        not_before=not_before,
    )
    collector = Collector()
    task = asyncio.create_task(adapter.run(collector))
    try:
        yield adapter, collector
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def levels(got: Collector) -> list[tuple[Any, str]]:
    return [(r.attributes["waterLevel"].value, r.observed_at.isoformat()) for r in got.readings]


async def test_a_local_time_written_as_utc_is_refused_saying_nine_hours(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = DocServer(body=doc("2026-07-01T10:00:00Z", 2.35))  # 10:00 JST labelled UTC: 9 h in the future
    async with serve(server), running(iso_cfg(server.url), lambda: NOW) as (adapter, got):
        await wait_for(lambda: adapter.malformed["bad_timestamp"] >= 2, what="two refusals")
        # the API is fixed: correct JST times arrive at once
        server.body = doc("2026-07-01T09:55:00+09:00", 2.40)
        await wait_for(lambda: len(got.readings) == 1, what="the right reading")
    assert levels(got) == [(2.40, "2026-07-01T00:55:00+00:00")]
    assert adapter.gateway_clock_unsynced == 0
    (warning,) = warnings_of(caplog)
    assert warning.startswith(
        "dropping malformed input (bad_timestamp): 観測所[0].観測時刻 (timestamp): must be at most 15 min ahead of the "
        "gateway clock, got '2026-07-01T10:00:00Z' (2026-07-01T10:00:00+00:00), 9 h ahead: a local time (JST) "
        'written as UTC? fix the source, or read it in the mapping\'s zone: format = "strptime" with the offset as '
        'literal text in the pattern (e.g. "%Y-%m-%dT%H:%M:%SZ"); document starts '
    )


async def test_a_right_device_is_kept_while_the_gateway_clock_is_unsynchronised_and_stale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a box without RTC booted at its saved time two days ago, NTP not reached: every right time is days ahead
    caplog.set_level(logging.INFO)
    behind = NOW - timedelta(days=2)
    stale = HostClock(synced=False, uptime_s=60.0, rtc=False)
    server = DocServer(body=doc("2026-07-01T09:50:00+09:00", 2.35))
    async with (
        serve(server),
        running(iso_cfg(server.url), lambda: behind, stale, not_before=behind) as (adapter, got),
    ):
        await wait_for(lambda: len(got.readings) == 1, what="the kept reading")
        server.body = doc("2026-07-01T10:00:00+09:00", 2.40)
        await wait_for(lambda: len(got.readings) == 2, what="the next one")
    assert levels(got) == [(2.35, "2026-07-01T00:50:00+00:00"), (2.40, "2026-07-01T01:00:00+00:00")]
    assert adapter.gateway_clock_unsynced == 2
    assert adapter.malformed["bad_timestamp"] == 0
    (warning,) = warnings_of(caplog)  # once a spell
    assert warning.startswith(
        "http poll: entity urn:ngsi-ld:WaterObserved:0431 observed at 2026-07-01T00:50:00+00:00, 1 day ahead of the "
        "gateway's clock (2026-06-29T01:00:00+00:00), which the kernel says is not synchronised (NTP): kept the "
        "source's time"
    )


async def test_over_a_believed_unsynchronised_clock_a_lead_of_minutes_is_kept_one_of_whole_hours_is_not() -> None:
    # a good RTC on a network without NTP: not synchronised, but the clock started after the latest time known
    believed = HostClock(synced=False, uptime_s=3600.0, rtc=True)
    server = DocServer(body=doc("2026-07-01T10:40:00+09:00", 2.35))  # 40 min ahead: an RTC drifted behind
    async with (
        serve(server),
        running(iso_cfg(server.url), lambda: NOW, believed, not_before=NOW - timedelta(days=30)) as (adapter, got),
    ):
        await wait_for(lambda: len(got.readings) == 1, what="the kept reading")
        server.body = doc("2026-07-01T10:05:00Z", 2.40)  # 9 h 5 min: JST as UTC, the clock is not to blame
        await wait_for(lambda: adapter.malformed["bad_timestamp"] >= 2, what="two refusals")
    assert levels(got) == [(2.35, "2026-07-01T01:40:00+00:00")]
    assert adapter.gateway_clock_unsynced == 1
    assert "9 h ahead: a local time (JST) written as UTC?" in adapter.last_error


async def test_after_the_gateway_clock_is_set_back_older_right_times_are_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the box's clock ran an hour fast; a right time 50 min past the real one was within it and sent; NTP then set
    # the clock back: the next right times are older than that one, which is now far ahead of the clock
    caplog.set_level(logging.INFO)
    now = [NOW + timedelta(hours=1)]
    server = DocServer(body=doc("2026-07-01T10:50:00+09:00", 2.35))
    async with serve(server), running(iso_cfg(server.url), lambda: now[0]) as (adapter, got):
        await wait_for(lambda: len(got.readings) == 1, what="the first reading")
        now[0] = NOW + timedelta(minutes=5)
        server.body = doc("2026-07-01T10:05:00+09:00", 2.60)  # older than 10:50, 45 min ahead of the clock now
        await wait_for(lambda: len(got.readings) == 2, what="the right reading")
        await wait_for(lambda: adapter.duplicates >= 2, what="two repeats")
    assert levels(got) == [(2.35, "2026-07-01T01:50:00+00:00"), (2.60, "2026-07-01T01:05:00+00:00")]
    assert (adapter.stale, adapter.rewound) == (0, 1)
    assert warnings_of(caplog) == [
        "urn:ngsi-ld:WaterObserved:0431: observed at 2026-07-01T01:05:00+00:00, older than the last observation sent "
        "(2026-07-01T01:50:00+00:00), which is still more than 15 min ahead of the gateway clock "
        "(2026-07-01T01:05:00+00:00) so was wrong: sent, not dropped as stale; counted in rewound; check the source's "
        "clock, the timestamp zone and the box's clock"
    ]


async def test_stale_observations_are_warned_once_naming_the_entity_and_both_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server = DocServer(body=doc("2026-07-01T09:50:00+09:00", 2.35))
    async with serve(server), running(iso_cfg(server.url), lambda: NOW) as (adapter, got):
        await wait_for(lambda: len(got.readings) == 1, what="the first reading")
        server.body = doc("2026-07-01T09:40:00+09:00", 2.20)  # a cache serving an older copy
        await wait_for(lambda: adapter.stale >= 3, what="three stale polls")
        server.body = doc("2026-07-01T10:00:00+09:00", 2.40)
        await wait_for(lambda: len(got.readings) == 2, what="the newer reading")
    assert levels(got) == [(2.35, "2026-07-01T00:50:00+00:00"), (2.40, "2026-07-01T01:00:00+00:00")]
    assert warnings_of(caplog) == [
        "urn:ngsi-ld:WaterObserved:0431: dropping the observation at 2026-07-01T00:40:00+00:00, older than the last "
        "one sent (2026-07-01T00:50:00+00:00): the source serves an older copy (a cache), or its clock went back; "
        "further ones counted in stale"
    ]
    infos = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert "observations newer than the last ones sent arrive again" in infos


def one(at: str, level: float, now: datetime = NOW) -> Reading:
    (r,) = Mapper(iso_cfg().mappings, adapter="river").map(doc(at, level), now).readings
    return r


def test_last_seen_forgets_a_last_time_still_ahead_of_now_beyond_the_allowance() -> None:
    seen = LastSeen()
    wrong = one("2026-07-01T10:50:00+09:00", 2.35, NOW + timedelta(hours=1))
    seen.remember(wrong)
    right = one("2026-07-01T10:05:00+09:00", 2.60)
    sel = seen.select([right], NOW + timedelta(minutes=5))  # 45 min ahead: more than a time read now may be
    older = Older(entity_id=right.entity_id, observed_at=right.observed_at, last=wrong.observed_at)
    assert (sel.fresh, sel.stale, sel.rewound, sel.first_rewound) == ([right], 0, 1, older)
    # within the allowance a source's own small lead is as likely: an older copy is stale (a cache must not roll
    # the platform back), and once real time has passed it, all the more
    for at in (NOW + timedelta(minutes=35), NOW + timedelta(minutes=51)):
        sel = seen.select([right], at)
        assert (sel.fresh, sel.stale, sel.rewound, sel.first_stale) == ([], 1, 0, older)


def two(level_a: float, level_b: float) -> bytes:
    items = [
        {"観測所番号": "0431", "水位": level_a, "観測時刻": "2026-07-01T09:50:00+09:00"},
        {"観測所番号": "0431", "水位": level_b, "観測時刻": "2026-07-01T10:00:00+09:00"},
    ]
    return json.dumps({"観測所": items}, ensure_ascii=False).encode()


async def test_while_the_clock_is_unsynchronised_and_behind_older_times_are_stale_not_rewound() -> None:
    """Regression of review 3: with the box's clock days behind, every right time sent was far ahead of it, so each
    older one was 'rewound': a document of two observations went out again at every poll, and a cache's older copy
    rolled the platform back."""
    behind = NOW - timedelta(days=2)
    stale = HostClock(synced=False, uptime_s=60.0, rtc=False)
    server = DocServer(body=two(2.35, 2.40))
    async with (
        serve(server),
        running(iso_cfg(server.url), lambda: behind, stale, not_before=behind) as (adapter, got),
    ):
        await wait_for(lambda: adapter.polls >= 5, what="five polls")
        server.body = doc("2026-07-01T09:40:00+09:00", 2.20)  # a cache serving an older copy
        polls = adapter.polls
        await wait_for(lambda: adapter.polls >= polls + 3, what="three more polls")
    assert levels(got) == [(2.35, "2026-07-01T00:50:00+00:00"), (2.40, "2026-07-01T01:00:00+00:00")]
    assert adapter.rewound == 0 and adapter.stale >= 3


def test_last_seen_rewinds_every_right_observation_of_a_document_oldest_first() -> None:
    """Regression of review 5: only the entity's newest observation was rewound, so the document's other right ones
    (its history since the fix) were never sent, and a wrong time still listed in the document blocked the rewind.
    The box's clock ran an hour fast and NTP set it back: the time sent then (10:50) is 50 min ahead now."""
    seen = LastSeen()
    wrong = one("2026-07-01T10:50:00+09:00", 2.50, NOW + timedelta(hours=1))
    seen.remember(wrong)
    history = [one(f"2026-07-01T09:{m}:00+09:00", 2.3 + i / 100) for i, m in enumerate(("40", "50"))]
    right = one("2026-07-01T10:00:00+09:00", 2.40)
    # still listed, the wrong one is refused when read now (50 min ahead of a synchronised clock): not selected
    refused = Mapper(iso_cfg().mappings, adapter="river").map(doc("2026-07-01T10:50:00+09:00", 2.50), NOW)
    assert refused.readings == [] and "50 min ahead" in str(refused.errors[0])
    sel = seen.select([*history, right], NOW, judges=True)
    assert (sel.fresh, sel.rewound) == ([*history, right], 1)
    for r in sel.fresh:
        seen.remember(r)
    sel = seen.select([*history, right], NOW, judges=True)  # the same document again: nothing more
    assert (sel.fresh, sel.stale, sel.rewound, sel.duplicates) == ([], 2, 0, 1)


async def test_a_device_ahead_of_a_believed_clock_sends_a_document_of_two_observations_once() -> None:
    """On a believed clock a device legitimately 40 min ahead is kept; its document's older observation is history,
    never rewound: no observation goes out again at the next polls."""
    believed = HostClock(synced=False, uptime_s=3600.0, rtc=True)
    items = [
        {"観測所番号": "0431", "水位": 2.35, "観測時刻": "2026-07-01T10:30:00+09:00"},
        {"観測所番号": "0431", "水位": 2.40, "観測時刻": "2026-07-01T10:40:00+09:00"},
    ]
    server = DocServer(body=json.dumps({"観測所": items}, ensure_ascii=False).encode())
    async with (
        serve(server),
        running(iso_cfg(server.url), lambda: NOW, believed, not_before=NOW - timedelta(days=30)) as (adapter, got),
    ):
        await wait_for(lambda: adapter.polls >= 6, what="six polls")
    assert levels(got) == [(2.35, "2026-07-01T01:30:00+00:00"), (2.40, "2026-07-01T01:40:00+00:00")]
    assert adapter.rewound == 0


@pytest.mark.parametrize(
    ("host", "known", "judges"),
    [
        (SYNCED, NOW, True),
        # a good RTC without NTP: believed for what it keeps, but it does not second-guess what it kept
        (HostClock(synced=False, uptime_s=3600.0, rtc=True), NOW - timedelta(days=30), False),
        # no RTC, booted at its saved time (the latest it knew): evidently not set
        (HostClock(synced=False, uptime_s=60.0, rtc=False), NOW, False),
    ],
)
def test_only_a_synchronised_clock_judges_a_time_sent_earlier(host: HostClock, known: datetime, judges: bool) -> None:
    keeper = AheadKeeper(logging.getLogger(LOGGER), lambda: host, words=_CLOCK_WORDS, not_before=known)
    assert keeper.judges() is judges

"""Bundle fetches are spread: the first at a random point soon after the start, the next ones jittered.

Each generation fetched on its first tick, then exactly every `interval_s`: boxes that restarted
together (a power cut's end) fetched in step for ever. A failing fetch is said once a spell
(WARNING), and its end once (INFO), not a WARNING every interval.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from gateway.fleet import service
from gateway.fleet.service import FleetService
from tests.fleet.conftest import Clock
from tests.fleet.test_remote_config import config_text, runtime_on
from tests.support.orion_double import OrionDouble

INTERVAL_S = 900.0
FIRST_FETCH_WITHIN_S = 300.0  # the service's bounds, as README.md states them
FETCH_JITTER = 0.1


def test_the_bounds_are_the_services() -> None:
    assert (service.FIRST_FETCH_WITHIN_S, service.FETCH_JITTER) == (FIRST_FETCH_WITHIN_S, FETCH_JITTER)


@dataclass
class Platform:
    clock: Clock
    status: int = 404
    hits: list[float] = field(default_factory=list)
    url: str = ""

    async def get(self, request: web.Request) -> web.Response:
        self.hits.append(self.clock())
        return web.Response(status=self.status, body=b"")


@pytest.fixture
async def platform(clock: Clock) -> AsyncIterator[Platform]:
    p = Platform(clock)
    app = web.Application()
    app.router.add_get("/b.json", p.get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}/b.json"
    try:
        yield p
    finally:
        await runner.cleanup()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fetch_lines(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level and "fetch" in r.getMessage()]


@pytest.fixture
def fleet_log() -> Iterator[Records]:
    # its own logger: a reload's logging setup replaces the root's handlers (pytest's capture among them)
    handler, logger = Records(), logging.getLogger("gateway.fleet")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def with_url(tmp_path: Path, orion_url: str, url: str) -> str:
    return config_text(tmp_path, orion_url).replace(
        "health_window_s = 600", f'health_window_s = 600\nurl = "{url}"\nallow_http = true\ninterval_s = {INTERVAL_S:g}'
    )


async def ticks(fleet: FleetService, clock: Clock, until_s: float) -> None:
    """Ticks every 10 s of the fleet's clock (as the service runs them), for `until_s`."""
    end = clock() + until_s
    while clock() < end:
        await fleet.tick(clock())
        clock.advance(10)


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_the_first_fetch_is_at_a_random_point_soon_after_the_start_and_the_next_ones_jittered(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, platform: Platform, seed: int
) -> None:
    async with runtime_on(tmp_path / "gateway.toml", with_url(tmp_path, orion_double.url, platform.url)) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        fleet.rng = random.Random(seed)
        expected_first = random.Random(seed).uniform(0, min(INTERVAL_S, FIRST_FETCH_WITHIN_S))
        start = clock()
        await ticks(fleet, clock, FIRST_FETCH_WITHIN_S + 10 + 2 * INTERVAL_S * (1 + FETCH_JITTER))
    first = platform.hits[0] - start
    assert 10 < first <= FIRST_FETCH_WITHIN_S + 10  # not on the first tick, and soon
    assert first == pytest.approx(expected_first, abs=10)  # the tick after the drawn point
    gaps = [b - a for a, b in zip(platform.hits, platform.hits[1:], strict=False)]
    assert len(gaps) >= 2
    assert all(INTERVAL_S * (1 - FETCH_JITTER) <= g <= INTERVAL_S * (1 + FETCH_JITTER) + 10 for g in gaps), gaps
    assert len(set(gaps)) > 1 or random.Random(seed).random() == 0  # not exactly every interval


async def test_two_boxes_started_together_do_not_fetch_in_step(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, platform: Platform
) -> None:
    firsts = []
    for box, seed in (("a", 10), ("b", 11)):
        (tmp_path / box).mkdir()
        async with runtime_on(
            tmp_path / box / "gateway.toml", with_url(tmp_path / box, orion_double.url, platform.url)
        ) as runtime:
            fleet = runtime.gateway.fleet
            assert fleet is not None
            fleet.rng = random.Random(seed)
            clock.now = start = 1_782_831_600.0
            platform.hits.clear()
            await ticks(fleet, clock, FIRST_FETCH_WITHIN_S + 10)
            firsts.append(platform.hits[0] - start)
    assert abs(firsts[0] - firsts[1]) >= 20, firsts


async def test_a_failing_fetch_is_said_once_a_spell_and_its_end_once(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, platform: Platform, fleet_log: Records
) -> None:
    async with runtime_on(tmp_path / "gateway.toml", with_url(tmp_path, orion_double.url, platform.url)) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        await ticks(fleet, clock, FIRST_FETCH_WITHIN_S + 10 + 3 * INTERVAL_S * (1 + FETCH_JITTER))
        assert len(platform.hits) >= 4
        assert fleet_log.fetch_lines(logging.WARNING) == [
            f"remote config not fetched from {platform.url}: remote config: GET {platform.url} answered 404; "
            f"tried again every {INTERVAL_S:g} s"
        ]
        assert len(fleet_log.fetch_lines(logging.DEBUG)) == len(platform.hits) - 1
        assert (await fleet.status())["fleet"]["remote_config"]["fetch_failures"] == len(platform.hits)
        platform.status = 200
        await ticks(fleet, clock, INTERVAL_S * (1 + FETCH_JITTER) + 10)
        assert fleet_log.fetch_lines(logging.INFO) == [f"remote config: fetched from {platform.url} again"]
        assert len(fleet_log.fetch_lines(logging.WARNING)) == 1

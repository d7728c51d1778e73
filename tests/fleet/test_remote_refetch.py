"""The bundle at `url` fetched again after it was applied is "unchanged": nothing recorded, nothing re-sent.

It was refused as replayed at every interval: a `refused` event, an audit entry and an INFO line
each time, the Device entity showing `refused`, `confirmed` pushed out of status. The platform
here is a real HTTP server; with ETag/Last-Modified it answers 304 to the conditional GET the
gateway sends. The same serial with other content is still refused: that is a replay or tamper.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import Runtime
from gateway.audit.log import AuditLog
from gateway.config import load_config
from gateway.fleet import remote
from tests.fleet.conftest import Clock, until
from tests.support.orion_double import OrionDouble

pytestmark = pytest.mark.usefixtures("fetch_on_schedule")  # the fetches at the ticks below
KEY = Ed25519PrivateKey.generate()
LAST_MODIFIED = "Wed, 01 Jul 2026 03:00:00 GMT"


@dataclass
class Platform:
    """Serves the latest bundle at /bundle.json; with `validators`, as a web server serving a file does."""

    validators: bool
    body: bytes = b""
    asked: list[tuple[str | None, str | None]] = field(default_factory=list)  # If-None-Match, If-Modified-Since
    not_modified: int = 0
    url: str = ""

    async def get(self, request: web.Request) -> web.Response:
        self.asked.append((request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")))
        if not self.validators:
            return web.Response(body=self.body)
        etag = f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=self.body, headers={"ETag": etag, "Last-Modified": LAST_MODIFIED})


@pytest.fixture(params=[False, True], ids=["plain", "etag"])
async def platform(request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    p = Platform(validators=request.param)
    app = web.Application()
    app.router.add_get("/bundle.json", p.get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}/bundle.json"
    try:
        yield p
    finally:
        await runner.cleanup()


class Lines(logging.Handler):
    """The fleet's log lines from INFO up, on its own logger: a reload's logging setup replaces the root's
    handlers (pytest's capture among them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def fleet_lines() -> Iterator[list[str]]:
    handler, logger = Lines(), logging.getLogger("gateway.fleet")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def config_text(tmp_path: Path, orion_url: str, bundle_url: str, *, rate: float) -> str:
    return f"""
[gateway]
id = "gw-fleet"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "gauges"
type = "simulated"
rate = {rate}

[[uplinks]]
name = "platform"
type = "orion"
url = "{orion_url}"
retry_initial_s = 0.05
retry_max_s = 0.2

[fleet.alarms]
rules = []

[fleet.remote_config]
public_key = "{remote.public_key_b64(KEY)}"
url = "{bundle_url}"
allow_http = true
interval_s = 900
health_window_s = 600
"""


def signed(text: str, serial: int) -> bytes:
    return remote.sign_bundle(KEY, gateway="gw-fleet", serial=serial, config=text, issued_at=datetime.now(UTC))


def steps(tmp_path: Path) -> list[str]:
    return [e["step"] for e in remote.RemoteState(tmp_path / "data").doc["events"]]


def refusals(tmp_path: Path) -> int:
    return AuditLog(tmp_path / "data" / "web").count(action="fleet.remote_config.refused")


def device_step(orion: OrionDouble) -> str | None:
    for e in orion.entities.values():
        if e["type"] == "Device" and "remoteConfig" in e:
            return str(e["remoteConfig"]["value"]["step"])
    return None


async def confirmed(rt: Runtime, tmp_path: Path, clock: Clock, orion: OrionDouble) -> Runtime:
    """The served bundle fetched, applied, confirmed; its Device entity at the platform says so."""
    fleet = rt.gateway.fleet
    assert fleet is not None
    await fleet.tick(clock.now)
    await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
    fleet = rt.gateway.fleet  # the generation the apply reloaded into
    assert fleet is not None
    await fleet.tick(clock.advance(1))
    await until(lambda: all(loop.last_delivery > 0 for loop in rt.gateway.loops))
    await fleet.tick(clock.advance(5))
    assert steps(tmp_path) == ["verified", "applied", "confirmed"]
    await fleet.tick(clock.advance(1))  # the step changed: the Device entity is sent at once
    await until(lambda: device_step(orion) == "confirmed")
    return rt


async def test_the_applied_bundle_fetched_again_records_nothing(
    platform: Platform, orion_double: OrionDouble, tmp_path: Path, clock: Clock, fleet_lines: list[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path, orion_double.url, platform.url, rate=0.001))
    platform.body = signed(config_text(tmp_path, orion_double.url, platform.url, rate=0.002), 2)
    rt = Runtime(path, load_config(path))
    await rt.start()
    try:
        await confirmed(rt, tmp_path, clock, orion_double)
        fleet_lines.clear()
        fetches = len(platform.asked)
        fleet = rt.gateway.fleet
        assert fleet is not None
        for _ in range(6):  # the platform still serves the bundle at each interval
            doc = await fleet.tick(clock.advance(900))
        assert len(platform.asked) == fetches + 6
        assert steps(tmp_path) == ["verified", "applied", "confirmed"]
        assert [e["step"] for e in doc["fleet"]["remote_config"]["events"]] == ["verified", "applied", "confirmed"]
        assert refusals(tmp_path) == 0
        assert fleet_lines == []
        await fleet.tick(clock.advance(300))  # a report interval: the Device entity is sent again
        await until(lambda: orion_double.update_count > 0 and device_step(orion_double) == "confirmed")
        assert device_step(orion_double) == "confirmed"
        if platform.validators:  # each fetch after the first of this generation is conditional: 304
            assert platform.asked[-6:] == [(platform.asked[-1][0], LAST_MODIFIED)] * 6
            assert platform.asked[-1][0] is not None
            assert platform.not_modified >= 5
        else:
            assert platform.asked[-6:] == [(None, None)] * 6
    finally:
        await rt.stop()


async def test_the_same_serial_with_other_content_is_still_refused(
    platform: Platform, orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path, orion_double.url, platform.url, rate=0.001))
    platform.body = signed(config_text(tmp_path, orion_double.url, platform.url, rate=0.002), 2)
    rt = Runtime(path, load_config(path))
    await rt.start()
    try:
        await confirmed(rt, tmp_path, clock, orion_double)
        fleet = rt.gateway.fleet
        assert fleet is not None
        await fleet.tick(clock.advance(900))  # unchanged: its validators are kept
        platform.body = signed(config_text(tmp_path, orion_double.url, platform.url, rate=0.5), 2)
        await fleet.tick(clock.advance(900))
        assert steps(tmp_path) == ["verified", "applied", "confirmed", "refused"]
        event = remote.RemoteState(tmp_path / "data").doc["events"][-1]
        assert event["detail"] == (
            "replayed: remote config: serial must be above 2, got 2; an old bundle is never applied (via fetch)"
        )
        assert refusals(tmp_path) == 1
        await fleet.tick(clock.advance(900))  # not taken the next time either: refused again, not remembered
        assert steps(tmp_path)[-2:] == ["refused", "refused"]
    finally:
        await rt.stop()


async def test_a_state_file_that_noted_no_accepted_payload_takes_the_bundle_with_the_last_serial_as_it(
    platform: Platform, orion_double: OrionDouble, tmp_path: Path, clock: Clock, fleet_lines: list[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path, orion_double.url, platform.url, rate=0.001))
    platform.body = signed(config_text(tmp_path, orion_double.url, platform.url, rate=0.002), 2)
    rt = Runtime(path, load_config(path))
    await rt.start()
    try:
        await confirmed(rt, tmp_path, clock, orion_double)
        state = remote.RemoteState(tmp_path / "data")
        state.doc.pop("accepted", None)  # as an earlier release left the file
        state.save()
        assert await rt.reload() == []  # the upgrade's start: nothing fetched yet
        fleet_lines.clear()
        fleet = rt.gateway.fleet
        assert fleet is not None
        for _ in range(3):
            await fleet.tick(clock.advance(900))
        assert steps(tmp_path) == ["verified", "applied", "confirmed"]
        assert fleet_lines == ["remote config: bundle 2, accepted before its payload was noted, fetched again: noted"]
        # another payload with that serial is no more the accepted one than before
        platform.body = signed(config_text(tmp_path, orion_double.url, platform.url, rate=0.5), 2)
        await fleet.tick(clock.advance(900))
        assert steps(tmp_path) == ["verified", "applied", "confirmed", "refused"]
    finally:
        await rt.stop()

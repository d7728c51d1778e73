"""Device times ahead of the gateway clock through a real mosquitto: kept while the kernel says that clock is not
synchronised, by the rule of gateway.device_clock that http_poll and the Wi-Fi receivers follow; refused otherwise.

Regression: the 15 min bound (commit 71245b9) came without that keep here, so a box without RTC booted before NTP
(its clock days behind) refused every right device-timed message as bad_timestamp.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.mqtt.adapter import MqttAdapter
from adapters.mqtt.config import MqttAdapterConfig
from gateway.adapter_api import AdapterContext
from gateway.device_clock import HostClock
from tests.adapters.mqtt.peers import Sink, counter_config, publish, wait_for
from tests.support.mosquitto import MosquittoBroker

NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 10:00 JST
SYNCED = HostClock(synced=True, uptime_s=86_400.0, rtc=True)
# a good RTC on a network without NTP: not synchronised, but the clock started after the latest time the box knew
BELIEVED = HostClock(synced=False, uptime_s=3600.0, rtc=True)
LOGGER = "adapters.mqtt.adapter"


def river_config(broker: MosquittoBroker, client_id: str) -> MqttAdapterConfig:
    return counter_config(
        broker,
        client_id,
        subscriptions=[
            {
                "topic": "river/+",
                "entity_id": "urn:ngsi-ld:WaterObserved:{topic[1]}",
                "entity_type": "WaterObserved",
                "timestamp": {"path": "time", "format": "iso8601"},
                "attributes": [{"path": "level", "name": "waterLevel", "unit": "MTR"}],
            }
        ],
    )


def message(at: str, level: float) -> tuple[str, bytes]:
    return "river/0431", json.dumps({"level": level, "time": at}).encode()


@asynccontextmanager
async def running_at(
    broker: MosquittoBroker,
    client_id: str,
    sink: Sink,
    wall_clock: Callable[[], datetime],
    host: HostClock,
    not_before: datetime,
) -> AsyncIterator[MqttAdapter]:
    """The adapter with the gateway's clock at `wall_clock()` and the kernel saying `host` of it."""
    adapter = MqttAdapter(
        river_config(broker, client_id),
        AdapterContext(gateway_id="gw-test", data_dir="/nonexistent"),
        wall_clock=wall_clock,
        clock_synced=lambda: host,
        not_before=not_before,
    )
    task = asyncio.create_task(adapter.run(sink.emit))
    try:
        await wait_for(lambda: adapter.connected or task.done(), what="the adapter to connect")
        if task.done():
            task.result()
        yield adapter
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def levels(sink: Sink) -> list[tuple[Any, str, str]]:
    return [(r.attributes["waterLevel"].value, r.observed_at.isoformat(), r.time_source.value) for r in sink.readings]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


async def test_right_device_times_are_kept_while_the_gateway_clock_is_unsynchronised_and_stale(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # a box without RTC booted at its saved time two days ago, NTP not reached: every right time is days ahead
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    behind = NOW - timedelta(days=2)
    stale = HostClock(synced=False, uptime_s=60.0, rtc=False)
    sink = Sink()
    async with running_at(mosquitto_private, "stale-clock", sink, lambda: behind, stale, behind) as adapter:
        await publish(
            mosquitto_private,
            [message("2026-07-01T09:50:00+09:00", 2.35), message("2026-07-01T10:00:00+09:00", 2.40)],
        )
        await wait_for(lambda: adapter.received == 2 and adapter.in_flight == 0, what="both messages acked")
    assert levels(sink) == [
        (2.35, "2026-07-01T00:50:00+00:00", "device"),
        (2.40, "2026-07-01T01:00:00+00:00", "device"),
    ]
    diagnostics = adapter.diagnostics()
    assert (diagnostics["gateway_clock_unsynced"], diagnostics["malformed"]) == (2, {})
    assert warnings_of(caplog) == [  # once a spell; the second one at DEBUG
        "mqtt: entity urn:ngsi-ld:WaterObserved:0431 observed at 2026-07-01T00:50:00+00:00, 1 day ahead of the "
        "gateway's clock (2026-06-29T01:00:00+00:00), which the kernel says is not synchronised (NTP): kept the "
        "device's time, as the gateway's clock cannot judge it; check the gateway's time sync (timedatectl); counted "
        "in gateway_clock_unsynced, further ones at DEBUG until the gateway's clock is synchronised"
    ]


async def test_over_a_believed_unsynchronised_clock_a_lead_of_minutes_is_kept_one_of_whole_hours_is_not(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sink = Sink()
    month_ago = NOW - timedelta(days=30)
    async with running_at(mosquitto_private, "believed-clock", sink, lambda: NOW, BELIEVED, month_ago) as adapter:
        await publish(
            mosquitto_private,
            [
                message("2026-07-01T10:40:00+09:00", 2.35),  # 40 min ahead: an RTC drifted behind
                message("2026-07-01T10:05:00Z", 2.40),  # 9 h 5 min: JST as UTC, the clock is not to blame
            ],
        )
        await wait_for(lambda: adapter.received == 2 and adapter.in_flight == 0, what="both messages acked")
    assert levels(sink) == [(2.35, "2026-07-01T01:40:00+00:00", "device")]
    diagnostics = adapter.diagnostics()
    assert (diagnostics["gateway_clock_unsynced"], diagnostics["malformed"]) == (1, {"bad_timestamp": 1})
    kept, refused = warnings_of(caplog)
    assert kept.startswith("mqtt: entity urn:ngsi-ld:WaterObserved:0431 observed at 2026-07-01T01:40:00+00:00, 40 min ")
    assert refused.startswith(
        "river/0431: dropping malformed messages (bad_timestamp), e.g. river/0431: payload.time (timestamp) must be at "
        "most 15 min ahead of the gateway clock, got '2026-07-01T10:05:00Z' (2026-07-01T10:05:00+00:00), 9 h ahead: "
        "a local time (JST) written as UTC? fix the source"
    )


async def test_over_a_synchronised_clock_a_lead_of_forty_minutes_is_refused(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sink = Sink()
    month_ago = NOW - timedelta(days=30)
    async with running_at(mosquitto_private, "synced-clock", sink, lambda: NOW, SYNCED, month_ago) as adapter:
        await publish(mosquitto_private, [message("2026-07-01T10:40:00+09:00", 2.35)])
        await wait_for(lambda: adapter.received == 1 and adapter.in_flight == 0, what="the message acked")
    assert sink.readings == []
    diagnostics = adapter.diagnostics()
    assert (diagnostics["gateway_clock_unsynced"], diagnostics["malformed"]) == (0, {"bad_timestamp": 1})
    assert warnings_of(caplog) == [
        "river/0431: dropping malformed messages (bad_timestamp), e.g. river/0431: payload.time (timestamp) must be at "
        "most 15 min ahead of the gateway clock, got '2026-07-01T10:40:00+09:00' (2026-07-01T01:40:00+00:00), 40 min "
        "ahead; check the timestamp format and zone, or the source's clock; counted per reason"
    ]

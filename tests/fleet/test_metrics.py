"""/metrics scraped over HTTP and parsed with prometheus-client's parser: the values are the buffer's own counts."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.fleet.config import FleetConfig
from gateway.records import Attribute, Reading, Source
from tests.fleet.conftest import Clock, gateway_config, until
from tests.support.orion_double import OrionDouble


def gauge(i: float) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{int(i) % 3}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=i, type="Number", unit="MTR")},
        observed_at=datetime.now(UTC),
        source=Source(adapter="gauges"),
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_equal_the_buffer_counts(orion_double: OrionDouble, tmp_path: Path, clock: Clock) -> None:
    gw = Gateway(gateway_config(tmp_path, orion_double.url, {"metrics": {"enabled": True, "port": 0}}))
    await gw.start()
    try:
        assert gw.fleet is not None and gw.fleet.metrics is not None and gw.outbox is not None
        await gw._emit_many([gauge(i) for i in range(40)])
        await until(lambda: gw.loops[0].delivered >= 40)
        orion_double.fail(503, count=1_000_000)  # from now on rows wait: the backlog is not zero
        await gw._emit_many([gauge(i) for i in range(7)])
        await until(lambda: gw.loops[0].state.value == "backing-off")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{gw.fleet.metrics.port}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
        stats = await gw.outbox.stats()
        loop = gw.loops[0]
    finally:
        await gw.stop()
    got = samples(text)
    assert got[("edgegw_readings_stored_total", ())] == stats.appended_total == 47
    assert got[("edgegw_readings_delivered_total", (("uplink", "orion"),))] == loop.delivered == 40
    assert got[("edgegw_buffer_rows", (("lane", "normal"),))] == stats.rows_per_lane["normal"]
    assert got[("edgegw_uplink_delivering", (("uplink", "orion"),))] == 0
    backlog = {k[1]: v for k, v in got.items() if k[0] == "edgegw_uplink_backlog_rows"}
    assert backlog == {(("lane", lane), ("uplink", "orion")): n for lane, n in stats.uplinks["orion"].pending.items()}
    # the latency histogram counts every delivered reading once
    assert got[("edgegw_delivery_latency_seconds_count", (("uplink", "orion"),))] == 40
    assert got[("edgegw_delivery_latency_seconds_bucket", (("le", "+Inf"), ("uplink", "orion")))] == 40
    assert got[("edgegw_adapter_up", (("adapter", "gauges"),))] == 1
    assert got[("edgegw_safe_mode", ())] == 0


def test_metrics_are_off_by_default_and_on_loopback_when_on(tmp_path: Path) -> None:
    assert FleetConfig().metrics.enabled is False
    assert FleetConfig.model_validate({"metrics": {"enabled": True}}).metrics.host == "127.0.0.1"
    with pytest.raises(Exception, match=r"must be an IP address to listen on, got 'box.local'; e.g. 127.0.0.1"):
        parse_config(
            {
                "gateway": {"id": "g", "data_dir": str(tmp_path)},
                "adapters": [],
                "uplinks": [],
                "fleet": {"metrics": {"enabled": True, "host": "box.local"}},
            }
        )


async def test_a_metrics_port_in_use_costs_the_metrics_not_the_gateway(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = Gateway(gateway_config(tmp_path, orion_double.url, {"metrics": {"enabled": True, "port": port}}))
        await gw.start()
        try:
            assert gw.fleet is not None and gw.fleet.metrics is None
            await gw._emit_many([gauge(1)])
            await until(lambda: gw.loops[0].delivered == 1)
        finally:
            await gw.stop()
    assert any(
        r.getMessage().startswith(f"metrics not served: cannot listen on 127.0.0.1:{port}") for r in caplog.records
    )

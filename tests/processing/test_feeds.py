"""Water-level feeds from `http_poll` and `mqtt` sources through the processing stage into the Orion double:
the river processor raises an `Alert` on the way up and another on the way down, and the gauge entity
carries its level state; the counters reach `edgegw status`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.app import Gateway, _write_status
from gateway.cli import main
from gateway.config import parse_config
from tests.adapters.http_poll.peers import DocServer, serve
from tests.adapters.mqtt.peers import publish
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble

GAUGE = "urn:ngsi-ld:WaterObserved:kumamoto-0431"
THRESHOLDS = [{"level": 2.0}, {"level": 3.0}, {"level": 4.0}, {"level": 5.5}]


def gauge_doc(level: str, at: str) -> bytes:
    """The 人吉 水の手橋 gauge as the prefecture's portal publishes it (see adapters/http_poll/sample.toml)."""
    doc = {
        "更新時刻": at,
        "観測所": [
            {
                "観測所番号": "0431",
                "観測所名": "人吉",
                "水位": level,
                "観測時刻": at,
                "緯度": "32.2103",
                "経度": "130.7633",
            }
        ],
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def river_processing(adapter: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "river",
            "match": {
                "adapter": adapter,
                "entity_type": "WaterObserved",
                "entity_id": "urn:ngsi-ld:WaterObserved:kumamoto-.*",
                "attribute": "waterLevel",
            },
            "thresholds": THRESHOLDS,
            "datum": {"name": "T.P.", "elevation_m": 98.5},
        }
    ]


def gateway_doc(
    tmp_path: Path, orion: OrionDouble, adapter: dict[str, Any], processing: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-river", "data_dir": str(tmp_path / "data")},
        "adapters": [adapter],
        "processing": processing,
        "uplinks": [{"name": "orion", "type": "orion", "url": orion.url}],
    }


def alerts(orion: OrionDouble) -> dict[str, dict[str, Any]]:
    return {key[2]: e for key, e in orion.entities.items() if e.get("type") == "Alert"}


def gauge(orion: OrionDouble) -> dict[str, Any]:
    return next((e for key, e in orion.entities.items() if key[2] == GAUGE), {})


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_http_poll_gauge_raises_and_clears_an_alert_in_orion(
    tmp_path: Path, orion_double: OrionDouble, capsys: Any
) -> None:
    async with serve(DocServer(body=gauge_doc("1.50", "2026/07/04 05:00"))) as portal:
        adapter = {
            "name": "river-portal",
            "type": "http_poll",
            "url": portal.url,
            "interval_s": 0.1,
            "timeout_s": 0.1,
            "mappings": [
                {
                    "items": "観測所",
                    "entity_id": "urn:ngsi-ld:WaterObserved:kumamoto-{観測所番号}",
                    "entity_type": "WaterObserved",
                    "null_values": ["欠測"],
                    "timestamp": {"path": "観測時刻", "format": "local", "zone": "Asia/Tokyo"},
                    "attributes": [{"path": "水位", "name": "waterLevel", "unit": "MTR"}],
                }
            ],
        }
        config = parse_config(gateway_doc(tmp_path, orion_double, adapter, river_processing("river-portal")))
        gw = Gateway(config)
        await gw.start()
        try:
            await until(lambda: gauge(orion_double).get("levelState", {}).get("value") == "normal", "normal state")
            assert alerts(orion_double) == {}  # the first sample sets the state without a crossing
            portal.body = gauge_doc("2.35", "2026/07/04 05:10")  # 水防団待機水位 2.0 m reached
            await until(lambda: len(alerts(orion_double)) == 1, "the alert on the way up")
            assert gauge(orion_double)["levelState"]["value"] == "水防団待機水位"
            assert gauge(orion_double)["levelStateIndex"]["value"] == 1
            assert gauge(orion_double)["levelDatum"]["value"] == "T.P."
            up_id = "urn:ngsi-ld:Alert:kumamoto-0431-1-up-1783109400"  # 2026-07-04 05:10 JST in epoch s
            up = alerts(orion_double)[up_id]
            assert up["severity"]["value"] == "low"
            assert up["description"]["value"] == "水防団待機水位 2.00 m に達しました（水位 2.35 m）"
            assert (up["alertSource"]["type"], up["alertSource"]["value"]) == ("Relationship", GAUGE)
            portal.body = gauge_doc("1.20", "2026/07/04 05:20")
            await until(lambda: len(alerts(orion_double)) == 2, "the alert on the way down")
            down = alerts(orion_double)["urn:ngsi-ld:Alert:kumamoto-0431-1-down-1783110000"]
            assert down["direction"]["value"] == "down"
            assert gauge(orion_double)["levelState"]["value"] == "normal"
            await _write_status(gw)
        finally:
            await gw.stop()
    status = json.loads((tmp_path / "data" / "status.json").read_text())
    assert status["processing"][0]["name"] == "processing[0] (river)"
    assert status["processing"][0]["counters"]["alerts"] == 2
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        f'[gateway]\nid = "gw-river"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "{orion_double.url}"\n'
    )
    assert main(["status", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "processing:\n  processing[0] (river)                    alerts 2  skipped 0\n" in out


async def test_mqtt_level_sensor_in_cm_converted_checked_and_alerting(
    tmp_path: Path, orion_double: OrionDouble, mosquitto_private: MosquittoBroker
) -> None:
    # a LoRaWAN ultrasonic gauge reporting centimetres: rename, convert to metres, check, then the river
    adapter = {
        "name": "lorawan",
        "type": "mqtt",
        "host": mosquitto_private.host,
        "port": mosquitto_private.port,
        "client_id": "river-feed",
        "reconnect_min_s": 0.1,
        "subscriptions": [
            {
                "topic": "gauges/+",
                "entity_id": "urn:ngsi-ld:WaterObserved:kumamoto-{topic[1]}",
                "entity_type": "WaterObserved",
                "timestamp": {"path": "time", "format": "iso8601"},
                "attributes": [
                    {"path": "level_cm", "name": "level_cm", "unit": "CMT"},
                    {"path": "rssi", "name": "rssi"},
                ],
            }
        ],
    }
    processing: list[dict[str, Any]] = [
        {"type": "rename", "match": {"adapter": "lorawan", "attribute": "level_cm"}, "to": "waterLevel"},
        {
            "type": "unit",
            "match": {"adapter": "lorawan", "attribute": "waterLevel"},
            "from_unit": "CMT",
            "to_unit": "MTR",
        },
        {"type": "drop", "match": {"adapter": "lorawan"}, "attributes": ["rssi"]},
        {
            "type": "quality",
            "match": {"adapter": "lorawan", "attribute": "waterLevel"},
            "valid_min": 0.0,
            "valid_max": 12.0,
            "on_fail": "flag",
        },
        *river_processing("lorawan"),
    ]
    gw = Gateway(parse_config(gateway_doc(tmp_path, orion_double, adapter, processing)))
    await gw.start()
    try:

        def send(cm: float, at: str) -> Any:
            payload = json.dumps({"level_cm": cm, "rssi": -97, "time": at}).encode()
            return publish(mosquitto_private, [("gauges/0431", payload)])

        deadline = time.monotonic() + 15
        while not gauge(orion_double).get("levelState"):  # until the adapter has subscribed, the broker drops
            assert time.monotonic() < deadline, "the first level never reached Orion"
            await send(150, "2026-07-04T05:00:00+09:00")  # the same observation again: no new state
            await asyncio.sleep(0.3)
        assert gauge(orion_double)["levelState"]["value"] == "normal"
        level = gauge(orion_double)["waterLevel"]
        assert (level["value"], level["metadata"]["unitCode"]["value"]) == (1.5, "MTR")
        assert level["metadata"]["quality"]["value"] == []
        assert "rssi" not in gauge(orion_double) and "level_cm" not in gauge(orion_double)
        await send(9999, "2026-07-04T05:05:00+09:00")  # 99.99 m: out of range, flagged, moves no state
        await until(
            lambda: gauge(orion_double)["waterLevel"]["metadata"]["quality"]["value"] == ["out_of_range"],
            "the flagged level",
        )
        assert alerts(orion_double) == {}
        await send(310, "2026-07-04T05:10:00+09:00")  # 3.10 m: two thresholds crossed at once
        # The alerts go in the alert lane, ahead of the gauge's update, which may come a batch after
        # them: its reading has metadata, so it is read from the file once committed (~13 ms here).
        await until(lambda: len(alerts(orion_double)) == 2, "two alerts on the way up")
        await until(lambda: gauge(orion_double)["levelState"]["value"] == "氾濫注意水位", "the gauge's new state")
        await send(100, "2026-07-04T05:20:00+09:00")
        await until(lambda: len(alerts(orion_double)) == 4, "two alerts on the way down")
        await until(lambda: gauge(orion_double)["levelState"]["value"] == "normal", "the gauge back to normal")
        counters = [p["counters"] for p in (await gw.status())["processing"]]
        seen = counters[0]["renamed"]  # the first level, as often as it arrived, and the three after it
        assert seen >= 4
        assert counters == [
            {"renamed": seen},
            {"converted": seen},
            {"dropped": seen},
            {"flagged": 1, "dropped": 0},
            {"alerts": 4, "skipped": 1},
        ]
    finally:
        await gw.stop()


async def test_a_modbus_gauge_runs_its_profile_checks_and_river_through_the_stage(
    tmp_path: Path, orion_double: OrionDouble
) -> None:
    from gateway.profiles import load_profile
    from tests.adapters.modbus.peers import image_from_values, start_tcp_peer

    profile = load_profile("generic/pressure-level-transmitter")
    values = {"unit_code": 1, "decimals": 2, "level": 1.20, "range_zero": 0.0, "range_full": 5.0}
    peer, port = await start_tcp_peer([image_from_values(1, profile, values)])
    adapter = {
        "name": "cabinet",
        "type": "modbus",
        "buses": [{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}],
        "devices": [
            {
                "name": "gauge",
                "bus": "gw",
                "profile": "generic/pressure-level-transmitter",
                "unit_id": 1,
                "poll_interval": 0.1,
                "timeout": 0.2,
                "river": {"point": "level", "thresholds": [{"level": 1.5}, {"level": 2.0}]},
            }
        ],
    }
    gw = Gateway(parse_config(gateway_doc(tmp_path, orion_double, adapter, [])))
    await gw.start()
    station = "urn:ngsi-ld:WaterObserved:gw-river-gauge"
    try:

        def entity() -> dict[str, Any]:
            return next((e for key, e in orion_double.entities.items() if key[2] == station), {})

        await until(lambda: entity().get("levelState", {}).get("value") == "normal", "the gauge's state")
        await peer.server.async_setValues(1, 3, 4, [213])  # type: ignore[union-attr]  # 2.13 m
        await until(lambda: len(alerts(orion_double)) == 2, "two alerts")
        level = entity()["waterLevel"]
        assert level["metadata"]["quality"]["value"] == []
        # what the decoder handed the quality check stayed inside the gateway
        assert not any(name.startswith("edgegw") for e in orion_double.entities.values() for name in e)
        assert not any(m.startswith("edgegw") for m in level["metadata"])
        names = [p["name"] for p in (await gw.status())["processing"]]
        assert "cabinet: gauge level (quality)" in names and "cabinet: gauge level (river)" in names
    finally:
        await gw.stop()
        await peer.stop()

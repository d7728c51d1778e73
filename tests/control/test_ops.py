"""Every op but config's against a real gateway: simulated gauges → buffer → the strict Orion double."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.control.protocol import ControlError
from gateway.records import Attribute, Lane, Reading, Source
from tests.control.running import eventually, running_gateway, until
from tests.support.orion_double import OrionDouble

T0 = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def reading(entity_id: str, level: float, *, entity_type: str = "WaterObserved", **attrs: Attribute) -> Reading:
    return Reading(
        entity_id=entity_id,
        entity_type=entity_type,
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR"), **attrs},
        observed_at=T0,
        source=Source(adapter="gauges", device="d1"),
    )


async def test_status_has_the_gateway_document_host_caps_alerts_and_counters(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        alert = Reading(
            entity_id="urn:ngsi-ld:Alert:g1-0-up-1782874800",
            entity_type="Alert",
            attributes={
                "alertSource": Attribute(value="urn:ngsi-ld:WaterObserved:g1", type="Relationship"),
                "thresholdName": Attribute(value="氾濫注意水位", type="Text"),
                "severity": Attribute(value="medium", type="Text"),
                "direction": Attribute(value="up", type="Text"),
                "waterLevel": Attribute(value=3.2, type="Number", unit="MTR"),
            },
            observed_at=T0,
            source=Source(adapter="gauges"),
            lane=Lane.ALERT,
        )
        await gw.runtime.gateway._emit_many([alert])
        doc = await gw.client.call("status")
    assert doc["gateway"] == "gw-control"
    assert {"version", "pid", "started_at", "adapters", "uplinks", "buffer", "processing", "invalid_readings"} <= set(
        doc
    )
    assert [a["name"] for a in doc["adapters"]] == ["gauges"]
    assert set(doc["host"]) == {
        "uptime_s",
        "clock_synced",
        "cpu_percent",
        "load1",
        "mem_total",
        "mem_available",
        "disk_total",
        "disk_free",
    }
    assert doc["host"]["mem_total"] > doc["host"]["mem_available"] > 0
    assert doc["host"]["disk_total"] >= doc["host"]["disk_free"] > 0
    assert doc["buffer_caps"] == {"max_rows": 5_000_000, "max_bytes": 2 * 1024**3, "max_age_s": 30 * 86_400}
    assert doc["alerts"] == [
        {
            "entity_id": "urn:ngsi-ld:WaterObserved:g1",
            "name": "氾濫注意水位",
            "level": "medium",
            "since": T0.timestamp(),
            "value": 3.2,
            "unit": "MTR",
        }
    ]
    assert doc["control"] == {
        "connections": 1,
        "requests": 1,
        "bad_requests": {},
        "refused_busy": 0,
        "idle_closed": 0,
    }


async def test_latest_holds_every_entity_once_filtered_and_limited(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, orion_double.url, rate=0.001) as gw:
        flagged = Attribute(
            value=9.0, type="Number", unit="MTR", metadata={"quality": {"type": "StructuredValue", "value": ["range"]}}
        )
        await gw.runtime.gateway._emit_many(
            [
                reading("urn:ngsi-ld:WaterObserved:b", 1.0),
                reading("urn:ngsi-ld:WaterObserved:b", 1.5),
                reading("urn:ngsi-ld:WaterObserved:a", 2.0, spike=flagged),
                reading("urn:ngsi-ld:Thing:c", 0.5, entity_type="Thing"),
            ]
        )
        everything = await gw.client.call("latest")
        water = await gw.client.call("latest", filter="waterobserved", limit=1)
        by_adapter = await gw.client.call("latest", filter="GAUGES")
    simulated = [e for e in everything["entities"] if e["entity_id"].startswith("urn:ngsi-ld:WaterObserved:a-")]
    ours = [e for e in everything["entities"] if e not in simulated]
    assert everything["total"] == 3 + len(simulated)
    assert ours == [
        {
            "entity_id": "urn:ngsi-ld:Thing:c",
            "entity_type": "Thing",
            "adapter": "gauges",
            "device": "d1",
            "observed_at": "2026-07-01T03:00:00.000Z",
            "lane": "normal",
            "attributes": [{"name": "waterLevel", "value": 0.5, "type": "Number", "unit": "MTR", "quality": []}],
        },
        {
            "entity_id": "urn:ngsi-ld:WaterObserved:a",
            "entity_type": "WaterObserved",
            "adapter": "gauges",
            "device": "d1",
            "observed_at": "2026-07-01T03:00:00.000Z",
            "lane": "normal",
            "attributes": [
                {"name": "waterLevel", "value": 2.0, "type": "Number", "unit": "MTR", "quality": []},
                {"name": "spike", "value": 9.0, "type": "Number", "unit": "MTR", "quality": ["range"]},
            ],
        },
        {
            "entity_id": "urn:ngsi-ld:WaterObserved:b",
            "entity_type": "WaterObserved",
            "adapter": "gauges",
            "device": "d1",
            "observed_at": "2026-07-01T03:00:00.000Z",
            "lane": "normal",
            "attributes": [{"name": "waterLevel", "value": 1.5, "type": "Number", "unit": "MTR", "quality": []}],
        },
    ]
    assert water["total"] == 2 + len(simulated) and len(water["entities"]) == 1
    assert by_adapter["total"] == everything["total"]


async def test_logs_come_from_the_ring_newest_last_filtered_and_redacted(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    from gateway import logs, redact

    logs.setup("info", "json")
    async with running_gateway(tmp_path, orion_double.url, rate=0.001) as gw:
        redact.register("s3cret-token-77")
        logging.getLogger("gateway.test").warning("uplink refused token s3cret-token-77", extra={"component": "orion"})
        logging.getLogger("gateway.test").info("an info line", extra={"component": "orion"})
        warnings = await gw.client.call("logs", level="warning", component="orion", limit=5)
        infos = await gw.client.call("logs", level="info", component="orion", limit=1)
        with pytest.raises(ControlError) as bad:
            await gw.client.call("logs", level="loud")
    assert [(w["level"], w["component"], w["message"]) for w in warnings] == [
        ("warning", "orion", "uplink refused token ***")
    ]
    assert [i["message"] for i in infos] == ["an info line"]
    assert (bad.value.code, bad.value.message) == (
        "bad_args",
        "args.level: must be debug, info, warning or error, got 'loud'",
    )


async def test_a_command_goes_through_the_router_and_answers_its_result(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url, rate=0.001) as gw:
        await gw.runtime.gateway._emit_many([reading("urn:ngsi-ld:WaterObserved:b", 1.0)])
        result = await gw.client.call(
            "command", entity_id="urn:ngsi-ld:WaterObserved:b", name="reset", value=1, actor="tanaka"
        )
        unknown = await gw.client.call("command", entity_id="urn:ngsi-ld:Thing:zz", name="reset", actor="tanaka")
    assert len(result["command_id"]) == 32
    assert (result["ok"], result["info"]) == (False, "command reset: adapter gauges takes no commands")
    assert unknown["ok"] is False
    assert unknown["info"].startswith('command reset: no adapter owns entity "urn:ngsi-ld:Thing:zz"')


async def test_dead_letters_are_listed_retried_and_discarded(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, orion_double.url, rate=0.001) as gw:
        bad = [f"urn:ngsi-ld:WaterObserved:bad{i}" for i in range(3)]
        for entity_id in bad:
            orion_double.refuse_entity(entity_id)
        for entity_id in bad:
            # beside a good one: a record is dead-lettered once a request shows the rest go through
            await gw.runtime.gateway._emit_many([reading("urn:ngsi-ld:WaterObserved:ok", 1.0), reading(entity_id, 1.0)])
        await eventually(
            lambda: gw.client.call("dead_letters"), lambda letters: len(letters) == 3, "three dead letters"
        )
        letters = await gw.client.call("dead_letters", uplink="orion")
        assert [d["entity_id"] for d in letters] == bad
        first = letters[0]
        assert first["uplink"] == "orion" and first["entity_type"] == "WaterObserved" and first["lane"] == "normal"
        assert "Invalid characters in attribute value" in str(first["reason"])
        assert isinstance(first["failed_at"], float)
        page = await gw.client.call("dead_letters", uplink=None, limit=1, offset=1)
        assert [d["entity_id"] for d in page] == bad[1:2]
        ids = [d["id"] for d in letters]
        assert await gw.client.call("discard_dead_letters", uplink="orion", ids=ids[:2]) == {"count": 2}
        assert await gw.client.call("discard_dead_letters", uplink="orion", ids=ids[:2]) == {"count": 0}
        orion_double._refused_entities.clear()
        assert await gw.client.call("retry_dead_letters", uplink="orion", ids=ids[2:]) == {"count": 1}
        assert await gw.client.call("dead_letters") == []
        await until(lambda: any(k[2] == bad[2] for k in orion_double.entities), "the retried letter delivered")
        assert not any(k[2] in bad[:2] for k in orion_double.entities)
        with pytest.raises(ControlError) as unknown:
            await gw.client.call("discard_dead_letters", uplink="nowhere", ids=[1])
    assert unknown.value.code == "buffer_error"
    assert unknown.value.message.startswith("buffer: unknown uplink")


async def test_a_reload_refused_keeps_the_gateway_running(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.runtime.gateway
        gw.config_path.write_text(gw.config_path.read_text().replace("rate = 20.0", "rate = -1"))
        with pytest.raises(ControlError) as refused:
            await gw.client.call("reload")
        assert refused.value.code == "config_invalid"
        assert refused.value.message == "reload: refused, the running configuration is kept"
        assert refused.value.errors == ["adapters[0].rate: input should be greater than 0, got -1"]
        assert gw.runtime.gateway is before
        n = len(gw.runtime.gateway.latest)
        await until(lambda: len(orion_double.written) > 3, "readings still delivered")
        gw.config_path.write_text(gw.config_path.read_text().replace("rate = -1", "rate = 5.0"))
        assert await gw.client.call("reload") == {"reloaded": True}
        assert gw.runtime.gateway is not before and gw.runtime.gateway.latest is before.latest
        assert len(gw.runtime.gateway.latest) >= n

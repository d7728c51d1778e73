"""Metadata an entity leaves out is counted once per reading delivered, by the uplink that delivered it.

The finding (reproduced): the NGSI-LD uplink converts a batch again at every try, and each conversion
counted its dropped metadata, so during an outage one stored reading added 1 to `metadata_dropped` per
retry (three RETRY deliveries of one reading: `metadata_dropped: 3`), counted though nothing was
delivered: an hour's outage turned one record into hundreds in status.json. And the `orion` and the
`mqtt` (ngsi-v2) uplinks counted the unitCode metadata a unit overrides in the v2 converter's
module-wide counter, shown in neither uplink's status.

Now each uplink keeps its own count and adds a reading's drops when the reading is DELIVERED, once; a
reading retried, or dead-lettered (the dead letter keeps the reading whole, metadata and all), adds
nothing. The WARNING still comes once per name, at the first conversion. Real peers: the strict Orion
double (both HTTP uplinks) and mosquitto (the MQTT uplink).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.ngsi import ld, v2
from gateway.ngsi.ld import MetadataDrops
from gateway.records import Reading
from gateway.uplinks.api import DELIVERED, Status
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.ngsi.test_ld_dropped_metadata import stored
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port
from tests.uplinks_mqtt.test_delivery import KEEP_USER, uplink

# the stored reading's metadata the NGSI-LD entity cannot carry (named like the attribute's member `value`)
LD_DROP = {"value": "cal-42", "accuracy": 0.01}
LD_NAME = "FloodMonitoring.waterLevel.value"
# with unit MTR (see stored(unit=...)): the unitCode metadata a unit overrides, in v2
V2_DROP = {"unitCode": "CMT"}
V2_NAME = "FloodMonitoring.waterLevel.unitCode"


def old(n: int, metadata: dict[str, Any], *, unit: str | None = None) -> Reading:
    return stored(
        metadata, entity_id=f"urn:ngsi-ld:FloodMonitoring:kuma-{n:02d}", entity_type="FloodMonitoring", unit=unit
    )


def dropped(total: int, name: str) -> dict[str, Any]:
    return {"metadata_dropped": total, "metadata_dropped_by_name": {name: total} if total else {}}


def warnings_from(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage().split(":")[0] for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


@pytest.fixture
def context(tmp_path: Path) -> AdapterContext:
    return AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------- NGSI-LD


def ld_uplink(url: str, context: AdapterContext, **extra: Any) -> NgsiLdUplink:
    return NgsiLdUplink(
        NgsiLdConfig.model_validate({"name": "ld-main", "type": "ngsi-ld", "url": url, **extra}), context
    )


async def test_ld_retries_of_one_reading_count_nothing_and_its_delivery_counts_one(
    orion_double: OrionDouble, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer's case: three RETRY deliveries of one reading reported `metadata_dropped: 3`."""
    up = ld_uplink(orion_double.url, context)
    orion_double.fail(503, count=3)
    reading = old(1, LD_DROP)
    await up.start()
    try:
        with caplog.at_level(logging.WARNING, logger=ld.__name__):
            for _ in range(3):
                [outcome] = await up.deliver([reading])
                assert outcome.status is Status.RETRY
            assert up.diagnostics() == dropped(0, LD_NAME)  # nothing was delivered: nothing was left out yet
            assert await up.deliver([reading]) == [DELIVERED]
            assert up.diagnostics() == dropped(1, LD_NAME)
            assert await up.deliver([old(2, LD_DROP)]) == [DELIVERED]
    finally:
        await up.close()
    assert up.diagnostics() == dropped(2, LD_NAME)  # one per reading delivered
    assert warnings_from(caplog, ld.__name__) == [f"{LD_NAME.replace('.value', '.metadata.value')}"]  # once


async def test_ld_an_unreachable_broker_counts_nothing(context: AdapterContext) -> None:
    up = ld_uplink(f"http://127.0.0.1:{free_port()}", context)  # nothing listens there
    await up.start()
    try:
        for _ in range(3):
            [outcome] = await up.deliver([old(1, LD_DROP)])
            assert outcome.status is Status.RETRY
    finally:
        await up.close()
    assert up.diagnostics() == dropped(0, LD_NAME)


async def test_ld_a_reading_dead_lettered_counts_nothing(orion_double: OrionDouble, context: AdapterContext) -> None:
    up = ld_uplink(orion_double.url, context)
    orion_double.fail_ld_entity("urn:ngsi-ld:FloodMonitoring:kuma-02", 400, "Invalid attribute value")
    await up.start()
    try:
        outcomes = await up.deliver([old(1, LD_DROP), old(2, LD_DROP), old(3, {"accuracy": 0.01})])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
    assert up.diagnostics() == dropped(1, LD_NAME)  # the dead letter keeps its metadata: nothing was left out


async def test_ld_latest_state_counts_the_reading_sent_not_those_it_stands_for(
    orion_double: OrionDouble, context: AdapterContext
) -> None:
    up = ld_uplink(orion_double.url, context, catch_up="latest-state")
    await up.start()
    try:
        outcomes = await up.deliver([old(1, LD_DROP), old(1, LD_DROP), old(1, LD_DROP)])
    finally:
        await up.close()
    assert outcomes == [DELIVERED] * 3
    assert up.diagnostics() == dropped(1, LD_NAME)  # the two older ones were never sent


# ---------------------------------------------------------------------------------------------- orion


@pytest.fixture
def module_count() -> Iterator[None]:
    """The v2 converter's module-wide counter: an uplink's drops are its own, never counted there too."""
    before = (v2.DROPPED_METADATA.total, dict(v2.DROPPED_METADATA.counts))
    yield
    assert (v2.DROPPED_METADATA.total, v2.DROPPED_METADATA.counts) == before


@pytest.mark.usefixtures("module_count")
async def test_orion_keeps_its_own_count_once_per_reading_delivered(
    orion_double: OrionDouble, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    config = OrionConfig.model_validate({"name": "orion-main", "type": "orion", "url": orion_double.url})
    up = OrionUplink(config, context)
    orion_double.fail(503, count=2)
    orion_double.refuse_entity("urn:ngsi-ld:FloodMonitoring:kuma-03")
    batch = [old(1, V2_DROP, unit="MTR"), old(2, V2_DROP, unit="MTR"), old(3, V2_DROP, unit="MTR")]
    await up.start()
    try:
        with caplog.at_level(logging.WARNING, logger=v2.__name__):
            for _ in range(2):
                assert {o.status for o in await up.deliver(batch)} == {Status.RETRY}
            assert up.diagnostics() == dropped(0, V2_NAME)
            outcomes = await up.deliver(batch)
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.DELIVERED, Status.REJECTED]
    assert up.diagnostics() == dropped(2, V2_NAME)  # what status.json shows for this uplink
    [record] = [r for r in caplog.records if r.name == v2.__name__ and r.levelno == logging.WARNING]
    assert record.getMessage().startswith(
        "FloodMonitoring.waterLevel.metadata.unitCode: left out of the NGSI v2 entity (a reading of adapter gauge), "
        "the attribute's unit is sent as unitCode;"
    )
    assert record.component == "orion-main"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------- mqtt, ngsi-v2


@pytest.mark.usefixtures("module_count")
async def test_mqtt_ngsi_v2_counts_once_per_reading_the_broker_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = MosquittoBroker(tmp_path / "b", extra_conf=KEEP_USER)
    context = AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path))
    up = uplink(broker, context, format="ngsi-v2", connect_timeout_s=1)
    batch = [old(1, V2_DROP, unit="MTR"), old(2, {}, unit="MTR")]
    try:
        with caplog.at_level(logging.WARNING, logger=v2.__name__):
            for _ in range(3):  # the broker is not up yet: every try converts, none delivers
                assert {o.status for o in await up.deliver(batch)} == {Status.RETRY}
            diagnostics = up.diagnostics()
            assert (diagnostics["metadata_dropped"], diagnostics["metadata_dropped_by_name"]) == (0, {})
            await asyncio.to_thread(broker.start)
            assert await up.deliver(batch) == [DELIVERED, DELIVERED]
    finally:
        await up.close()
        broker.stop()
    diagnostics = up.diagnostics()  # merged into the uplink's counters, as status.json shows them
    assert diagnostics["acked"] == 1 and diagnostics["metadata_dropped"] == 1
    assert diagnostics["metadata_dropped_by_name"] == {V2_NAME: 1}
    assert warnings_from(caplog, v2.__name__) == ["FloodMonitoring.waterLevel.metadata.unitCode"]


async def test_mqtt_iota_formats_say_nothing_of_metadata(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b", extra_conf=KEEP_USER)
    up = uplink(broker, AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path)))
    assert "metadata_dropped" not in up.diagnostics()


# ------------------------------------------------------------------------------------ MetadataDrops


NAMES = st.sampled_from(["value", "type", "observedAt"])
# per conversion of one reading: the names it drops, and whether that reading was then delivered
TRIES = st.lists(st.tuples(st.lists(NAMES, max_size=3), st.booleans()), max_size=20)


@given(tries=TRIES, max_names=st.integers(1, 4))
def test_held_drops_count_only_when_given_back_and_each_name_is_logged_once(
    tries: list[tuple[list[str], bool]], max_names: int
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tests.metadata_drops_held")
    logger.handlers[:] = [Keep()]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    drops = MetadataDrops("ld-main", max_names=max_names, logger=logger)
    reading = old(1, {})
    for names, delivered in tries:
        with drops.held() as noted:
            for name in names:
                drops.note(reading, "waterLevel", name, "why")
            if delivered:
                drops.count(tuple(noted))
    counted = [name for names, delivered in tries if delivered for name in names]
    assert drops.total == len(counted)
    assert sum(drops.counts.values()) <= drops.total and len(drops.counts) <= max_names
    if len(set(counted)) <= max_names:
        assert {key[2]: n for key, n in drops.counts.items()} == {n: counted.count(n) for n in set(counted)}
    # a WARNING for each name the first time it is noted, delivered or not, up to max_names of them
    warned = [r.getMessage().split(":")[0] for r in records if r.levelno == logging.WARNING]
    first_noted = list(dict.fromkeys(name for names, _ in tries for name in names))
    assert warned == [f"FloodMonitoring.waterLevel.metadata.{name}" for name in first_noted[:max_names]]
    # outside held() a note counts at once, as before
    drops.note(reading, "waterLevel", "value", "why")
    assert drops.total == len(counted) + 1

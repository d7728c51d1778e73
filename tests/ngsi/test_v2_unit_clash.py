"""A reading's unit that overrides a `unitCode` metadata in NGSI v2 is counted and said, never unsaid.

check_reading refuses a `unitCode` metadata beside a `unit` at the source, but a record stored before it
did (an outbox kept over an upgrade) or a reading made by a path that skips it still reaches the
converter. NGSI-LD counted that clash in `MetadataDrops` and logged it once (commit 36d626e), while v2
sent the unit over the device's own `unitCode` without a word. Now v2 sends the same unit, counts the
metadata it overrode per (entity type, attribute, name) and logs the first one with names only: an
entity id or a metadata value may be personal data.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi import v2
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import MetadataDrops, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.records import Attribute, Reading, Source, TimeSource, decode_reading, encode_reading
from gateway.uplinks.api import DELIVERED
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import OrionDouble
from tests.support.orion_rules import validate_v2_update

PCT = ValueEncoding.PERCENT
GAUGE = "urn:ngsi-ld:WaterObserved:kuma-01"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
CARD, MAIL, MAC = "0012345678901", "taro@example.jp", "aa:bb:cc:dd:ee:ff"
HEADERS = {"Content-Type": "application/json", "Fiware-ServicePath": "/"}


def stored(
    metadata: dict[str, Any], *, unit: str | None = "MTR", entity_id: str = GAUGE, entity_type: str = "WaterObserved"
) -> Reading:
    """A reading as an older gateway stored it, read back from the buffer's form."""
    r = Reading(
        entity_id=entity_id,
        entity_type=entity_type,
        attributes={"waterLevel": Attribute(value=1.25, type="Number", unit=unit, metadata=metadata)},
        observed_at=T0,
        time_source=TimeSource.DEVICE,
        source=Source(adapter="gauge"),
    )
    return decode_reading(encode_reading(r), 1)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == v2.__name__ and r.levelno == logging.WARNING]


def test_the_clash_is_refused_at_the_source_but_an_old_record_reaches_the_converter() -> None:
    old = stored({"unitCode": "CMT"})
    with pytest.raises(ReadingError, match=r"metadata\.unitCode: metadata is written by the converter"):
        ReadingChecker().check(old, encoding=PCT)
    # nothing stops it on the way out: the converter is where it is met
    assert to_v2_entity(old, encoding=PCT, drops=MetadataDrops("orion-main"))["waterLevel"]["metadata"]["unitCode"]


def test_the_unit_wins_and_the_overridden_metadata_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops = MetadataDrops("orion-main", entity="NGSI v2", logger=logging.getLogger(v2.__name__))
    readings = [stored({"unitCode": "CMT", "accuracy": 0.01}), stored({"unitCode": {"type": "Text", "value": "CMT"}})]
    with caplog.at_level(logging.DEBUG, logger=v2.__name__):
        entities = [to_v2_entity(r, encoding=PCT, drops=drops) for r in readings * 3]
    assert entities[0]["waterLevel"]["metadata"] == {
        "accuracy": {"type": "Number", "value": 0.01},
        "unitCode": {"type": "Text", "value": "MTR"},  # the unit, as NGSI-LD sends it
        "TimeInstant": {"type": "DateTime", "value": "2024-05-01T00:00:00.000Z"},
    }
    assert drops.counts == {("WaterObserved", "waterLevel", "unitCode"): 6}
    assert drops.diagnostics() == {
        "metadata_dropped": 6,
        "metadata_dropped_by_name": {"WaterObserved.waterLevel.unitCode": 6},
    }
    assert warnings_of(caplog) == [
        "WaterObserved.waterLevel.metadata.unitCode: left out of the NGSI v2 entity (a reading of adapter gauge),"
        " the attribute's unit is sent as unitCode; rename the metadata where it is made"
        " (check_reading refuses it now: this reading was stored before). Further ones are counted, not logged"
    ]
    assert {getattr(r, "component", None) for r in caplog.records} == {"orion-main"}
    body = v2_update_body([orjson.dumps(e) for e in entities])
    assert validate_v2_update({**HEADERS, "Content-Length": str(len(body))}, body) == (204, None)


def test_both_uplinks_send_the_unit_and_count_the_same_metadata() -> None:
    v2_drops, ld_drops = MetadataDrops("orion-main", entity="NGSI v2"), MetadataDrops("ld-main")
    old = stored({"unitCode": "CMT"})
    entity = to_v2_entity(old, encoding=PCT, drops=v2_drops)
    prop = to_ld_entity(old, encoding=PCT, context=None, drops=ld_drops)["waterLevel"]
    assert entity["waterLevel"]["metadata"]["unitCode"]["value"] == prop["unitCode"] == "MTR"
    assert v2_drops.counts == ld_drops.counts == {("WaterObserved", "waterLevel", "unitCode"): 1}


def test_without_a_unit_the_metadata_is_sent_and_nothing_counted(caplog: pytest.LogCaptureFixture) -> None:
    drops = MetadataDrops("orion-main", entity="NGSI v2")
    with caplog.at_level(logging.DEBUG):
        entity = to_v2_entity(stored({"unitCode": "CMT"}, unit=None), encoding=PCT, drops=drops)
        to_v2_entity(stored({"unitCode": None}), encoding=PCT, drops=drops)  # a null one says nothing either
    assert entity["waterLevel"]["metadata"]["unitCode"] == {"type": "Text", "value": "CMT"}
    assert (drops.total, caplog.records) == (0, [])


def test_a_caller_with_no_counter_of_its_own_still_counts_in_the_module_one(caplog: pytest.LogCaptureFixture) -> None:
    before = v2.DROPPED_METADATA.total
    with caplog.at_level(logging.WARNING, logger=v2.__name__):
        # a type no other test converts: the shared counter has not met this name before
        to_v2_entity(stored({"unitCode": "CMT"}, entity_type="RiverGaugeClash"), encoding=PCT)
    assert v2.DROPPED_METADATA.total == before + 1
    assert [m.split(":")[0] for m in warnings_of(caplog)] == ["RiverGaugeClash.waterLevel.metadata.unitCode"]


CODES = st.one_of(st.sampled_from(["CMT", "MTR", CARD, MAIL, MAC]), st.integers(-5, 5), st.just([1, "a"]))


@given(code=CODES, typed=st.booleans(), unit=st.sampled_from([None, "MTR", "CEL"]))
def test_no_unitcode_is_overridden_unsaid(code: Any, typed: bool, unit: str | None) -> None:
    drops = MetadataDrops("orion-main", entity="NGSI v2")
    meta = {"unitCode": {"type": "Text", "value": code} if typed else code}
    entity = to_v2_entity(stored(meta, unit=unit, entity_id=f"urn:ngsi-ld:Patron:{CARD}"), encoding=PCT, drops=drops)
    sent = entity["waterLevel"]["metadata"]["unitCode"]["value"]
    if unit is None:
        assert (sent, drops.total) == (code, 0)
    else:
        assert (sent, drops.total) == (unit, 1)


def test_the_log_names_never_the_entity_id_nor_the_metadata_value(caplog: pytest.LogCaptureFixture) -> None:
    drops = MetadataDrops("orion-main", entity="NGSI v2", logger=logging.getLogger(v2.__name__))
    r = stored({"unitCode": MAIL, "note": MAC}, entity_id=f"urn:ngsi-ld:Patron:{CARD}", entity_type="Patron")
    with caplog.at_level(logging.DEBUG, logger=v2.__name__):
        for _ in range(2):
            to_v2_entity(r, encoding=PCT, drops=drops)
    assert len(warnings_of(caplog)) == 1
    text = "\n".join(f"{rec.getMessage()} {rec.args}" for rec in caplog.records)
    for secret in (CARD, MAIL, MAC):
        assert secret not in text


async def test_an_old_record_is_delivered_through_orion_and_its_overridden_unitcode_said(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = OrionConfig.model_validate({"name": "orion-main", "type": "orion", "url": orion_double.url})
    up = OrionUplink(config, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    before = v2.DROPPED_METADATA.total
    flood = "urn:ngsi-ld:FloodMonitoring:clash-01"
    old = stored({"unitCode": "CMT"}, entity_id=flood, entity_type="FloodMonitoringClash")
    await up.start()
    try:
        with caplog.at_level(logging.WARNING, logger=v2.__name__):
            outcomes = await up.deliver([old])
    finally:
        await up.close()
    assert outcomes == [DELIVERED]
    [written] = [e for e in orion_double.written if e["id"] == flood]
    assert written["waterLevel"]["metadata"]["unitCode"]["value"] == "MTR"
    # counted by the uplink that delivered it, for its status (test_metadata_drops_delivered), not by the module
    assert up.diagnostics() == {
        "metadata_dropped": 1,
        "metadata_dropped_by_name": {"FloodMonitoringClash.waterLevel.unitCode": 1},
    }
    assert v2.DROPPED_METADATA.total == before
    assert [m.split(":")[0] for m in warnings_of(caplog)] == ["FloodMonitoringClash.waterLevel.metadata.unitCode"]

"""Metadata an NGSI-LD entity cannot carry is counted and logged, never left out unsaid.

NGSI-LD has no metadata: each item becomes a sub-property of its attribute, and a sub-property named
like one of the attribute's own members (`value`, `observedAt`, `type`, ...) cannot be sent. check_reading
refuses such names at the source, but readings stored before it did (an outbox carried over an upgrade)
still reach the converter, which left their metadata out without a word: the platform team never learnt
that a device's `value` or `observedAt` was lost. Now each is counted per (entity type, attribute,
metadata name) and logged once, with names only (an entity id or a metadata value may be personal data).

A device's `observedAt` metadata does not become the attribute's observedAt: the v2 path writes
TimeInstant from the reading's observed_at and refuses a TimeInstant metadata, so the two uplinks would
disagree about when the value was observed. The device's time belongs in observed_at.

A metadata `unitCode` that is not text passed check_reading and was dropped the same way (v2 carried it);
it is refused at the source now. With both a unit and a metadata `unitCode` (only in old records) the
unit wins, as in v2, and the metadata is counted.
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
from gateway.ngsi import ld
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import MetadataDrops, ld_upsert_body, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Attribute, Reading, Source, TimeSource, decode_reading, encode_reading
from gateway.uplinks.api import DELIVERED
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from tests.support.orion_double import OrionDouble
from tests.support.orion_rules import validate_ld_upsert

PCT = ValueEncoding.PERCENT
GAUGE = "urn:ngsi-ld:WaterObserved:kuma-01"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
WHEN = "2024-05-01T00:00:00.000Z"
CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
MEMBERS = ["type", "value", "object", "observedAt", "datasetId", "languageMap", "createdAt", "modifiedAt"]
# personal data that must never reach a log line: a library card number, an e-mail and a MAC address
CARD, MAIL, MAC = "0012345678901", "taro@example.jp", "aa:bb:cc:dd:ee:ff"


def stored(
    metadata: dict[str, Any],
    *,
    entity_id: str = GAUGE,
    entity_type: str = "WaterObserved",
    unit: str | None = None,
    value: Any = 1.2,
    atype: str = "Number",
) -> Reading:
    """A reading as an older gateway stored it (check_reading of its day let it through), read back from the buffer's form."""
    r = Reading(
        entity_id=entity_id,
        entity_type=entity_type,
        attributes={"waterLevel": Attribute(value=value, type=atype, unit=unit, metadata=metadata)},
        observed_at=T0,
        time_source=TimeSource.DEVICE,
        source=Source(adapter="gauge"),
    )
    return decode_reading(encode_reading(r), 1)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ld.__name__ and r.levelno == logging.WARNING]


# ---------------------------------------------------------------------------- counted and logged once


def test_member_named_metadata_is_counted_per_type_attribute_and_name_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops = MetadataDrops("ld-main")
    device_time = {"value": "cal-42", "observedAt": "2024-04-30T23:59:00Z", "accuracy": 0.01}
    readings = [stored(device_time), stored(device_time, entity_id="urn:ngsi-ld:WaterObserved:kuma-02")] * 3
    readings.append(stored({"type": "gauge"}, entity_id="urn:ngsi-ld:Device:gw", entity_type="Device"))
    with caplog.at_level(logging.DEBUG, logger=ld.__name__):
        entities = [to_ld_entity(r, encoding=PCT, context=None, drops=drops) for r in readings]
    assert entities[0]["waterLevel"] == {
        "type": "Property",
        "value": 1.2,
        "observedAt": WHEN,  # the reading's time, not the device's metadata
        "accuracy": {"type": "Property", "value": 0.01},
    }
    assert drops.counts == {
        ("WaterObserved", "waterLevel", "value"): 6,
        ("WaterObserved", "waterLevel", "observedAt"): 6,
        ("Device", "waterLevel", "type"): 1,
    }
    assert drops.total == 13
    assert warnings_of(caplog) == [
        "WaterObserved.waterLevel.metadata.value: left out of the NGSI-LD entity (a reading of adapter gauge),"
        " NGSI-LD uses 'value' for the attribute's own member; rename the metadata where it is made"
        " (check_reading refuses it now: this reading was stored before). Further ones are counted, not logged",
        "WaterObserved.waterLevel.metadata.observedAt: left out of the NGSI-LD entity (a reading of adapter gauge),"
        " NGSI-LD uses 'observedAt' for the attribute's own member, which the converter writes from the"
        " reading's observed_at; rename the metadata where it is made"
        " (check_reading refuses it now: this reading was stored before). Further ones are counted, not logged",
        "Device.waterLevel.metadata.type: left out of the NGSI-LD entity (a reading of adapter gauge),"
        " NGSI-LD uses 'type' for the attribute's own member; rename the metadata where it is made"
        " (check_reading refuses it now: this reading was stored before). Further ones are counted, not logged",
    ]
    assert {getattr(r, "component", None) for r in caplog.records if r.levelno == logging.WARNING} == {"ld-main"}
    assert drops.diagnostics() == {
        "metadata_dropped": 13,
        "metadata_dropped_by_name": {
            "WaterObserved.waterLevel.value": 6,
            "WaterObserved.waterLevel.observedAt": 6,
            "Device.waterLevel.type": 1,
        },
    }


@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_name_is_counted_and_the_entity_still_goes(name: str) -> None:
    drops = MetadataDrops("ld-main")
    entity = to_ld_entity(stored({name: "x", "note": "kept"}), encoding=PCT, context=CTX, drops=drops)
    assert drops.counts == {("WaterObserved", "waterLevel", name): 1}
    assert entity["waterLevel"]["note"] == {"type": "Property", "value": "kept"}
    body = ld_upsert_body([orjson.dumps(entity)])
    assert validate_ld_upsert({"Content-Type": "application/ld+json", "Content-Length": str(len(body))}, body) == (
        204,
        None,
    )


def test_the_log_names_never_the_entity_id_nor_the_metadata_value(caplog: pytest.LogCaptureFixture) -> None:
    drops = MetadataDrops("ld-main")
    r = stored(
        {"value": MAIL, "object": CARD, "unitCode": 4711, "note": MAC},
        entity_id=f"urn:ngsi-ld:Patron:{CARD}",
        entity_type="Patron",
    )
    with caplog.at_level(logging.DEBUG, logger=ld.__name__):
        for _ in range(2):
            to_ld_entity(r, encoding=PCT, context=None, drops=drops)
    assert len(warnings_of(caplog)) == 3
    text = "\n".join(f"{rec.getMessage()} {rec.args}" for rec in caplog.records)
    for secret in (CARD, MAIL, MAC, "4711"):
        assert secret not in text


def test_a_unitcode_the_member_cannot_hold_is_counted_and_a_unit_wins_as_in_v2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops = MetadataDrops("ld-main")
    with caplog.at_level(logging.WARNING, logger=ld.__name__):
        number = to_ld_entity(stored({"unitCode": 5}), encoding=PCT, context=None, drops=drops)
        both = stored({"unitCode": "CMT"}, unit="MTR")
        entity = to_ld_entity(both, encoding=PCT, context=None, drops=drops)
    assert "unitCode" not in number["waterLevel"]
    # v2 sends the unit, whatever the metadata says; NGSI-LD now says the same
    assert to_v2_entity(both, encoding=PCT)["waterLevel"]["metadata"]["unitCode"]["value"] == "MTR"
    assert entity["waterLevel"]["unitCode"] == "MTR"
    assert drops.counts == {("WaterObserved", "waterLevel", "unitCode"): 2}
    assert warnings_of(caplog) == [
        "WaterObserved.waterLevel.metadata.unitCode: left out of the NGSI-LD entity (a reading of adapter gauge),"
        " NGSI-LD's unitCode member takes a unit code as text, got a number; rename the metadata where it is made"
        " (check_reading refuses it now: this reading was stored before). Further ones are counted, not logged"
    ]


def test_what_needs_no_word_is_left_out_without_one(caplog: pytest.LogCaptureFixture) -> None:
    """ignoreType only tells Orion v2 not to index a location; a null metadata has no value to send."""
    drops = MetadataDrops("ld-main")
    point = {"type": "Point", "coordinates": [130.7, 32.2]}
    with caplog.at_level(logging.DEBUG, logger=ld.__name__):
        entity = to_ld_entity(
            stored({"ignoreType": True, "accuracy": None, "unitCode": "MTR"}, value=point, atype="geo:json"),
            encoding=PCT,
            context=None,
            drops=drops,
        )
    assert entity["waterLevel"] == {"type": "GeoProperty", "value": point, "unitCode": "MTR", "observedAt": WHEN}
    assert (drops.total, drops.counts, caplog.records) == (0, {}, [])


def test_the_names_remembered_are_bounded_and_the_total_still_counts(caplog: pytest.LogCaptureFixture) -> None:
    drops = MetadataDrops("ld-main", max_names=2)
    with caplog.at_level(logging.WARNING, logger=ld.__name__):
        for etype in ("A", "B", "C", "C"):
            to_ld_entity(stored({"value": 1}, entity_type=etype), encoding=PCT, context=None, drops=drops)
    assert drops.counts == {("A", "waterLevel", "value"): 1, ("B", "waterLevel", "value"): 1}
    assert drops.total == 4
    assert len(warnings_of(caplog)) == 2


NAMES = st.sampled_from([*MEMBERS, "unitCode", "ignoreType", "accuracy", "note", "dateObserved"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4), st.just([1, "a"]))


@given(metadata=st.dictionaries(NAMES, VALUES, max_size=6), unit=st.sampled_from([None, "MTR"]))
def test_no_metadata_is_left_out_unsaid(metadata: dict[str, Any], unit: str | None) -> None:
    """Every metadata item is a sub-property, the unitCode member, or counted; only null and ignoreType go quietly."""
    drops = MetadataDrops("ld-main")
    prop = to_ld_entity(stored(metadata, unit=unit), encoding=PCT, context=None, drops=drops)["waterLevel"]
    for name, value in metadata.items():
        counted = drops.counts.get(("WaterObserved", "waterLevel", name), 0)
        if value is None or name == "ignoreType":
            assert counted == 0
        elif name == "unitCode" and unit is None and isinstance(value, str):
            assert (prop["unitCode"], counted) == (value, 0)
        elif name in MEMBERS or name == "unitCode":
            assert counted == 1
        else:
            assert (name in prop, counted) == (True, 0)
    assert prop["observedAt"] == WHEN
    code = metadata.get("unitCode")
    assert prop.get("unitCode") == (unit if unit is not None else code if isinstance(code, str) else None)


# --------------------------------------------------------------------------------- through the uplink


async def test_an_old_record_is_delivered_and_its_lost_metadata_said(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = NgsiLdConfig.model_validate({"name": "ld-main", "type": "ngsi-ld", "url": orion_double.url})
    up = NgsiLdUplink(config, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    # a type no other test converts: the shared counter has not met this name before
    flood = "urn:ngsi-ld:FloodMonitoring:kuma-01"
    old = stored(
        {"observedAt": "2024-04-30T23:59:00Z", "accuracy": 0.01}, entity_id=flood, entity_type="FloodMonitoring"
    )
    await up.start()
    try:
        with caplog.at_level(logging.WARNING, logger=ld.__name__):
            outcomes = await up.deliver([old])
    finally:
        await up.close()
    assert outcomes == [DELIVERED]
    entity = orion_double.ld_entities[("", flood)]  # no tenant configured: the broker's default
    assert entity["waterLevel"]["observedAt"] == WHEN and entity["waterLevel"]["accuracy"]["value"] == 0.01
    # counted for this uplink's status (status.json's uplink diagnostics), and logged under its name
    assert up.diagnostics() == {
        "metadata_dropped": 1,
        "metadata_dropped_by_name": {"FloodMonitoring.waterLevel.observedAt": 1},
    }
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage().split(":")[0] == "FloodMonitoring.waterLevel.metadata.observedAt"
    assert record.component == "ld-main"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- refused at the source


@pytest.mark.parametrize(
    ("unit_code", "got"),
    [
        (5, "a number 5"),
        ({"type": "Number", "value": 5}, "a number 5"),
        (["MTR"], "an array ['MTR']"),
        (True, "a boolean True"),
    ],
)
def test_a_unitcode_metadata_that_is_not_text_is_refused_at_the_source(unit_code: Any, got: str) -> None:
    r = stored({"unitCode": unit_code})
    with pytest.raises(ReadingError) as err:
        ReadingChecker().check(r, encoding=PCT)
    assert str(err.value) == (
        f"{GAUGE}.waterLevel.metadata.unitCode: unitCode must be text, a UN/CEFACT common code such as MTR, CEL"
        f" or P1 (NGSI-LD's unitCode member is a string), got {got}; give the unit as the attribute's unit instead"
    )


def test_a_text_unitcode_metadata_still_passes_and_becomes_the_member() -> None:
    r = stored({"unitCode": {"type": "Text", "value": "MTR"}})
    ReadingChecker().check(r, encoding=PCT)
    drops = MetadataDrops("ld-main")
    assert to_ld_entity(r, encoding=PCT, context=None, drops=drops)["waterLevel"]["unitCode"] == "MTR"
    assert drops.total == 0


def test_a_device_observed_at_metadata_is_refused_with_where_its_time_belongs() -> None:
    with pytest.raises(ReadingError) as err:
        ReadingChecker().check(stored({"observedAt": "2024-04-30T23:59:00Z"}), encoding=PCT)
    assert str(err.value) == (
        f"{GAUGE}.waterLevel.metadata.observedAt: metadata name must not be 'observedAt', NGSI-LD reserves it"
        " (metadata become sub-properties there), got 'observedAt'; rename the metadata (each attribute's"
        " observedAt is the reading's observed_at: give the device's time as the reading's time)"
    )

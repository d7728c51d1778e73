"""Metadata names NGSI-LD reserves are refused at the source, since metadata become sub-properties there.

NGSI v2 takes a metadata named `location`, `scope` or `id`; NGSI-LD, where each metadata item is a
sub-property of its attribute, refuses the whole entity (207: "location must be a GeoProperty",
"Reserved attribute name"), and a sub-property named `type`, `createdAt`, `value` or `observedAt` would
collide with the attribute's own member and be left out. One reading must fit every uplink, so check_reading refuses
them with the attribute and the metadata name; the metadata this gateway adds itself still pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ReadingError
from gateway.ngsi.check import LD_ATTRIBUTE_MEMBERS, LD_GEO_NAMES, LD_RESERVED_ATTRIBUTES, ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import ld_upsert_body, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.processing.quality import (
    LOOP_METADATA,
    RAW_METADATA,
    VALUE_METADATA,
    QualityResult,
    quality_metadata,
)
from gateway.records import Attribute, Reading, Source, TimeSource
from tests.support.orion_rules import validate_ld_upsert, validate_v2_update

GAUGE = "urn:ngsi-ld:WaterObserved:kuma-01"
CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
V2_HEADERS = {"Content-Type": "application/json", "Fiware-Service": "kumamoto", "Fiware-ServicePath": "/river"}
RESERVED = sorted(LD_GEO_NAMES | LD_RESERVED_ATTRIBUTES | LD_ATTRIBUTE_MEMBERS | {"id", "type"})
POINT = {"type": "geo:json", "value": {"type": "Point", "coordinates": [130.7, 32.2]}}


def gauge(metadata: dict[str, Any], *, unit: str | None = None) -> Reading:
    return Reading(
        entity_id=GAUGE,
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=1.2, type="Number", unit=unit, metadata=metadata)},
        observed_at=datetime(2024, 5, 1, tzinfo=UTC),
        time_source=TimeSource.DEVICE,
        source=Source(adapter="sim"),
    )


def ld_answer(r: Reading) -> tuple[int, object | None]:
    body = ld_upsert_body([orjson.dumps(to_ld_entity(r, encoding=ValueEncoding.PERCENT, context=CTX))])
    return validate_ld_upsert({"Content-Type": "application/ld+json", "Content-Length": str(len(body))}, body)


def v2_answer(r: Reading) -> tuple[int, object | None]:
    body = v2_update_body([orjson.dumps(to_v2_entity(r, encoding=ValueEncoding.PERCENT))])
    return validate_v2_update({**V2_HEADERS, "Content-Length": str(len(body))}, body)


@pytest.mark.parametrize("encoding", list(ValueEncoding))
@pytest.mark.parametrize("name", RESERVED)
def test_a_metadata_name_ngsi_ld_reserves_is_refused_naming_attribute_and_metadata(
    name: str, encoding: ValueEncoding
) -> None:
    with pytest.raises(ReadingError) as err:
        ReadingChecker().check(gauge({name: "bridge pier 3"}), encoding=encoding)
    fix = "rename the metadata"
    if name == "observedAt":  # a device's own time: where it belongs instead
        fix += (
            " (each attribute's observedAt is the reading's observed_at: give the device's time as the reading's time)"
        )
    assert str(err.value) == (
        f"{GAUGE}.waterLevel.metadata.{name}: metadata name must not be {name!r}, NGSI-LD reserves it"
        f" (metadata become sub-properties there), got {name!r}; {fix}"
    )


def test_a_geo_json_metadata_named_location_is_refused_too() -> None:
    """Even a GeoJSON value cannot be sent: NGSI-LD has no GeoProperty sub-property for a metadata."""
    with pytest.raises(ReadingError, match=r"\.waterLevel\.metadata\.location: metadata name must not be 'location'"):
        ReadingChecker().check(gauge({"location": POINT}), encoding=ValueEncoding.PERCENT)


@pytest.mark.parametrize(
    "metadata",
    [
        quality_metadata(QualityResult(keep=True, flags=())),  # the quality stage's own
        {"reason": {"type": "Text", "value": "timeout"}},  # deviceState's, from the modbus and fleet code
        {n: {"type": "Number", "value": 4} for n in (RAW_METADATA, LOOP_METADATA, VALUE_METADATA)},
        {"accuracy": 0.01, "ignoreType": False, "dateObserved": "2024-05-01T00:00:00Z", "note": "x"},
        {"unitCode": "MTR"},
    ],
)
def test_the_metadata_the_gateway_adds_pass_and_a_reserved_name_beside_them_does_not(
    metadata: dict[str, Any],
) -> None:
    r = gauge(metadata)
    ReadingChecker().check(r, encoding=ValueEncoding.PERCENT)
    assert v2_answer(r) == (204, None)
    assert ld_answer(r) == (204, None)
    with pytest.raises(ReadingError, match=r"\.metadata\.scope: metadata name must not be 'scope'"):
        ReadingChecker().check(gauge({**metadata, "scope": "/kumamoto"}), encoding=ValueEncoding.PERCENT)


@given(
    name=st.sampled_from(RESERVED),
    value=st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans(), st.just(POINT)),
    encoding=st.sampled_from(list(ValueEncoding)),
)
def test_whatever_check_reading_accepts_converts_into_what_both_oracles_accept(
    name: str, value: Any, encoding: ValueEncoding
) -> None:
    """The README's promise for these names: refused at the source, or accepted by v2 and NGSI-LD alike."""
    r = gauge({name: value, "accuracy": 0.01})
    try:
        ReadingChecker().check(r, encoding=encoding)
    except ReadingError:
        return
    assert v2_answer(r) == (204, None)
    assert ld_answer(r) == (204, None)

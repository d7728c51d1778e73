"""Any Reading is either refused at the source or converted into something Orion accepts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings

from gateway.errors import ReadingError
from gateway.ngsi import geojson
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import ld_upsert_body, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.records import Attribute, Lane, Reading, Source, TimeSource
from tests.ngsi.strategies import geo_values, readings
from tests.support.orion_rules import check_geojson, validate_ld_upsert, validate_v2_update

CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
V2_HEADERS = {"Content-Type": "application/json", "Fiware-Service": "kumamoto", "Fiware-ServicePath": "/river"}


def _accepted(reading: Reading, encoding: ValueEncoding) -> bool:
    try:
        ReadingChecker().check(reading, encoding=encoding)
    except ReadingError:
        return False
    return True


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(readings())
def test_v2_either_refused_or_accepted_by_orion(reading: Reading) -> None:
    for encoding in ValueEncoding:
        if not _accepted(reading, encoding):
            continue
        body = v2_update_body([orjson.dumps(to_v2_entity(reading, encoding=encoding))])
        assert validate_v2_update({**V2_HEADERS, "Content-Length": str(len(body))}, body) == (204, None), (
            encoding,
            body,
        )


# Found by the property below in a CI run: the NGSI-LD encoder keeps a target starting with urn: as it is,
# and a bare "urn:" is no URI, which Orion-LD refuses (207, 400 "Relationship object must be a URI").
BARE_URN_TARGET = Reading(
    entity_id="0",
    entity_type="A",
    attributes={"a": Attribute(value="urn:", type="Relationship")},
    observed_at=datetime(2000, 1, 1, tzinfo=UTC),
    time_source=TimeSource.DEVICE,
    source=Source(adapter="sim", device=""),
    lane=Lane.ALERT,
)


@pytest.mark.parametrize("encoding", list(ValueEncoding))
def test_a_relationship_to_a_bare_urn_is_refused_at_the_source(encoding: ValueEncoding) -> None:
    with pytest.raises(ReadingError, match=r"^0\.a: Relationship target must name an entity after urn:, got 'urn:'"):
        ReadingChecker().check(BARE_URN_TARGET, encoding=encoding)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(readings())
@example(BARE_URN_TARGET)
def test_ld_either_refused_or_accepted_by_orion_ld(reading: Reading) -> None:
    for encoding in ValueEncoding:
        if not _accepted(reading, encoding):
            continue
        inline = ld_upsert_body([orjson.dumps(to_ld_entity(reading, encoding=encoding, context=CTX))])
        headers = {"Content-Type": "application/ld+json", "Content-Length": str(len(inline))}
        assert validate_ld_upsert(headers, inline) == (204, None), (encoding, inline)
        linked = ld_upsert_body([orjson.dumps(to_ld_entity(reading, encoding=encoding, context=None))])
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(linked)),
            "Link": f'<{CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"',
            "NGSILD-Tenant": "kumamoto",
        }
        assert validate_ld_upsert(headers, linked) == (204, None), (encoding, linked)


@settings(max_examples=400)
@given(geo_values)
def test_geojson_either_refused_or_indexable(value: Any) -> None:
    """Whatever geo:json value the checker lets through, MongoDB (as the oracle has it) can index."""
    if geojson.problem(value) is not None:
        return
    sent = geojson.geometry_of(value)
    check_geojson(sent, strict=True, indexed=True)  # raises (a refusal) if the oracle disagrees

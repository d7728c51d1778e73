"""Attribute and metadata names starting with '@' are refused at the source: in an NGSI-LD entity (JSON-LD) they are
keywords or have a keyword's form, and Orion-LD refuses an entity with both `id` and `@id` (pCheckEntity.cpp),
so such a reading, acknowledged at its source, would be dead-lettered on every NGSI-LD uplink."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import ld_upsert_body, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Status
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from tests.support import orion_rules
from tests.support.orion_double import OrionDouble

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
THING = "urn:ngsi-ld:Thing:t1"
CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
LINK = f'<{CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
KEYWORDS = ["@id", "@type", "@value", "@graph", "@language"]
# not keywords, but of a keyword's form (JSON-LD 1.1 reserves those), or not even that: one rule for all
AT_NAMES = [*KEYWORDS, "@foo", "@1", "@"]


def thing(attrs: dict[str, Attribute] | None = None, entity: str = THING) -> Reading:
    return Reading(
        entity_id=entity,
        entity_type="Thing",
        attributes={**(attrs or {}), "n": Attribute(value=1.0, type="Number")},
        observed_at=T0,
        source=Source(adapter="a"),
    )


def refused(r: Reading, encoding: ValueEncoding) -> ReadingError:
    with pytest.raises(ReadingError) as exc:
        ReadingChecker().check(r, encoding=encoding)
    return exc.value


@pytest.mark.parametrize("encoding", list(ValueEncoding))
@pytest.mark.parametrize("name", AT_NAMES)
def test_an_attribute_named_with_an_at_sign_is_refused(name: str, encoding: ValueEncoding) -> None:
    err = refused(thing({name: Attribute(value="abc", type="Text")}), encoding)
    assert str(err) == (
        f"{THING}: attribute name must not start with '@', NGSI-LD (JSON-LD) reserves such names for its keywords"
        f" (an NGSI-LD broker refuses or drops the attribute), got {name!r};"
        " rename the attribute in the device profile or decoder"
    )
    assert err.params == {"entity_id": THING, "attribute": name}


@pytest.mark.parametrize("encoding", list(ValueEncoding))
@pytest.mark.parametrize("name", AT_NAMES)
def test_a_metadata_named_with_an_at_sign_is_refused(name: str, encoding: ValueEncoding) -> None:
    r = thing({"level": Attribute(value=1.5, type="Number", metadata={name: "x"})})
    err = refused(r, encoding)
    assert str(err) == (
        f"{THING}.level.metadata.{name}: metadata name must not start with '@', NGSI-LD (JSON-LD) reserves such"
        f" names for its keywords (metadata become sub-properties there), got {name!r}; rename the metadata"
    )
    assert err.params["metadata"] == name


def test_context_keeps_its_own_words_and_an_at_sign_inside_a_name_is_fine() -> None:
    err = refused(thing({"@context": Attribute(value="x", type="Text")}), ValueEncoding.PERCENT)
    assert str(err) == (f"{THING}: attribute name must not be '@context', it is reserved by NGSI-LD, got '@context'")
    ok = thing(
        {
            "mail@home": Attribute(value="x", type="Text"),
            "level": Attribute(value=1.0, type="Number", metadata={"by@sensor": "x"}),
        }
    )
    ReadingChecker().check(ok, encoding=ValueEncoding.PERCENT)


@pytest.mark.parametrize(("name", "member"), [("@id", "id"), ("@type", "type")])
def test_the_strict_double_refuses_what_orion_ld_refuses(name: str, member: str) -> None:
    # a reading stored before check_reading refused such names: the converter copies the name into the entity
    r = thing({name: Attribute(value="abc", type="Text")})
    entity = to_ld_entity(r, encoding=ValueEncoding.PERCENT, context=None)
    assert name in entity and member in entity
    body = ld_upsert_body([orjson.dumps(entity)])
    status, answer = orion_rules.validate_ld_upsert(
        {"Content-Type": "application/json", "Content-Length": str(len(body)), "Link": LINK}, body
    )
    detail = THING if member == "id" else "Thing"
    assert (status, answer) == (
        207,
        {
            "success": [],
            "errors": [
                {
                    "entityId": THING,
                    "error": {
                        "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                        "title": f"Both /{member}/ and /{name}/ field in an entity",
                        "detail": detail,
                        "status": 400,
                    },
                }
            ],
        },
    )
    # Orion (v2) stores it as an attribute like any other: only the NGSI-LD uplinks would lose it
    v2 = v2_update_body([orjson.dumps(to_v2_entity(r, encoding=ValueEncoding.PERCENT))])
    assert orion_rules.validate_v2_update({"Content-Type": "application/json", "Content-Length": str(len(v2))}, v2) == (
        204,
        None,
    )


def test_the_strict_double_refuses_them_as_sub_attributes_too() -> None:
    entity = to_ld_entity(thing(), encoding=ValueEncoding.PERCENT, context=None)
    entity["n"]["@id"] = {"type": "Property", "value": "x"}
    body = ld_upsert_body([orjson.dumps(entity)])
    status, answer = orion_rules.validate_ld_upsert(
        {"Content-Type": "application/json", "Content-Length": str(len(body)), "Link": LINK}, body
    )
    assert status == 207 and isinstance(answer, dict)
    assert answer["errors"][0]["error"]["title"] == "Reserved attribute name"


async def test_a_reading_stored_before_is_dead_lettered_by_the_ngsi_ld_uplink(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # what check_reading now keeps out of the buffer: the double refuses it as Orion-LD does, the good one goes on
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": orion_double.url}
    up = NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    stored = thing({"@id": Attribute(value="abc", type="Text")}, entity="urn:ngsi-ld:Thing:old")
    await up.start()
    try:
        outcomes = await up.deliver([stored, thing()])
    finally:
        await up.close()
    assert outcomes[1] is DELIVERED and outcomes[0].status is Status.REJECTED
    assert "Both /id/ and /@id/ field in an entity" in outcomes[0].reason

"""Readings → NGSI-LD entities and `POST /ngsi-ld/v1/entityOperations/upsert` bodies.

Ids become URNs (`urn:ngsi-ld:<Type>:<id>` unless already `urn:`); attributes become `Property`
(with `unitCode` and `observedAt`), `Relationship` (with `object`) or `GeoProperty`; `DateTime`
values are JSON-LD typed values. NGSI-LD has no metadata: a reading's metadata become
sub-properties (a metadata `unitCode` becomes the `unitCode` member, `ignoreType` is dropped).
The time source is the entity Property `timeSource` (`device` or `gateway`). Attributes whose
value is null are left out: NGSI-LD gives null the meaning "delete".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.ngsi.check import DATETIME_TYPES, canonical_datetime, ngsi_type
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.geojson import geometry_of
from gateway.ngsi.values import encode_attribute_value, encode_metadata_value
from gateway.records import Reading, iso_utc

LD_BODY_OVERHEAD = 2  # the brackets of the JSON array
_URN_PREFIX = "urn:ngsi-ld:"
# members of an NGSI-LD attribute; metadata with these names cannot become sub-properties
_ATTRIBUTE_MEMBERS = frozenset(
    {
        "type",
        "value",
        "object",
        "observedAt",
        "unitCode",
        "datasetId",
        "languageMap",
        "createdAt",
        "modifiedAt",
        "ignoreType",
    }
)


def ld_entity_id(entity_id: str, entity_type: str) -> str:
    return entity_id if entity_id.startswith("urn:") else f"{_URN_PREFIX}{entity_type}:{entity_id}"


def _relationship_object(target: str) -> str:
    # a bare v2 id has no type to build urn:ngsi-ld:<Type>:<id> from; profiles should give full URNs
    return target if target.startswith("urn:") else _URN_PREFIX + target


def _sub_properties(prop: dict[str, Any], metadata: Mapping[str, Any], encoding: ValueEncoding) -> None:
    for mname, mvalue in metadata.items():
        typed = isinstance(mvalue, Mapping) and "value" in mvalue and set(mvalue) <= {"type", "value"}
        raw = mvalue["value"] if typed else mvalue
        if raw is None:
            continue
        if mname == "unitCode" and isinstance(raw, str):
            prop["unitCode"] = raw
            continue
        if mname in _ATTRIBUTE_MEMBERS:
            continue
        mtype = ngsi_type(str(mvalue.get("type") or "") if typed else "", raw)
        if mtype in DATETIME_TYPES and isinstance(raw, str):
            prop[mname] = {"type": "Property", "value": {"@type": "DateTime", "@value": canonical_datetime(raw)}}
        else:
            prop[mname] = {"type": "Property", "value": encode_metadata_value(raw, encoding)}


def to_ld_entity(reading: Reading, *, encoding: ValueEncoding, context: str | None) -> dict[str, Any]:
    """The NGSI-LD entity; with `context` the `@context` is inline (send `application/ld+json`),
    without it the caller sends the context in a `Link` header with `application/json`."""
    when = iso_utc(reading.observed_at)
    entity: dict[str, Any] = {"id": ld_entity_id(reading.entity_id, reading.entity_type), "type": reading.entity_type}
    for name, attr in reading.attributes.items():
        value = attr.value
        if value is None:
            continue
        atype = ngsi_type(attr.type, value)
        prop: dict[str, Any]
        if atype == "Relationship":
            prop = {"type": "Relationship", "object": _relationship_object(value)}
        elif atype == "geo:json":
            # GeoProperty values are geometries: a Feature is sent as its geometry
            prop = {"type": "GeoProperty", "value": geometry_of(value)}
        elif atype in DATETIME_TYPES and isinstance(value, str):
            prop = {"type": "Property", "value": {"@type": "DateTime", "@value": canonical_datetime(value)}}
        else:
            _, encoded = encode_attribute_value(atype, value, encoding)
            prop = {"type": "Property", "value": encoded}
        if attr.unit is not None:
            prop["unitCode"] = attr.unit
        prop["observedAt"] = when
        if attr.metadata:
            _sub_properties(prop, attr.metadata, encoding)
        entity[name] = prop
    entity["timeSource"] = {"type": "Property", "value": reading.time_source.value, "observedAt": when}
    if context is not None:
        entity["@context"] = context
    return entity


def ld_upsert_body(entities: Sequence[bytes]) -> bytes:
    """A JSON array of entities already serialized with orjson; length `LD_BODY_OVERHEAD + sum + commas`."""
    return b"[" + b",".join(entities) + b"]"

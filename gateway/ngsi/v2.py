"""Readings → NGSI v2 normalized entities and `POST /v2/op/update` bodies for Orion.

Each attribute is sent with an explicit type, its unit as metadata `unitCode` and the observation
time as metadata `TimeInstant`; the entity gets a `TimeInstant` attribute too (the FIWARE IoT Agent
convention QuantumLeap and Cygnus index by). That entity attribute carries metadata `timeSource`
(`device` when the device's clock stamped the reading, `gateway` when the gateway stamped it on
arrival), so a consumer can tell a trustworthy observation time from an arrival time.

`DateTime` (and Orion's older spelling `ISO8601`) values are rendered canonical UTC; a `geo:json`
location given as a GeoJSON Feature (or one-Feature collection) is sent as its geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.ngsi.check import DATETIME_TYPES, canonical_datetime, ngsi_type
from gateway.ngsi.geojson import geometry_of
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.values import encode_attribute_value, encode_metadata_value
from gateway.records import Reading, iso_utc

_HEAD = b'{"actionType":"append","entities":['
_TAIL = b"]}"
V2_BODY_OVERHEAD = len(_HEAD) + len(_TAIL)


def _metadata_item(value: Any, encoding: ValueEncoding) -> dict[str, Any]:
    """A reading's metadata value: `{"type", "value"}` as given, else a bare value typed like Orion would."""
    if isinstance(value, Mapping) and "value" in value and set(value) <= {"type", "value"}:
        raw = value["value"]
        mtype = ngsi_type(str(value.get("type") or ""), raw)
    else:
        raw = value
        mtype = ngsi_type("", raw)
    if mtype in DATETIME_TYPES and isinstance(raw, str):
        raw = canonical_datetime(raw)
    return {"type": mtype, "value": encode_metadata_value(raw, encoding)}


def _ignored(metadata: Mapping[str, Any]) -> bool:
    """Whether metadata `ignoreType` is true, i.e. Orion stores the geo:json value without indexing it."""
    flag = metadata.get("ignoreType")
    if isinstance(flag, Mapping):
        flag = flag.get("value")
    return flag is True


def to_v2_entity(reading: Reading, *, encoding: ValueEncoding) -> dict[str, Any]:
    """The normalized entity for one reading; assumes `check_reading` accepted it."""
    when = iso_utc(reading.observed_at)
    stamp = {"type": "DateTime", "value": when}
    entity: dict[str, Any] = {"id": reading.entity_id, "type": reading.entity_type}
    for name, attr in reading.attributes.items():
        value = attr.value
        atype = ngsi_type(attr.type, value)
        if atype in DATETIME_TYPES and isinstance(value, str):
            value = canonical_datetime(value)
        elif atype == "geo:json" and isinstance(value, Mapping) and not _ignored(attr.metadata):
            # Orion before 3.7 fails with 500 on a Feature location; later ones keep only its geometry
            value = geometry_of(value)
        atype, value = encode_attribute_value(atype, value, encoding)
        metadata: dict[str, Any] = {}
        for mname, mvalue in attr.metadata.items():
            metadata[mname] = _metadata_item(mvalue, encoding)
        if attr.unit is not None:
            metadata["unitCode"] = {"type": "Text", "value": attr.unit}
        metadata["TimeInstant"] = stamp
        entity[name] = {"type": atype, "value": value, "metadata": metadata}
    entity["TimeInstant"] = {
        "type": "DateTime",
        "value": when,
        "metadata": {"timeSource": {"type": "Text", "value": reading.time_source.value}},
    }
    return entity


def v2_update_body(entities: Sequence[bytes]) -> bytes:
    """`{"actionType":"append","entities":[...]}` around entities already serialized with orjson.

    Its length is exactly `V2_BODY_OVERHEAD + sum(len(e)) + len(entities) - 1`, which is what
    `gateway.ngsi.batching.plan_batches` plans with.
    """
    return _HEAD + b",".join(entities) + _TAIL

"""Readings → NGSI v2 normalized entities and `POST /v2/op/update` bodies for Orion.

Each attribute is sent with an explicit type, its unit as metadata `unitCode` and the observation
time as metadata `TimeInstant`; the entity gets a `TimeInstant` attribute too (the FIWARE IoT Agent
convention QuantumLeap and Cygnus index by). That entity attribute carries metadata `timeSource`
(`device` when the device's clock stamped the reading, `gateway` when the gateway stamped it on
arrival), so a consumer can tell a trustworthy observation time from an arrival time.

`DateTime` (and Orion's older spelling `ISO8601`) values are rendered canonical UTC; a `geo:json`
location given as a GeoJSON Feature (or one-Feature collection) is sent as its geometry.

An attribute's unit is its `unitCode`, as in NGSI-LD: a `unitCode` metadata beside it (check_reading
refuses that at the source; a reading stored before it did still comes here) is overridden, counted in
`MetadataDrops` and logged once, never replaced unsaid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.ngsi.check import DATETIME_TYPES, canonical_datetime, canonical_shape, ngsi_type
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.geojson import geometry_of
from gateway.ngsi.ld import MetadataDrops
from gateway.ngsi.values import encode_attribute_value, encode_metadata_value
from gateway.records import Reading, TimeSource, iso_utc

log = logging.getLogger(__name__)

# for callers that keep no MetadataDrops of their own
DROPPED_METADATA = MetadataDrops("ngsi-v2", entity="NGSI v2", logger=log)
_UNIT_WINS = "the attribute's unit is sent as unitCode"
_NULL_ITEM = {"value": None}  # an absent or null unitCode metadata: nothing to override

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


class _Instant:
    """The parts of an entity that depend only on its observation time, built once per time.

    Readings of one burst share their observed_at, so at 50,000 readings/s the TimeInstant metadata,
    the per-unit metadata of a Number and the entity's TimeInstant attribute repeat from entity to
    entity; building them once saved ~0.5 µs an entity (measured). These dicts are shared between the
    entities returned, which callers serialize and never modify.
    """

    __slots__ = ("observed_at", "plain", "stamp", "time_attrs", "units", "when")

    def __init__(self, observed_at: datetime) -> None:
        self.observed_at = observed_at  # held, so an `is` match can never be a new object at a reused address
        self.when = when = iso_utc(observed_at)
        self.stamp = {"type": "DateTime", "value": when}
        self.plain = {"TimeInstant": self.stamp}  # a Number's metadata without a unit
        self.units: dict[str, dict[str, Any]] = {}  # a Number's metadata by unit
        self.time_attrs = {
            ts: {"type": "DateTime", "value": when, "metadata": {"timeSource": {"type": "Text", "value": ts.value}}}
            for ts in TimeSource
        }

    def unit_metadata(self, unit: str) -> dict[str, Any]:
        meta = self.units.get(unit)
        if meta is None:
            if len(self.units) >= 256:
                self.units.clear()
            meta = self.units[unit] = {"unitCode": {"type": "Text", "value": unit}, "TimeInstant": self.stamp}
        return meta


# The last observation time's parts; replaced by one assignment (safe to share between threads).
_last: _Instant = _Instant(datetime(1970, 1, 1, tzinfo=UTC))


def to_v2_entity(
    reading: Reading, *, encoding: ValueEncoding, drops: MetadataDrops = DROPPED_METADATA
) -> dict[str, Any]:
    """The normalized entity for one reading; assumes `check_reading` accepted it. A `unitCode` metadata
    the attribute's unit overrides is counted in `drops`."""
    global _last
    instant = _last
    if reading.observed_at is not instant.observed_at:
        instant = _last = _Instant(reading.observed_at)
    stamp = instant.stamp
    entity: dict[str, Any] = {"id": reading.entity_id, "type": reading.entity_type}
    for name, attr in reading.attributes.items():
        value = attr.value
        tv = type(value)
        if attr.type == "Number" and (tv is float or tv is int) and not attr.metadata:
            # the common sensor value: sent as it is, with the shared metadata of its time and unit
            unit = attr.unit
            entity[name] = {
                "type": "Number",
                "value": value,
                "metadata": instant.plain if unit is None else instant.unit_metadata(unit),
            }
            continue
        if attr.type == "DateTime" and tv is str and not attr.metadata and attr.unit is None and canonical_shape(value):
            # a date in Orion's form already (checked by check_reading): nothing to convert or encode
            entity[name] = {"type": "DateTime", "value": value, "metadata": instant.plain}
            continue
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
            if metadata.get("unitCode", _NULL_ITEM)["value"] is not None:
                drops.note(reading, name, "unitCode", _UNIT_WINS)
            metadata["unitCode"] = {"type": "Text", "value": attr.unit}
        metadata["TimeInstant"] = stamp
        entity[name] = {"type": atype, "value": value, "metadata": metadata}
    entity["TimeInstant"] = instant.time_attrs[reading.time_source]
    return entity


def v2_update_body(entities: Sequence[bytes]) -> bytes:
    """`{"actionType":"append","entities":[...]}` around entities already serialized with orjson.

    Its length is exactly `V2_BODY_OVERHEAD + sum(len(e)) + len(entities) - 1`, which is what
    `gateway.ngsi.batching.plan_batches` plans with.
    """
    return _HEAD + b",".join(entities) + _TAIL

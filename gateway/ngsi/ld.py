"""Readings → NGSI-LD entities and `POST /ngsi-ld/v1/entityOperations/upsert` bodies.

Ids become URNs (`urn:ngsi-ld:<Type>:<id>` unless already `urn:`); attributes become `Property`
(with `unitCode` and `observedAt`), `Relationship` (with `object`) or `GeoProperty`; `DateTime`
values are JSON-LD typed values. NGSI-LD has no metadata: a reading's metadata become
sub-properties (a metadata `unitCode` becomes the `unitCode` member unless the attribute has a unit,
which wins as in v2; `ignoreType`, which only tells Orion v2 not to index a location, and null
metadata are left out). The time source is the entity Property `timeSource` (`device` or
`gateway`). Attributes whose value is null are left out: NGSI-LD gives null the meaning "delete".

A metadata an entity cannot carry (named like one of the attribute's own members, or a `unitCode`
that is not text) is left out of it, and `MetadataDrops` counts it per (entity type, attribute,
metadata name) and logs the first one of each: check_reading refuses such metadata at the source,
so only a reading stored before it did (an outbox kept over an upgrade) comes here with one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from gateway.ngsi.check import DATETIME_TYPES, LD_ATTRIBUTE_MEMBERS, canonical_datetime, ngsi_type, value_kind
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.geojson import geometry_of
from gateway.ngsi.values import encode_attribute_value, encode_metadata_value
from gateway.records import Reading, iso_utc

log = logging.getLogger(__name__)

LD_BODY_OVERHEAD = 2  # the brackets of the JSON array
_URN_PREFIX = "urn:ngsi-ld:"
# members of an NGSI-LD attribute a sub-property cannot be named after (unitCode is mapped, below)
_ATTRIBUTE_MEMBERS = LD_ATTRIBUTE_MEMBERS | {"type", "createdAt", "modifiedAt"}
_MEMBER_WHY = {
    name: f"NGSI-LD uses {name!r} for the attribute's own member"
    + (", which the converter writes from the reading's observed_at" if name == "observedAt" else "")
    for name in _ATTRIBUTE_MEMBERS
}


DropKey = tuple[str, str, str]  # (entity type, attribute, metadata name)


class MetadataDrops:
    """Metadata left out of NGSI-LD entities, counted per (entity type, attribute, metadata name).

    The first of each is logged at WARNING, with names only: an entity id or a metadata value may be
    personal data (a card number in an id, an e-mail in a note). At most `max_names` names are
    remembered; beyond, drops still count in `total` and are logged at DEBUG.

    An uplink converts a reading again at every try, and an outage of an hour is hundreds of tries: it
    counts a reading's drops once, when the reading is delivered. Inside `held()`, `note` puts each drop
    in the list it yields instead of counting it, and the uplink gives a delivered reading's to `count`.
    The log line does not wait: it comes at the first conversion of its name, held or not.
    """

    def __init__(
        self,
        component: str = "ngsi-ld",
        *,
        max_names: int = 1024,
        entity: str = "NGSI-LD",
        logger: logging.Logger | None = None,
    ) -> None:
        self.component = component  # the uplink's name on the log line
        self.counts: dict[DropKey, int] = {}
        self.total = 0
        self._max_names = max_names
        # v2 counts the unitCode a unit overrides here too: the line says which entity, under its converter's logger
        self._entity = entity
        self._log = log if logger is None else logger
        self._logged: set[DropKey] = set()  # a name logged is not logged again, counted or held
        self._held: list[DropKey] | None = None

    def note(self, reading: Reading, attribute: str, metadata: str, why: str) -> None:
        key = (reading.entity_type, attribute, metadata)
        if self._held is None:
            self.count((key,))
        else:
            self._held.append(key)
        if key in self._logged:
            return
        full = len(self._logged) >= self._max_names
        if not full:
            self._logged.add(key)
        self._log.log(
            logging.DEBUG if full else logging.WARNING,
            "%s.%s.metadata.%s: left out of the %s entity (a reading of adapter %s), %s;"
            " rename the metadata where it is made (check_reading refuses it now: this reading was stored"
            " before). Further ones are counted, not logged",
            *key,
            self._entity,
            reading.source.adapter,
            why,
            extra={"component": self.component},
        )

    @contextlib.contextmanager
    def held(self) -> Iterator[list[DropKey]]:
        """Drops noted inside go into the list yielded, uncounted: the caller counts a delivered reading's."""
        previous, self._held = self._held, []
        try:
            yield self._held
        finally:
            self._held = previous

    def count(self, keys: Iterable[DropKey]) -> None:
        """Count drops (a delivered reading's, as `held()` gave them)."""
        counts = self.counts
        for key in keys:
            self.total += 1
            seen = counts.get(key)
            if seen is not None:
                counts[key] = seen + 1
            elif len(counts) < self._max_names:
                counts[key] = 1

    def diagnostics(self) -> dict[str, Any]:
        return {
            "metadata_dropped": self.total,
            "metadata_dropped_by_name": {".".join(key): n for key, n in self.counts.items()},
        }


# for callers that keep no MetadataDrops of their own
DROPPED_METADATA = MetadataDrops()


def ld_entity_id(entity_id: str, entity_type: str) -> str:
    return entity_id if entity_id.startswith("urn:") else f"{_URN_PREFIX}{entity_type}:{entity_id}"


def _relationship_object(target: str) -> str:
    # a bare v2 id has no type to build urn:ngsi-ld:<Type>:<id> from; profiles should give full URNs
    return target if target.startswith("urn:") else _URN_PREFIX + target


def _sub_properties(
    prop: dict[str, Any], reading: Reading, name: str, has_unit: bool, encoding: ValueEncoding, drops: MetadataDrops
) -> None:
    for mname, mvalue in reading.attributes[name].metadata.items():
        typed = isinstance(mvalue, Mapping) and "value" in mvalue and set(mvalue) <= {"type", "value"}
        raw = mvalue["value"] if typed else mvalue
        if raw is None or mname == "ignoreType":
            continue
        if mname == "unitCode":
            if has_unit:
                drops.note(reading, name, mname, "the attribute's unit is sent as unitCode")
            elif isinstance(raw, str):
                prop["unitCode"] = raw
            else:
                drops.note(
                    reading, name, mname, f"NGSI-LD's unitCode member takes a unit code as text, got {value_kind(raw)}"
                )
            continue
        if mname in _ATTRIBUTE_MEMBERS:
            drops.note(reading, name, mname, _MEMBER_WHY[mname])
            continue
        mtype = ngsi_type(str(mvalue.get("type") or "") if typed else "", raw)
        if mtype in DATETIME_TYPES and isinstance(raw, str):
            prop[mname] = {"type": "Property", "value": {"@type": "DateTime", "@value": canonical_datetime(raw)}}
        else:
            prop[mname] = {"type": "Property", "value": encode_metadata_value(raw, encoding)}


def to_ld_entity(
    reading: Reading, *, encoding: ValueEncoding, context: str | None, drops: MetadataDrops = DROPPED_METADATA
) -> dict[str, Any]:
    """The NGSI-LD entity; with `context` the `@context` is inline (send `application/ld+json`),
    without it the caller sends the context in a `Link` header with `application/json`. Metadata the
    entity cannot carry are counted in `drops`."""
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
            _sub_properties(prop, reading, name, attr.unit is not None, encoding, drops)
        entity[name] = prop
    entity["timeSource"] = {"type": "Property", "value": reading.time_source.value, "observedAt": when}
    if context is not None:
        entity["@context"] = context
    return entity


def ld_upsert_body(entities: Sequence[bytes]) -> bytes:
    """A JSON array of entities already serialized with orjson; length `LD_BODY_OVERHEAD + sum + commas`."""
    return b"[" + b",".join(entities) + b"]"

"""No metadata goes stale: each producer of attributes sends the same metadata names in every state.

Orion's `append` keeps the metadata an update leaves out ("existing metadata not included in the
request are not touched", Orion's manual, "Metadata update semantics"), so an attribute whose state
goes back (flagged → good, offline → online) must say so with the same metadata names, emptied,
or the platform keeps the old flag or reason beside the new value. Each producer is checked here
(the Modbus Device state in tests/adapters/modbus/test_device_entity.py), and against the Orion
double, which keeps entities the way Orion's append leaves them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson

from adapters.http_poll.config import ItemMapping
from adapters.http_poll.mapping import Mapper
from gateway.processing.quality import PointQuality, QualityConfig, QualityFlag, quality_metadata
from gateway.processing.river import RiverConfig, RiverLevelTracker, level_attributes
from gateway.records import Attribute, Reading, Source, TimeSource
from tests.support.entity_state import HEADERS, append, stored
from tests.support.orion_double import V2_UPDATE, OrionDouble

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
STATION = "urn:ngsi-ld:WaterObserved:kuma-hitoyoshi"
SOURCE = Source(adapter="river", device="gauge1")


def reading(attributes: dict[str, Attribute], at: datetime) -> Reading:
    return Reading(
        entity_id=STATION,
        entity_type="WaterObserved",
        attributes=attributes,
        observed_at=at,
        time_source=TimeSource.GATEWAY,
        source=SOURCE,
    )


async def test_the_orion_double_merges_metadata_on_append_as_orion_does(orion_double: OrionDouble) -> None:
    """The manual's own example: `unit` and `avg` stored, an update naming only `avg` keeps `unit`."""

    def update(value: float, metadata: dict[str, object]) -> bytes:
        entity = {"id": "E", "type": "T", "temperature": {"type": "Number", "value": value, "metadata": metadata}}
        return orjson.dumps({"actionType": "append", "entities": [entity]})

    async with aiohttp.ClientSession() as http:
        for body in (
            update(25.0, {"unit": {"type": "Text", "value": "celsius"}, "avg": {"type": "Number", "value": 25.4}}),
            update(26.0, {"avg": {"type": "Number", "value": 25.6}}),
        ):
            async with http.post(f"{orion_double.url}{V2_UPDATE}", data=body, headers=HEADERS) as resp:
                assert resp.status == 204
    assert stored(orion_double, "E")["temperature"] == {
        "type": "Number",
        "value": 26.0,
        "metadata": {"unit": {"type": "Text", "value": "celsius"}, "avg": {"type": "Number", "value": 25.6}},
    }


async def test_quality_flagged_then_good_sends_the_same_metadata_and_clears_the_flag(orion_double: OrionDouble) -> None:
    check = PointQuality(QualityConfig(spike_max_delta=0.5), name="level")
    results = [check.check(v, T0 + timedelta(minutes=i)) for i, v in enumerate([1.0, 3.0, 1.1])]
    assert [r.flags for r in results] == [(), (QualityFlag.SPIKE,), ()]
    metadata = [quality_metadata(r) for r in results]
    assert [set(m) for m in metadata] == [{"quality"}] * 3
    readings = [
        reading({"waterLevel": Attribute(value=v, type="Number", unit="MTR", metadata=m)}, T0 + timedelta(minutes=i))
        for i, (v, m) in enumerate(zip([1.0, 3.0, 1.1], metadata, strict=True))
    ]
    for r in readings:
        await append(orion_double, [r])
        held = stored(orion_double, STATION)["waterLevel"]["metadata"]["quality"]
        assert held == {
            "type": "StructuredValue",
            "value": list(r.attributes["waterLevel"].metadata["quality"]["value"]),
        }
    assert stored(orion_double, STATION)["waterLevel"]["metadata"]["quality"]["value"] == []


async def test_river_level_attributes_keep_their_metadata_names_from_flagged_to_good(orion_double: OrionDouble) -> None:
    """A level computed from a distance carries the distance's quality: flagged, then good again."""
    tracker = RiverLevelTracker(RiverConfig.model_validate({"thresholds": [{"level": 2.0}]}))
    check = PointQuality(QualityConfig(stuck_samples=2), name="distance")
    sent = []
    for i, level in enumerate([1.20, 1.20, 1.35]):  # the second sample repeats the first: flagged stuck
        at = T0 + timedelta(minutes=i)
        update = tracker.update(level, at)
        attrs = level_attributes(
            update, level_name="waterLevel", level_metadata=quality_metadata(check.check(level, at))
        )
        sent.append(attrs)
        await append(orion_double, [reading(attrs, at)])
    assert [sent_attrs["waterLevel"].metadata["quality"]["value"] for sent_attrs in sent] == [[], ["stuck"], []]
    assert all(
        {n: set(a.metadata) for n, a in s.items()} == {n: set(a.metadata) for n, a in sent[0].items()} for s in sent
    )
    assert stored(orion_double, STATION)["waterLevel"]["metadata"]["quality"]["value"] == []


def test_json_mappings_add_no_metadata_in_any_state() -> None:
    """Mapped attributes, location, dateObserved and controlledProperty carry none, so none can go stale."""
    mapper = Mapper(
        [
            ItemMapping.model_validate(
                {
                    "items": "s",
                    "entity_id": "urn:ngsi-ld:Device:{c}",
                    "entity_type": "WaterObserved",
                    "location": {"lat_path": "lat", "lon_path": "lon", "missing": "skip"},
                    "controlled_property": ["waterLevel"],
                    "attributes": [
                        {"path": "l", "name": "waterLevel", "unit": "MTR"},
                        {"path": "q", "name": "qualityCode", "type": "Text", "missing": "skip"},
                    ],
                }
            )
        ],
        adapter="h",
    )
    full = {"c": "1", "l": 1.2, "q": "suspect", "lat": 32.2, "lon": 130.7}
    for item in (full, {"c": "1", "l": 1.3}):
        result = mapper.map(json.dumps({"s": [item]}).encode(), T0)
        (r,) = result.readings
        assert {name: dict(a.metadata) for name, a in r.attributes.items()} == {name: {} for name in r.attributes}

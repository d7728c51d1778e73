"""to_v2_entity / to_ld_entity on worked examples, byte-for-byte where it matters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import ld_entity_id, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity
from gateway.ngsi.values import decode_percent_value
from gateway.records import Attribute, Reading, Source, TimeSource

JST = timezone(timedelta(hours=9))
PCT = ValueEncoding.PERCENT
WHEN = "2024-05-01T00:00:00.000Z"
STAMP = {"type": "DateTime", "value": WHEN}


def gauge(**attrs: Attribute) -> Reading:
    return Reading(
        entity_id="urn:ngsi-ld:WaterObserved:hitoyoshi",
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=datetime(2024, 5, 1, 9, 0, tzinfo=JST),  # 09:00 JST is 00:00 UTC
        time_source=TimeSource.DEVICE,
        source=Source(adapter="river"),
    )


def test_v2_entity() -> None:
    r = gauge(
        waterLevel=Attribute(value=-0.42, unit="MTR"),
        name=Attribute(value="人吉(水の手橋)"),
        alarm=Attribute(value=False),
        refDevice=Attribute(value="urn:ngsi-ld:Device:gauge1", type="Relationship"),
    )
    assert to_v2_entity(r, encoding=PCT) == {
        "id": "urn:ngsi-ld:WaterObserved:hitoyoshi",
        "type": "WaterObserved",
        "waterLevel": {
            "type": "Number",
            "value": -0.42,
            "metadata": {"unitCode": {"type": "Text", "value": "MTR"}, "TimeInstant": STAMP},
        },
        "name": {"type": "Text", "value": "人吉%28水の手橋%29", "metadata": {"TimeInstant": STAMP}},
        "alarm": {"type": "Boolean", "value": False, "metadata": {"TimeInstant": STAMP}},
        "refDevice": {"type": "Relationship", "value": "urn:ngsi-ld:Device:gauge1", "metadata": {"TimeInstant": STAMP}},
        "TimeInstant": {
            "type": "DateTime",
            "value": WHEN,
            "metadata": {"timeSource": {"type": "Text", "value": "device"}},
        },
    }


def test_v2_time_source_gateway_and_datetime_values() -> None:
    r = Reading(
        entity_id="gate1",
        entity_type="LibraryGate",
        attributes={"lastOpen": Attribute(value="2024-05-01T08:59:59.5+09:00", type="DateTime")},
        observed_at=datetime(2024, 5, 1, 0, 0, tzinfo=UTC),
        source=Source(adapter="gate"),
    )
    e = to_v2_entity(r, encoding=PCT)
    assert e["lastOpen"]["value"] == "2024-04-30T23:59:59.500Z"
    assert e["TimeInstant"]["metadata"] == {"timeSource": {"type": "Text", "value": "gateway"}}


def test_v2_metadata_typed_and_bare() -> None:
    r = gauge(
        level=Attribute(value=1.0, metadata={"accuracy": 0.01, "method": {"type": "Text", "value": "radar(24GHz)"}})
    )
    assert to_v2_entity(r, encoding=PCT)["level"]["metadata"] == {
        "accuracy": {"type": "Number", "value": 0.01},
        "method": {"type": "Text", "value": "radar%2824GHz%29"},
        "TimeInstant": STAMP,
    }


def test_v2_text_unrestricted_mode() -> None:
    r = gauge(
        name=Attribute(value="人吉(水の手橋)"),
        info=Attribute(value={"river": "球磨川(くまがわ)"}),
        plain=Attribute(value="100%"),
    )
    e = to_v2_entity(r, encoding=ValueEncoding.TEXT_UNRESTRICTED)
    assert (e["name"]["type"], e["name"]["value"]) == ("TextUnrestricted", "人吉(水の手橋)")
    assert (e["info"]["type"], e["info"]["value"]) == ("StructuredValue", {"river": "球磨川%28くまがわ%29"})
    assert (e["plain"]["type"], e["plain"]["value"]) == ("Text", "100%")


def test_percent_is_reversible_through_conversion() -> None:
    original: dict[str, Any] = {"station": "人吉(水の手橋)", "notes": ["a=b;c", "50%", {"k(1)": "<x>"}]}
    e = to_v2_entity(gauge(info=Attribute(value=original)), encoding=PCT)
    assert decode_percent_value(orjson.loads(orjson.dumps(e))["info"]["value"]) == original


def test_ld_entity() -> None:
    r = gauge(
        waterLevel=Attribute(value=1.25, unit="MTR", metadata={"accuracy": {"type": "Number", "value": 0.01}}),
        name=Attribute(value="人吉(水の手橋)"),
        refDevice=Attribute(value="urn:ngsi-ld:Device:gauge1", type="Relationship"),
        location=Attribute(
            value={"type": "Feature", "geometry": {"type": "Point", "coordinates": [130.76, 32.21]}, "properties": {}},
            type="geo:json",
        ),
        lastAlarm=Attribute(value="2024-05-01T08:00:00+09:00", type="DateTime"),
        pending=Attribute(value=None),
    )
    assert to_ld_entity(r, encoding=PCT, context="https://example.org/ctx.jsonld") == {
        "id": "urn:ngsi-ld:WaterObserved:hitoyoshi",
        "type": "WaterObserved",
        "waterLevel": {
            "type": "Property",
            "value": 1.25,
            "unitCode": "MTR",
            "observedAt": WHEN,
            "accuracy": {"type": "Property", "value": 0.01},
        },
        "name": {"type": "Property", "value": "人吉%28水の手橋%29", "observedAt": WHEN},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:gauge1", "observedAt": WHEN},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [130.76, 32.21]},
            "observedAt": WHEN,
        },
        "lastAlarm": {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": "2024-04-30T23:00:00.000Z"},
            "observedAt": WHEN,
        },
        "timeSource": {"type": "Property", "value": "device", "observedAt": WHEN},
        "@context": "https://example.org/ctx.jsonld",
    }


def test_ld_ids_and_link_mode() -> None:
    assert ld_entity_id("gauge1", "WaterObserved") == "urn:ngsi-ld:WaterObserved:gauge1"
    assert ld_entity_id("urn:ngsi-ld:Device:d1", "Device") == "urn:ngsi-ld:Device:d1"
    r = gauge(level=Attribute(value=1, metadata={"unitCode": "CMT", "ignoreType": False}))
    e = to_ld_entity(r, encoding=PCT, context=None)
    assert "@context" not in e
    assert e["level"] == {"type": "Property", "value": 1, "unitCode": "CMT", "observedAt": WHEN}

"""Hypothesis strategies for arbitrary (mostly hostile) Readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from gateway.records import Attribute, Lane, Reading, Source, TimeSource

JST = timezone(timedelta(hours=9))

legal_ids = st.from_regex(r"[A-Za-z0-9_:.\-]{1,24}", fullmatch=True)
hostile_ids = st.one_of(st.text(max_size=12), st.sampled_from(["a" * 257, "x(y)", "tab\there", "a{b}", "urn:"]))
# mostly legal, so that most examples get as far as the values
identifiers = st.integers(0, 19).flatmap(
    lambda i: hostile_ids if i == 19 else st.just("urn:ngsi-ld:Device:d1") if i == 18 else legal_ids
)
attr_names = st.integers(0, 29).flatmap(
    lambda i: (
        st.sampled_from(
            [
                "id",
                "type",
                "*",
                "dateExpires",
                "TimeInstant",
                "location",
                "scope",
                "geo:distance",
                "名前",
                "$temp",
                "@id",
            ]
        )
        if i == 29
        else st.text(max_size=8)
        if i == 28
        else st.from_regex(r"[a-z][A-Za-z0-9_]{0,15}", fullmatch=True)
    )
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(["人吉(水の手橋)", "50%", "%28", "<b>", "a=b;c", 'it\'s "quoted"']),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=6), st.sampled_from(["$inc", "$x", "(k)", "", "a\x00b", "a.b"])),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)
points = st.builds(
    lambda lon, lat: {"type": "Point", "coordinates": [lon, lat]},
    st.floats(min_value=-200, max_value=200),
    st.floats(min_value=-100, max_value=100),
)
coordinates = st.floats(min_value=-200, max_value=200, allow_nan=False)
valid_positions = st.tuples(st.floats(-180, 180), st.floats(-90, 90)).map(list)
# mostly valid, so that most geometries get as far as their shape rules
positions = st.integers(0, 5).flatmap(
    lambda i: st.lists(coordinates, min_size=1, max_size=4) if i == 5 else valid_positions
)
# closed and unclosed, convex and bow-tie, tiny and degenerate rings
rings = st.one_of(
    st.lists(positions, max_size=6),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)).map(list), min_size=3, max_size=6).map(
        lambda r: r + r[:1]
    ),
    st.sampled_from(
        [
            [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]],
            [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]],
            [[0, 0], [1, 0], [2, 0], [0, 0]],
            [[130.7, 32.2], [130.8, 32.2], [130.8, 32.3], [130.7, 32.2]],
        ]
    ),
)
geometries = st.one_of(
    points,
    st.builds(lambda c: {"type": "Point", "coordinates": c}, positions),
    st.builds(lambda c: {"type": "MultiPoint", "coordinates": c}, st.lists(positions, max_size=3)),
    st.builds(lambda c: {"type": "LineString", "coordinates": c}, st.lists(positions, max_size=4)),
    st.builds(
        lambda c: {"type": "MultiLineString", "coordinates": c}, st.lists(st.lists(positions, max_size=3), max_size=2)
    ),
    st.builds(lambda c: {"type": "Polygon", "coordinates": c}, st.lists(rings, min_size=1, max_size=2)),
    st.builds(
        lambda c: {"type": "MultiPolygon", "coordinates": c},
        st.lists(st.lists(rings, min_size=1, max_size=2), max_size=2),
    ),
)
geo_values = st.one_of(
    geometries,
    st.builds(lambda g: {"type": "Feature", "geometry": g, "properties": {"name": "x"}}, geometries),
    st.builds(lambda g: {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": g}]}, geometries),
    st.builds(lambda g: {"type": "GeometryCollection", "geometries": [g]}, geometries),
)
datetimes_text = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, JST])).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.text(max_size=10),
    st.sampled_from(
        [
            "2024-13-01T00:00:00Z",
            "2024-05-01 09:00+09:00",
            "20240501T090000Z",
            "0001-01-01T00:00:00+09:00",
            "2024-05-01",
        ]
    ),
)
# names NGSI-LD reserves: each metadata item becomes a sub-property there (refused, or lost to a member)
ld_metadata_names = ["location", "type", "createdAt", "id", "@context", "deletedAt", "observationSpace", "scope"]
ld_metadata_names += ["@id", "@type"]  # JSON-LD keywords: Orion-LD reads them as the entity's id and type
metadata_names = [
    "accuracy",
    "ignoreType",
    "previousValue",
    "unitCode",
    "TimeInstant",
    "note",
    "$md",
    *ld_metadata_names,
]
types = st.sampled_from(
    [
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "Number",
        "Text",
        "Boolean",
        "StructuredValue",
        "DateTime",
        "geo:json",
        "Relationship",
        "TextUnrestricted",
        "geo:point",
        "Custom_Type",
        "bad type",
        "ISO8601",
    ]
)

hostile_metadata = st.dictionaries(
    st.one_of(st.sampled_from(metadata_names), attr_names),
    st.one_of(json_values, st.fixed_dictionaries({"type": types, "value": json_values})),
    max_size=2,
)
# each name with a value nothing else refuses, so that the name alone decides; without it an accepted
# reading with metadata was rare (~1 in 100 examples), and one with an NGSI-LD name rarer still
named_metadata = st.dictionaries(
    st.one_of(st.sampled_from(metadata_names), st.sampled_from(ld_metadata_names)),
    st.sampled_from([0.01, "pier 3", True]),
    min_size=1,
    max_size=2,
)


@st.composite
def attributes(draw: st.DrawFn) -> Attribute:
    atype = draw(types)
    if atype == "geo:json":
        value: Any = draw(st.one_of(geo_values, json_values))
    elif atype in ("DateTime", "ISO8601"):
        value = draw(st.one_of(datetimes_text, json_values))
    elif atype == "Relationship":
        value = draw(st.one_of(identifiers, json_values))
    else:
        value = draw(json_values)
    unit = draw(st.one_of(st.none(), st.sampled_from(["MTR", "CEL", "P1", "m s", "(x)"])))
    metadata = draw(st.one_of(named_metadata, hostile_metadata) if draw(st.integers(0, 3)) == 0 else st.just({}))
    return Attribute(value=value, type=atype, unit=unit, metadata=metadata)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    tz = draw(st.sampled_from([UTC, JST, JST, JST, timezone(timedelta(hours=-5)), None]))
    return Reading(
        entity_id=draw(identifiers),
        entity_type=draw(st.one_of(st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True), identifiers)),
        attributes=draw(st.dictionaries(attr_names, attributes(), min_size=1, max_size=4)),
        observed_at=draw(st.datetimes(timezones=st.just(tz) if tz else st.none())),
        time_source=draw(st.sampled_from(list(TimeSource))),
        source=Source(adapter="sim", device=draw(st.sampled_from(["", "d1"]))),
        lane=draw(st.sampled_from(list(Lane))),
    )

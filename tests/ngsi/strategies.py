"""Hypothesis strategies for arbitrary (mostly hostile) Readings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
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
    lambda i: st.sampled_from(["id", "type", "*", "dateExpires", "TimeInstant", "location", "scope", "geo:distance", "名前"])
    if i == 29
    else st.text(max_size=8)
    if i == 28
    else st.from_regex(r"[a-z][A-Za-z0-9_]{0,15}", fullmatch=True)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(["人吉(水の手橋)", "50%", "%28", "<b>", "a=b;c", "it's \"quoted\""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(["$inc", "(k)"])), inner, max_size=3),
    ),
    max_leaves=8,
)
points = st.builds(
    lambda lon, lat: {"type": "Point", "coordinates": [lon, lat]},
    st.floats(min_value=-200, max_value=200),
    st.floats(min_value=-100, max_value=100),
)
datetimes_text = st.one_of(
    st.datetimes(timezones=st.sampled_from([timezone.utc, JST])).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.text(max_size=10),
)
types = st.sampled_from(
    ["", "", "", "", "", "", "", "Number", "Text", "Boolean", "StructuredValue", "DateTime", "geo:json", "Relationship", "TextUnrestricted", "geo:point", "Custom_Type", "bad type"]
)


@st.composite
def attributes(draw: st.DrawFn) -> Attribute:
    atype = draw(types)
    if atype == "geo:json":
        value: Any = draw(st.one_of(points, json_values))
    elif atype == "DateTime":
        value = draw(st.one_of(datetimes_text, json_values))
    elif atype == "Relationship":
        value = draw(st.one_of(identifiers, json_values))
    else:
        value = draw(json_values)
    unit = draw(st.one_of(st.none(), st.sampled_from(["MTR", "CEL", "P1", "m s", "(x)"])))
    metadata = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(["accuracy", "ignoreType", "previousValue", "unitCode", "TimeInstant", "note"]), attr_names),
            st.one_of(json_values, st.fixed_dictionaries({"type": types, "value": json_values})),
            max_size=2,
        )
        if draw(st.integers(0, 3)) == 0
        else st.just({})
    )
    return Attribute(value=value, type=atype, unit=unit, metadata=metadata)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    tz = draw(st.sampled_from([timezone.utc, JST, JST, JST, timezone(timedelta(hours=-5)), None]))
    return Reading(
        entity_id=draw(identifiers),
        entity_type=draw(st.one_of(st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True), identifiers)),
        attributes=draw(st.dictionaries(attr_names, attributes(), min_size=1, max_size=4)),
        observed_at=draw(st.datetimes(timezones=st.just(tz) if tz else st.none())),
        time_source=draw(st.sampled_from(list(TimeSource))),
        source=Source(adapter="sim", device=draw(st.sampled_from(["", "d1"]))),
        lane=draw(st.sampled_from(list(Lane))),
    )

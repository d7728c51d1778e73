"""check_reading refuses an entity no request can carry (Orion's 1 MiB body limit), on the larger of its NGSI v2
and NGSI-LD forms; the bound it keeps as it checks never under-counts what the converters produce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi import check
from gateway.ngsi.check import MAX_ENTITY_BYTES, MAX_REQUEST_BYTES, ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import LD_BODY_OVERHEAD, to_ld_entity
from gateway.ngsi.v2 import V2_BODY_OVERHEAD, to_v2_entity
from gateway.records import Attribute, Reading, Source, TimeSource
from gateway.uplinks.api import DELIVERED
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import LD_UPSERT, V2_UPDATE, OrionDouble

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
PCT = ValueEncoding.PERCENT
LOG = "urn:ngsi-ld:Log:1"
SPLIT = (
    "split the reading into several readings of fewer or smaller attributes, or send a reference to the data instead"
)
# the longest @context URL the room for the request around an entity is meant for
LONG_CONTEXT = "https://smartdata.example.jp/" + "c" * 3000 + ".jsonld"


def log_reading(*lengths: int, entity: str = LOG, minute: int = 0) -> Reading:
    # Text attributes of plain letters: each character is one byte in either form, under every encoding
    attrs = {f"chunk{i}": Attribute(value="x" * n, type="Text") for i, n in enumerate(lengths)}
    return Reading(
        entity_id=entity,
        entity_type="Log",
        attributes=attrs,
        observed_at=T0 + timedelta(minutes=minute),
        source=Source(adapter="logger"),
    )


def sizes(r: Reading, encoding: ValueEncoding = PCT) -> tuple[int, int]:
    """(NGSI v2, NGSI-LD) entity sizes as the uplinks serialize them (NGSI-LD with its @context in a Link header)."""
    v2 = len(orjson.dumps(to_v2_entity(r, encoding=encoding)))
    return v2, len(orjson.dumps(to_ld_entity(r, encoding=encoding, context=None)))


def refused(r: Reading, encoding: ValueEncoding = PCT) -> ReadingError:
    with pytest.raises(ReadingError) as exc:
        ReadingChecker().check(r, encoding=encoding)
    return exc.value


def test_a_request_of_one_entity_at_the_limit_fits_orions_body_limit() -> None:
    assert MAX_REQUEST_BYTES == 1_048_576  # Orion's default -inReqPayloadMaxSize (NGSI.md, "Size")
    assert MAX_ENTITY_BYTES + V2_BODY_OVERHEAD <= MAX_REQUEST_BYTES
    inline = len(b',"@context":') + len(orjson.dumps(LONG_CONTEXT))  # context_mode = "inline" adds it to the entity
    assert MAX_ENTITY_BYTES + LD_BODY_OVERHEAD + inline <= MAX_REQUEST_BYTES


def test_an_entity_no_request_can_carry_is_refused_naming_it_its_size_and_the_limit() -> None:
    # 20 attributes of 60,000 characters: each within MAX_VALUE_BYTES, together 1.2 MB (the review's case)
    r = log_reading(*[60_000] * 20)
    v2, ld = sizes(r)
    assert v2 > ld > MAX_REQUEST_BYTES
    for encoding in ValueEncoding:
        err = refused(r, encoding)
        assert str(err) == (
            f"{LOG}: entity must take at most 1044480 bytes as JSON to fit one request (Orion refuses a request"
            f" over 1048576 bytes, 1 MiB, with 413), got {v2} bytes as NGSI v2 with 20 attributes; {SPLIT}"
        )
        assert err.params == {"entity_id": LOG, "entity_type": "Log", "size": v2, "limit": MAX_ENTITY_BYTES}


def at_limit(extra: int) -> Reading:
    """18 attributes of plain text whose NGSI v2 entity takes MAX_ENTITY_BYTES + extra bytes."""
    lengths = [58_000] * 18
    v2, _ = sizes(log_reading(*lengths))
    lengths[-1] += MAX_ENTITY_BYTES - v2 + extra
    return log_reading(*lengths)


def test_the_limit_is_the_entitys_real_size_to_the_byte() -> None:
    fits, over = at_limit(0), at_limit(1)
    assert sizes(fits)[0] == MAX_ENTITY_BYTES and sizes(over)[0] == MAX_ENTITY_BYTES + 1
    assert sizes(fits)[1] < sizes(fits)[0]  # NGSI v2 is the larger form of plain text
    for encoding in ValueEncoding:
        ReadingChecker().check(fits, encoding=encoding)
        assert f"got {MAX_ENTITY_BYTES + 1} bytes as NGSI v2 with 18 attributes" in str(refused(over, encoding))


def dated_metadata(items_per_attribute: int) -> Reading:
    # a date is a plain string in NGSI v2 metadata but a typed JSON-LD value in an NGSI-LD sub-property
    attrs = {
        f"sample{i}": Attribute(
            value=float(i),
            type="Number",
            metadata={
                f"at{k}": {"type": "DateTime", "value": "2024-07-01T12:00:00+09:00"} for k in range(items_per_attribute)
            },
        )
        for i in range(50)
    }
    return Reading(entity_id=LOG, entity_type="Log", attributes=attrs, observed_at=T0, source=Source(adapter="logger"))


def test_the_ngsi_ld_form_decides_when_it_is_the_larger() -> None:
    r = dated_metadata(260)
    v2, ld = sizes(r)
    assert v2 < MAX_ENTITY_BYTES < ld  # Orion would take it; an NGSI-LD broker never could
    assert str(refused(r)) == (
        f"{LOG}: entity must take at most 1044480 bytes as JSON to fit one request (Orion refuses a request"
        f" over 1048576 bytes, 1 MiB, with 413), got {ld} bytes as NGSI-LD with 50 attributes; {SPLIT}"
    )
    ReadingChecker().check(dated_metadata(200), encoding=PCT)  # 200 dates an attribute: within the limit


async def test_an_entity_at_the_limit_is_delivered_by_both_uplinks_to_the_strict_double(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    big = at_limit(0)
    ReadingChecker().check(big, encoding=PCT)
    ctx = AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))
    v2_doc = {"name": "orion-main", "type": "orion", "url": orion_double.url, "service": "s", "service_path": "/p"}
    v2 = OrionUplink(OrionConfig.model_validate(v2_doc), ctx)
    ld_doc = {"name": "ld-main", "type": "ngsi-ld", "url": orion_double.url, "context": LONG_CONTEXT}
    ld = NgsiLdUplink(NgsiLdConfig.model_validate({**ld_doc, "context_mode": "inline"}), ctx)
    for up in (v2, ld):
        await up.start()
        try:
            assert await up.deliver([big]) == [DELIVERED]
        finally:
            await up.close()
    v2_request, ld_request = orion_double.requests
    assert (v2_request.path, v2_request.status, len(v2_request.body)) == (
        V2_UPDATE,
        204,
        MAX_ENTITY_BYTES + V2_BODY_OVERHEAD,
    )
    assert (ld_request.path, ld_request.status) == (LD_UPSERT, 201) and len(ld_request.body) <= MAX_REQUEST_BYTES
    assert ld_request.json()[0]["@context"] == LONG_CONTEXT


async def test_an_entity_over_max_batch_bytes_but_within_the_limit_is_sent_alone_and_delivered(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # max_batch_bytes set below an entity's size (and below Orion's limit): batching.plan_batches gives
    # that entity a request of its own, which Orion takes, so check_reading need not know max_batch_bytes
    doc = {"name": "orion-main", "type": "orion", "url": orion_double.url, "service": "s", "max_batch_bytes": 2048}
    up = OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    batch = [
        log_reading(5, entity="urn:ngsi-ld:Log:a"),
        log_reading(10_000),
        log_reading(5, entity="urn:ngsi-ld:Log:b"),
    ]
    for r in batch:
        ReadingChecker().check(r, encoding=PCT)
    await up.start()
    try:
        assert await up.deliver(batch) == [DELIVERED] * 3
    finally:
        await up.close()
    assert [[e["id"] for e in r.json()["entities"]] for r in orion_double.requests] == [
        ["urn:ngsi-ld:Log:a"],
        [LOG],
        ["urn:ngsi-ld:Log:b"],
    ]
    assert len(orion_double.requests[1].body) > 2048


# ------------------------------------------------------------------------------------------ the bound

# identifiers at their longest (256 characters) and at their most ordinary
names = st.one_of(st.from_regex(r"[a-z][A-Za-z0-9_]{0,12}", fullmatch=True), st.just("n" * 250).map(lambda s: s + "a"))
longest = st.sampled_from(["T" * 256, "U" * 256])
# what grows most in JSON and under percent-encoding: controls (\u001f), `"` and `\`, `%` and Orion's
# banned characters, 3- and 4-byte UTF-8
worst = st.sampled_from(["\x1f", '"', "\\", "%", "(", "<", "=", "水", "\U0001f30a", "x"])
texts = st.one_of(
    st.text(worst, max_size=80),
    st.text(worst, min_size=55, max_size=70),  # around _SHORT_TEXT
    st.integers(1, 40).map(lambda n: "%\x1f" * n),
    st.integers(10_400, 10_600).map(lambda n: '"' * n),  # around the measured texts (_TEXT_FAST_LIMIT)
    st.integers(10_400, 10_600).map(lambda n: "%(" * (n // 2)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(-2.2250738585072014e-308),
    texts,
)
structured = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(worst, min_size=1, max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
dates = st.sampled_from(["2024-07-01T12:00:00+09:00", "2024-07-01T03:00:00.000Z", "2024-07-01T12:00:00.123456+09:00"])
metadata_values = st.one_of(
    scalars, structured, st.fixed_dictionaries({"type": st.sampled_from(["DateTime", "T" * 256]), "value": dates})
)
feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [130.7, 32.2]}, "properties": {"n": "(x)"}}


@st.composite
def attribute(draw: st.DrawFn) -> Attribute:
    kind = draw(st.sampled_from(["Number", "Text", "custom", "DateTime", "Relationship", "geo", "structured", "none"]))
    value: Any
    if kind == "Number":
        atype, value = (
            "Number",
            draw(st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))),
        )
    elif kind == "Text":
        atype, value = draw(st.sampled_from(["Text", "TextUnrestricted", ""])), draw(texts)
    elif kind == "custom":
        atype, value = draw(longest), draw(scalars)
    elif kind == "DateTime":
        atype, value = "DateTime", draw(dates)
    elif kind == "Relationship":
        atype, value = "Relationship", draw(st.sampled_from(["d1", "urn:ngsi-ld:Device:d1", "r" * 243]))
    elif kind == "geo":
        atype, value = "geo:json", feature
    elif kind == "structured":
        atype, value = (
            "StructuredValue",
            draw(
                st.one_of(
                    st.lists(structured, max_size=4),
                    st.dictionaries(st.text(worst, min_size=1, max_size=4), structured, max_size=4),
                )
            ),
        )
    else:
        atype, value = draw(st.sampled_from(["Text", "Number", ""])), None
    unit = draw(st.sampled_from([None, "MTR", "U" * 256])) if kind in ("Number", "custom", "structured") else None
    metadata = draw(st.dictionaries(st.sampled_from(["note", "accuracy", "m" * 256]), metadata_values, max_size=3))
    return Attribute(value=value, type=atype, unit=unit, metadata=metadata)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    entity_type = draw(st.sampled_from(["Log", "T" * 200]))
    return Reading(
        # ids at the longest an NGSI-LD id of 256 characters leaves them
        entity_id=draw(
            st.sampled_from(["d1", "urn:ngsi-ld:Log:" + "i" * 240, "i" * (240 if entity_type == "Log" else 43)])
        ),
        entity_type=entity_type,
        attributes=draw(st.dictionaries(names, attribute(), min_size=1, max_size=5)),
        observed_at=T0,
        time_source=draw(st.sampled_from(list(TimeSource))),
        source=Source(adapter="logger"),
    )


class Measured(ReadingChecker):
    """Records that the bound sent the entity to be measured, instead of measuring it."""

    def __init__(self) -> None:
        super().__init__()
        self.measured = 0

    def _check_entity_size(self, r: Reading, encoding: ValueEncoding) -> None:
        self.measured += 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(reading=readings())
def test_the_bound_never_under_counts_either_form(reading: Reading) -> None:
    checked = 0
    for encoding in ValueEncoding:
        try:
            ReadingChecker().check(reading, encoding=encoding)
        except ReadingError:
            continue  # refused for another reason (a banned character under "reject", two locations)
        real = max(sizes(reading, encoding))
        checker = Measured()
        with pytest.MonkeyPatch.context() as mp:
            # a limit one byte below the real size: a bound short of the real size sends nothing to be measured
            mp.setattr(check, "_ATTRIBUTES_LIMIT", real - 1 - check._ENTITY_ROOM)
            checker.check(reading, encoding=encoding)
            checker.check(reading, encoding=encoding)  # again: the identity cache and the held structured value
        assert checker.measured == 2, (encoding, real)
        checked += 1
    event(f"forms checked: {checked}")


N256, T256, U256 = "n" * 256, "T" * 256, "U" * 256
SMALLEST_FLOAT = -2.2250738585072014e-308  # the longest a double prints: 24 characters


def worst_text() -> str:
    # the longest text the attribute's room holds without adding to the bound, of the character that takes
    # most JSON (\u001f: 6 bytes, kept under every encoding)
    return "\x1f" * check._SHORT_TEXT


WORST_ATTRIBUTES: dict[str, Any] = {
    "custom type and unit, short text": lambda: {N256: Attribute(value=worst_text(), type=T256, unit=U256)},
    "fast Number with a unit": lambda: {N256: Attribute(value=SMALLEST_FLOAT, type="Number", unit="MTR")},
    "Number with a long unit": lambda: {N256: Attribute(value=SMALLEST_FLOAT, type="Number", unit=U256)},
    "DateTime with a unit": lambda: {N256: Attribute(value="2024-07-01T12:00:00+09:00", type="DateTime", unit=U256)},
    "fast DateTime": lambda: {N256: Attribute(value="2024-07-01T03:00:00.000Z", type="DateTime")},
    "bare Relationship": lambda: {N256: Attribute(value="r" * check._SHORT_TEXT, type="Relationship", unit=U256)},
    "metadata of a custom type": lambda: {
        N256: Attribute(
            value=worst_text(), type=T256, unit=U256, metadata={"m" * 256: {"type": T256, "value": worst_text()}}
        )
    },
    "metadata of a long text": lambda: {
        N256: Attribute(value=worst_text(), type=T256, unit=U256, metadata={"m" * 256: "\x1f" * 2000})
    },
    "long text": lambda: {N256: Attribute(value="\x1f" * 2000, type=T256, unit=U256)},
    "structured percent signs": lambda: {N256: Attribute(value=["%" * 300, {"%": "%"}], type=T256, unit=U256)},
    "dated metadata": lambda: {
        N256: Attribute(value=1.0, metadata={"m" * 256: {"type": "DateTime", "value": "2024-07-01T12:00:00+09:00"}})
    },
    # many of a kind, so that the slack the entity's room leaves cannot hide a part's
    "30 metadata of a custom type": lambda: {
        N256: Attribute(
            value=worst_text(),
            type=T256,
            unit=U256,
            metadata={f"{'m' * 254}{k:02}": {"type": T256, "value": worst_text()} for k in range(30)},
        )
    },
    "30 attributes": lambda: {
        f"{N256[:-2]}{i:02}": Attribute(value=worst_text(), type=T256, unit=U256) for i in range(30)
    },
}


@pytest.mark.parametrize("time_source", list(TimeSource))
@pytest.mark.parametrize("part", list(WORST_ATTRIBUTES))
def test_each_room_holds_the_worst_case_of_its_part(part: str, time_source: TimeSource) -> None:
    # an entity type and id at their longest, so that the entity's room is at its fullest too
    r = Reading(
        entity_id="urn:" + "i" * 252,
        entity_type=T256,
        attributes=WORST_ATTRIBUTES[part](),
        observed_at=T0,
        time_source=time_source,
        source=Source(adapter="logger"),
    )
    for encoding in ValueEncoding:
        real = max(sizes(r, encoding))
        checker = Measured()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(check, "_ATTRIBUTES_LIMIT", real - 1 - check._ENTITY_ROOM)
            checker.check(r, encoding=encoding)
            checker.check(r, encoding=encoding)
        assert checker.measured == 2, (encoding, real)

"""The stored form of a reading: the compact one decodes to the same Reading as the longer one files hold.

Files written before the compact form hold rows spelled in full (`"d":false`, `"v":""`, `"l":1`,
`[1.5,""]`); `encode_previous` below is that encoder, kept as it was, so a buffer of the previous
release decodes to exactly what it would have (tests/storage/test_release_upgrade.py delivers such
a file).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import SCHEMA_VERSION
from gateway.records import (
    Attribute,
    Lane,
    Reading,
    Source,
    TimeSource,
    decode_reading,
    encode_reading,
    encode_row,
    to_epoch_us,
)
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import T0, ns, reading
from tests.gateway.test_records import readings


def encode_previous(r: Reading) -> bytes:
    """encode_reading as the previous release wrote rows."""
    attrs: dict[str, list[Any]] = {}
    for name, a in r.attributes.items():
        if a.metadata:
            attrs[name] = [a.value, a.type, a.unit, dict(a.metadata)]
        elif a.unit is not None:
            attrs[name] = [a.value, a.type, a.unit]
        else:
            attrs[name] = [a.value, a.type]
    doc = {
        "i": r.entity_id,
        "t": r.entity_type,
        "a": attrs,
        "o": to_epoch_us(r.observed_at),
        "d": r.time_source is TimeSource.DEVICE,
        "s": r.source.adapter,
        "v": r.source.device,
        "l": int(r.lane),
    }
    return orjson.dumps(doc)


@settings(max_examples=300)
@given(readings)
def test_a_row_of_the_previous_form_decodes_to_the_reading_the_compact_form_gives(r: Reading) -> None:
    assert decode_reading(encode_previous(r), 7) == decode_reading(encode_reading(r), 7)


@settings(max_examples=300)
@given(readings)
def test_the_compact_form_is_never_longer(r: Reading) -> None:
    assert len(encode_reading(r)) <= len(encode_previous(r))


scalar_attributes = st.builds(
    Attribute,
    value=st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    type=st.sampled_from(["", "Number", "Text", "Boolean", "DateTime"]),
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(min_size=1, max_size=8), scalar_attributes, max_size=4))
def test_scalar_attributes_of_any_type_come_back_as_they_went_in(attributes: dict[str, Attribute]) -> None:
    r = Reading(entity_id="e", entity_type="T", attributes=attributes, observed_at=T0, source=Source(adapter="a"))
    back = decode_reading(encode_reading(r))
    assert back.attributes == attributes
    assert [type(a.value) for a in back.attributes.values()] == [type(a.value) for a in attributes.values()]


def test_the_race_workloads_reading_is_185_bytes_instead_of_250() -> None:
    r = Reading(
        entity_id="urn:ngsi-ld:Device:d000",
        entity_type="Device",
        attributes={
            "dev": Attribute(value="d000", type="Text"),
            "seq": Attribute(value=0, type="Number"),
            "t": Attribute(value=1796390396.123, type="Number"),
            "level": Attribute(value=0.5, type="Number"),
            "controlledProperty": Attribute(value=["level"], type="StructuredValue"),
        },
        observed_at=T0,
        source=Source(adapter="race"),
    )
    assert encode_reading(r) == (
        b'{"i":"urn:ngsi-ld:Device:d000","t":"Device","a":{"dev":"d000","seq":0,"t":1796390396.123,"level":0.5,'
        b'"controlledProperty":[["level"],"StructuredValue"]},"o":1777604400000000,"s":"race"}'
    )
    assert (len(encode_reading(r)), len(encode_previous(r))) == (185, 250)
    # a row of the outbox leaves the entity id and the time to its columns: 4 rows to a 1 KiB page, not 3
    assert encode_row(r) == (
        b'{"t":"Device","a":{"dev":"d000","seq":0,"t":1796390396.123,"level":0.5,'
        b'"controlledProperty":[["level"],"StructuredValue"]},"s":"race"}'
    )
    assert len(encode_row(r)) == 134


@settings(max_examples=300)
@given(readings, st.integers(1, 2**62))
def test_a_row_body_with_its_columns_decodes_to_what_the_whole_form_and_the_previous_one_give(
    r: Reading, seq: int
) -> None:
    """encode_row against the encoders before it: with the row's entity id and time columns, its body
    decodes to the same Reading; it is the whole form less "i" and "o" (nothing else changes)."""
    row = encode_row(r)
    columns = (r.entity_id, to_epoch_us(r.observed_at))
    assert decode_reading(row, seq, *columns) == decode_reading(encode_reading(r), seq)
    assert decode_reading(row, seq, *columns) == decode_reading(encode_previous(r), seq)
    whole = orjson.loads(encode_reading(r))
    assert (whole.pop("i"), whole.pop("o")) == columns
    assert orjson.loads(row) == whole
    # a body of a form written before holds them itself: the columns do not override it
    assert decode_reading(encode_reading(r), seq, "other", 0) == decode_reading(encode_reading(r), seq)


def test_a_row_body_without_its_columns_is_refused() -> None:
    body = encode_row(reading(1))
    with pytest.raises(KeyError):
        decode_reading(body, 1)
    with pytest.raises(KeyError):
        decode_reading(body, 1, "e1")


def test_values_other_than_the_defaults_are_spelled_out() -> None:
    r = Reading(
        entity_id="e",
        entity_type="T",
        attributes={"x": Attribute(value=1, unit="MTR")},
        observed_at=T0,
        time_source=TimeSource.DEVICE,
        source=Source(adapter="a", device="d1"),
        lane=Lane.ALERT,
    )
    doc = orjson.loads(encode_reading(r))
    assert (doc["a"], doc["d"], doc["v"], doc["l"]) == ({"x": [1, "", "MTR"]}, 1, "d1", 0)


@pytest.mark.parametrize(
    ("attribute", "stored"),
    [
        (Attribute(value=1.5, type="Number"), 1.5),
        (Attribute(value=2, type="Number"), 2),
        (Attribute(value="on", type="Text"), "on"),
        (Attribute(value=True, type="Boolean"), True),
        # a value whose type does not say its NGSI type keeps the list
        (Attribute(value=True, type="Number"), [True, "Number"]),
        (Attribute(value=1, type="Text"), [1, "Text"]),
        (Attribute(value="1", type="Number"), ["1", "Number"]),
        (Attribute(value=None, type="Number"), [None, "Number"]),
        (Attribute(value=1.5), [1.5]),
        (Attribute(value=1.5, type="Number", unit="CEL"), [1.5, "Number", "CEL"]),
        (Attribute(value=1.5, type="Number", metadata={"q": 1}), [1.5, "Number", None, {"q": 1}]),
        (Attribute(value=["a"], type="StructuredValue"), [["a"], "StructuredValue"]),
    ],
)
def test_an_attribute_is_stored_bare_only_when_its_value_says_its_type(attribute: Attribute, stored: object) -> None:
    r = Reading(entity_id="e", entity_type="T", attributes={"x": attribute}, observed_at=T0, source=Source(adapter="a"))
    assert orjson.loads(encode_reading(r))["a"]["x"] == stored
    assert decode_reading(encode_reading(r)).attributes["x"] == attribute


async def test_a_version_1_file_of_long_rows_is_migrated_and_delivers_them_and_new_rows_in_order(
    tmp_path: Path,
) -> None:
    cfg = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)
    box = await Outbox.open(tmp_path / "b.db", cfg, ["orion"])
    await box.append_many([reading(i, "a", pad=i) for i in range(5)])
    await box.close()
    # what the previous release would have written: the same rows, spelled in full
    with sqlite3.connect(tmp_path / "b.db") as db:
        for seq, body, entity_id, observed_us in db.execute(
            "SELECT seq, body, entity_id, observed_us FROM outbox"
        ).fetchall():
            old = encode_previous(decode_reading(body, None, entity_id, observed_us))
            db.execute("UPDATE outbox SET body = ?, size = ? WHERE seq = ?", (old, len(old), seq))
        db.execute("PRAGMA user_version = 1")
    box = await Outbox.open(tmp_path / "b.db", cfg, ["orion"])
    await box.append_many([reading(i, "a", pad=i) for i in range(5, 10)])
    batch = await box.read("orion", 100)
    assert ns(batch) == list(range(10))
    assert [replace(r, seq=None) for r in batch] == [reading(i, "a", pad=i) for i in range(10)]
    await box.ack("orion", batch, [DELIVERED] * len(batch))
    assert await box.read("orion", 100) == []
    await box.close()
    with sqlite3.connect(tmp_path / "b.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3

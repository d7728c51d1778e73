"""The outbox's in-memory tail: what it serves is what SQLite would have served, and it never starves or leaks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.tail import Tail, is_plain
from gateway.errors import ReadingError
from gateway.records import (
    Attribute,
    Lane,
    Reading,
    Source,
    decode_reading,
    encode_row,
    make_reading,
    to_epoch_us,
    with_seq,
)
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import T0, ns, reading, structured_reading
from tests.gateway.test_records import json_scalars, text, times

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)


async def test_rows_served_from_memory_equal_the_rows_decoded_from_the_file(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    mixed = [reading(0, "a"), structured_reading(1, "b"), reading(2, "a", Lane.ALERT), reading(3, "c", pad=40)]
    await box.append_many(mixed)
    from_memory = await box.read("orion", 10)
    await box.close()
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])  # a new process: everything comes from SQLite
    from_file = await box.read("orion", 10)
    await box.close()
    assert ns(from_memory) == [2, 0, 1, 3]
    assert from_memory == from_file
    assert [r.seq for r in from_memory] == [3, 1, 2, 4]


async def test_an_adapter_reusing_its_attributes_dict_does_not_change_what_is_delivered(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    attrs = {"n": Attribute(value=1, type="Number")}
    await box.append(
        Reading(entity_id="e", entity_type="T", attributes=attrs, observed_at=T0, source=reading(0).source)
    )
    attrs["n"] = Attribute(value=2, type="Number")  # the adapter refills its dict for the next reading
    assert ns(await box.read("orion", 10)) == [1]
    await box.close()


async def test_reads_and_acks_are_not_starved_by_a_source_faster_than_the_disk(tmp_path: Path) -> None:
    # The source keeps 16 full groups queued: one is always ready to commit, and
    # reads and acks must still get their turns on the writer thread.
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(durability=Durability.FULL, commit_max_rows=200), ["orion"])
    stop = asyncio.Event()

    async def flood() -> None:
        pending: list[Awaitable[None]] = []
        n = 0
        while not stop.is_set():
            pending.append(box.append_many([reading(n + i) for i in range(200)]))
            n += 200
            if len(pending) > 16:
                await pending.pop(0)
        await asyncio.gather(*pending)

    task = asyncio.create_task(flood())
    try:
        await asyncio.sleep(0.2)
        async with asyncio.timeout(30):
            for _ in range(5):
                batch = await box.read("orion", 100)
                await box.ack("orion", batch, [DELIVERED] * len(batch))
    finally:
        stop.set()
        await task
        await box.close()


def test_plain_readings_are_those_whose_stored_form_decodes_equal() -> None:
    assert is_plain(reading(1))
    assert is_plain(reading(1, pad=3))
    assert not is_plain(structured_reading(1))  # a Japan-time timestamp
    jst = make_reading(
        "e",
        "T",
        {"n": Attribute(value=1)},
        T0.astimezone(timezone(timedelta(hours=9))),
        reading(0).time_source,
        reading(0).source,
        Lane.NORMAL,
    )
    assert not is_plain(jst)


def tagged(metadata: Mapping[str, object]) -> Reading:
    return make_reading(
        "e",
        "WaterObserved",
        {"waterLevel": Attribute(value=1.5, type="Number", unit="MTR", metadata=metadata)},
        T0,
        reading(0).time_source,
        reading(0).source,
        Lane.NORMAL,
    )


def test_metadata_of_json_values_is_plain_and_other_metadata_is_not() -> None:
    # a river gauge's quality flag: served from memory like its neighbours, not read back after its commit
    assert is_plain(tagged({"quality": "good", "accuracy": {"value": 0.01, "type": "Number"}}))
    assert not is_plain(tagged({"window": (1, 2)}))  # comes back from JSON as a list
    assert not is_plain(tagged(MappingProxyType({"quality": "good"})))  # comes back a dict


# values and metadata as JSON gives them back, and sometimes what it does not (a tuple comes back a list)
loose_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.tuples(c) | st.dictionaries(text(max_size=6), c, max_size=3),
    max_leaves=8,
)
loose_readings = st.builds(
    Reading,
    entity_id=text(min_size=1, max_size=20),
    entity_type=text(min_size=1, max_size=12),
    attributes=st.dictionaries(
        text(min_size=1, max_size=8),
        st.builds(
            Attribute,
            value=loose_values,
            type=st.sampled_from(["", "Number", "Text", "StructuredValue"]),
            unit=st.none() | st.just("MTR"),
            metadata=st.dictionaries(text(min_size=1, max_size=8), loose_values, max_size=2),
        ),
        max_size=3,
    ),
    observed_at=times,
    source=st.builds(Source, adapter=text(max_size=6), device=text(max_size=6)),
    lane=st.sampled_from(Lane),
)


@settings(max_examples=300)
@given(loose_readings)
def test_a_plain_reading_decodes_from_its_row_to_exactly_itself(r: Reading) -> None:
    """What the tail serves instead of the row must be the row's reading: same types, same time zone
    (`==` alone would take True for 1 and 09:00+09:00 for 00:00Z)."""
    if not is_plain(r):
        return
    try:
        body = encode_row(r)
    except ReadingError:
        return  # refused at append (an integer JSON cannot hold): never in the tail
    back = decode_reading(body, 7, r.entity_id, to_epoch_us(r.observed_at))
    # fold means nothing in UTC: the generated times may carry fold=1, and none in the gateway does
    assert repr(back) == repr(replace(with_seq(r, 7), observed_at=r.observed_at.replace(fold=0)))


def json_valued(value: object) -> Reading:
    return make_reading(
        "e",
        "Device",
        {"n": Attribute(value=1), "controlledProperty": Attribute(value=value, type="StructuredValue")},
        T0,
        reading(0).time_source,
        reading(0).source,
        Lane.NORMAL,
    )


def test_json_lists_and_objects_are_plain_tuples_and_other_keys_are_not() -> None:
    assert is_plain(json_valued(["level"]))  # a Smart Data Models controlledProperty
    assert is_plain(json_valued({"k": [1, 2.5, None, True, {"x": "y"}]}))
    assert not is_plain(json_valued(("level",)))  # comes back from JSON as a list
    assert not is_plain(json_valued(["level", ("a",)]))
    assert not is_plain(json_valued({1: "a"}))  # orjson refuses a non-text key


async def test_readings_with_json_lists_are_served_from_memory_equal_to_the_file(tmp_path: Path) -> None:
    values: list[object] = [["level"], {"k": [1, 2.5, {"x": None}]}, []]
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    await box.append_many([json_valued(v) for v in values])
    assert box.in_memory("orion")  # served from the tail, not read back from SQLite
    from_memory = await box.read("orion", 10)
    await box.close()
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    assert not box.in_memory("orion")
    from_file = await box.read("orion", 10)
    await box.close()
    assert from_memory == from_file
    assert [r.attributes["controlledProperty"].value for r in from_memory] == values


def test_tail_bound_moves_its_base_past_what_it_forgets() -> None:
    tail = Tail(max_rows=4, base=10)
    tail.add(11, [1, 1, 2, 1, 1], [reading(i) for i in range(5)])
    # 5 rows > 4: each lane lost its older half; lane 1 had seqs 11, 12, 14, 15
    assert not tail.covers(1, 11)
    assert tail.covers(1, 12)
    assert [r.seq for r in tail.take(1, 12, 10)] == [14, 15]
    assert tail.covers(2, 10) and [r.seq for r in tail.take(2, 10, 10)] == [13]
    tail.discard(1, 14)
    assert [r.seq for r in tail.take(1, 14, 10)] == [15]
    assert tail.rows == 2


def test_a_row_the_tail_cannot_keep_sends_its_lane_back_to_the_file() -> None:
    tail = Tail(max_rows=100, base=0)
    tail.add(1, [1, 1, 1], [reading(0), structured_reading(1), reading(2)])
    assert not tail.covers(1, 1)  # row 2 is only in the file
    assert tail.covers(1, 2) and [r.seq for r in tail.take(1, 2, 10)] == [3]


async def test_rows_dropped_by_the_caps_are_not_served_from_memory(tmp_path: Path) -> None:
    box = await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_rows=1000), ["orion"]
    )
    await box.append_many([reading(i, "n") for i in range(990)])
    await box.append_many([reading(2000 + i, "b", Lane.BULK) for i in range(10)])
    await box.append_many([reading(3000 + i, "n") for i in range(4)])  # drops the 4 oldest bulk rows
    batch = await box.read("orion", 2000)
    assert ns(batch)[-6:] == [2004, 2005, 2006, 2007, 2008, 2009]
    assert len(batch) == 1000
    await box.close()

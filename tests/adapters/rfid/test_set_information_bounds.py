"""ISO 28560-2 set information is bounded as the Danish block's bytes are: a tag claiming more is refused at decoding.

Regression (review s20, huge_set_info.py): a tag whose set information was 34 digits decoded to
partsInSet 11111111111111111, which the gateway refused only after the lending station had acted
(the loan counted, the tag released, the event dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rfid.errors import RfidTagError, TagBadField, TagValueInvalid
from adapters.rfid.iso15962 import (
    Compaction,
    DataElement,
    SetInformation,
    compact_text,
    decode_iso28560_2,
    encode_elements,
    set_information_text,
)
from adapters.rfid.pad import SerialPad
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread

PII = DataElement(oid=1, compaction=Compaction.NUMERIC, payload=compact_text(Compaction.NUMERIC, "40000007"))


def tag_with_set_info(text: str, compaction: Compaction = Compaction.NUMERIC) -> bytes:
    return encode_elements([PII, DataElement(oid=4, compaction=compaction, payload=compact_text(compaction, text))])


def test_the_reviewers_34_digit_set_information_is_refused_naming_the_field() -> None:
    with pytest.raises(TagBadField) as exc:
        decode_iso28560_2(tag_with_set_info("1" * 17 + "0" * 16 + "1"))
    assert isinstance(exc.value, RfidTagError)
    assert exc.value.code == "rfid_bad_field"
    assert exc.value.params["field"] == "set_information"
    assert str(exc.value) == (
        "rfid iso28560-2 tag set_information: parts in set must be 0..255 (one byte, as in ISO 28560-3), "
        "got 17 digits; the tag was programmed wrong: write its set information again"
    )


@pytest.mark.parametrize(
    ("text", "compaction", "got"),
    [
        ("256001", Compaction.NUMERIC, "parts in set must be 0..255 (one byte, as in ISO 28560-3), got 256"),
        ("001256", Compaction.NUMERIC, "part number must be 0..255 (one byte, as in ISO 28560-3), got 256"),
        ("99999999", Compaction.NUMERIC, "parts in set must be 0..255 (one byte, as in ISO 28560-3), got 9999"),
        ("10000001", Compaction.INTEGER, "parts in set must be 0..255 (one byte, as in ISO 28560-3), got 1000"),
    ],
)
def test_a_number_past_a_byte_is_refused(text: str, compaction: Compaction, got: str) -> None:
    with pytest.raises(TagBadField) as exc:
        decode_iso28560_2(tag_with_set_info(text, compaction))
    assert str(exc.value).startswith(f"rfid iso28560-2 tag set_information: {got}; ")


def test_the_edges_of_the_range_decode() -> None:
    assert decode_iso28560_2(tag_with_set_info("255255")).set_information == SetInformation(
        parts_in_set=255, part_number=255
    )
    # zero padding is not a number past a byte
    assert decode_iso28560_2(tag_with_set_info("0" * 20 + "3" + "0" * 20 + "1")).set_information == SetInformation(
        parts_in_set=3, part_number=1
    )


def test_the_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(TagValueInvalid) as exc:
        set_information_text(SetInformation(parts_in_set=256, part_number=1))
    assert str(exc.value) == "rfid iso28560-2 tag set_information: parts in set must be 0..255, got 256"
    with pytest.raises(TagValueInvalid):
        set_information_text(SetInformation(parts_in_set=2, part_number=-1))


@settings(max_examples=300)
@given(
    digits=st.text(st.sampled_from("0123456789"), min_size=1, max_size=60).filter(lambda t: len(t) % 2 == 0),
    compaction=st.sampled_from([Compaction.NUMERIC, Compaction.SEVEN_BIT, Compaction.OCTET, Compaction.UTF8]),
)
def test_any_set_information_decodes_into_a_byte_each_or_is_refused(digits: str, compaction: Compaction) -> None:
    half = len(digits) // 2
    if max(int(digits[:half]), int(digits[half:])) > 255:
        with pytest.raises(TagBadField) as exc:
            decode_iso28560_2(tag_with_set_info(digits, compaction))
        assert exc.value.params["field"] == "set_information"
        return
    info = decode_iso28560_2(tag_with_set_info(digits, compaction)).set_information
    assert info is not None
    assert 0 <= info.parts_in_set <= 255 and 0 <= info.part_number <= 255


@pytest.fixture
def pad_with_tag(tmp_path: Path) -> Iterator[tuple[FeigSim, str]]:
    pair = PtyPair(tmp_path)
    memory = tag_with_set_info("1" * 17 + "0" * 16 + "1").ljust(36, b"\0")
    sim = FeigSim(tags=[SimTag(uid=bytes.fromhex("E004010000000099"), memory=bytearray(memory))])
    thread = SimThread(sim, pair.b)
    try:
        yield sim, pair.a
    finally:
        thread.stop()
        pair.close()


async def test_a_pad_reports_such_a_tag_undecodable_so_no_station_lends_it(pad_with_tag: tuple[FeigSim, str]) -> None:
    sim, path = pad_with_tag
    pad = SerialPad(path)
    try:
        tag = await pad.read_tag(sim.tags[0].uid)
    finally:
        pad.close()
    assert (tag.item_id, tag.parts_in_set, tag.data_model) == (None, None, "")
    assert tag.error  # reported with the codec's code, never dropped

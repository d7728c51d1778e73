"""A tag's type of usage, decoded from either data model into `PadTag.usage`, and what it makes the tag.

Review finding: `PadTag` had no field for the type of usage, so a patron's RFID library card read on a
pad was a book, its card number the `item` of a loan or return, in clear.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.danish import TagRole, Usage, tag_role
from adapters.rfid.iso15962 import Compaction, DataElement, compact_text, decode_iso28560_2, encode_elements
from adapters.rfid.pad import decode_tag

UID = "E004010000000099"
CARD = "73100001"
PII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)


def danish(item: str, usage: int) -> bytes:
    return encode_danish(DanishTag(primary_item_id=item, usage=usage, country="JP", isil="1000001"))


def iso28560_2(item: str, type_of_usage: int | None) -> bytes:
    elements = [DataElement(oid=1, compaction=Compaction.OCTET, payload=compact_text(Compaction.OCTET, item))]
    if type_of_usage is not None:
        elements.append(DataElement(oid=5, compaction=Compaction.APPLICATION_DEFINED, payload=bytes((type_of_usage,))))
    return encode_elements(elements)


# DS/INF 163 §3.2.1.2 and libdanrfid DDMData.java's names for the nibble's values
@pytest.mark.parametrize(
    ("usage", "role"),
    [
        (None, TagRole.ITEM),  # a tag that does not say: an item, as every tag was before
        (0, TagRole.NOT_FOR_LOAN),  # acquisition: "can not be circulated"
        (1, TagRole.ITEM),
        (2, TagRole.NOT_FOR_LOAN),  # "the patron must not be able to checkout" (may check in)
        (3, TagRole.ITEM),  # local data A
        (4, TagRole.ITEM),  # local data B
        (5, TagRole.RESERVED),
        (6, TagRole.ITEM),  # no information
        (7, TagRole.DISCARDED),
        (8, TagRole.PATRON_CARD),
        (9, TagRole.NOT_AN_ITEM),  # library equipment
        *[(n, TagRole.RESERVED) for n in range(10, 16)],
    ],
)
def test_what_each_type_of_usage_makes_a_tag(usage: int | None, role: TagRole) -> None:
    assert tag_role(usage) is role


@settings(max_examples=200, deadline=None)
@given(item=PII, usage=st.integers(0, 15))
def test_a_danish_tag_read_on_a_pad_carries_its_type_of_usage(item: str, usage: int) -> None:
    tag = decode_tag(UID, 0x07, True, danish(item, usage))
    assert (tag.data_model, tag.item_id, tag.usage, tag.error) == ("iso28560-3", item, usage, "")


@settings(max_examples=200, deadline=None)
@given(item=PII, type_of_usage=st.one_of(st.none(), st.integers(0, 255)))
def test_an_iso28560_2_tag_read_on_a_pad_carries_its_main_qualifier(item: str, type_of_usage: int | None) -> None:
    """ISO 28560-2's type of usage is one byte: the main qualifier (high nibble) is what ISO 28560-3's nibble
    holds, the sub-qualifier (an item's kind of circulation) does not change what the tag is."""
    memory = iso28560_2(item, type_of_usage)
    tag = decode_tag(UID, 0x07, True, memory)
    assert tag.data_model == "iso28560-2"
    assert tag.item_id == item
    assert tag.usage == (None if type_of_usage is None else type_of_usage >> 4)
    assert decode_iso28560_2(memory).usage == tag.usage


def test_a_patron_card_is_one_in_either_data_model() -> None:
    assert tag_role(decode_tag(UID, 0x07, True, danish(CARD, Usage.PATRON_CARD)).usage) is TagRole.PATRON_CARD
    for sub in (0x80, 0x81, 0x8F):
        assert tag_role(decode_tag(UID, 0x07, True, iso28560_2(CARD, sub)).usage) is TagRole.PATRON_CARD
    assert tag_role(decode_tag(UID, 0x07, True, iso28560_2(CARD, 0x18)).usage) is TagRole.ITEM


@settings(max_examples=300, deadline=None)
@given(memory=st.binary(max_size=40))
def test_any_memory_decodes_to_a_tag_or_an_error_code_never_an_exception(memory: bytes) -> None:
    tag = decode_tag(UID, 0x07, None, memory)
    if tag.item_id is None:
        assert tag.error.startswith("rfid_") and (tag.usage, tag.data_model) == (None, "")
    else:
        assert tag.error == "" and tag.data_model in ("iso28560-3", "iso28560-2")
        assert tag.usage is None or 0 <= tag.usage <= 15


def test_a_pad_tag_repr_never_shows_the_card_number() -> None:
    """The repr is what a log line or a traceback would carry."""
    tag = decode_tag(UID, 0x07, True, danish(CARD, Usage.PATRON_CARD))
    assert tag.item_id == CARD
    assert CARD not in repr(tag)
    assert "usage=<Usage.PATRON_CARD: 8>" in repr(tag)

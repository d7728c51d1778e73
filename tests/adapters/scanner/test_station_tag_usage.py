"""An RFID tag at a station is what its type of usage makes it: a patron card is exactly a patron card
barcode, an item exactly an item barcode (as tags were before), anything else a refusal without the tag's id.

Review finding: every decoded tag was an item, so a patron's RFID card laid on a pad became a loan or a
return with the card number in `item`, in clear (only `patronCard` and `child` are pseudonymized).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.rfid.danish import TagRole, Usage, tag_role
from adapters.scanner.classify import IdKind, ScanClass, ScanKind
from adapters.scanner.station import Feedback, Purpose, Station, StationConfig
from gateway.processing.api import ProcessorContext
from gateway.processing.pseudonymize import PseudonymizeConfig
from gateway.records import Attribute, make_attribute

KEY = b"k" * 32
T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
CARDS = ("73100001", "73100002")
BOOKS = ("30001234", "30005678")
REFUSALS = {TagRole.DISCARDED: "discarded", TagRole.NOT_AN_ITEM: "not_an_item", TagRole.RESERVED: "unknown_usage"}


def station(purpose: Purpose) -> Station:
    return Station(StationConfig(station_id="desk1", purpose=purpose), adapter="scan", device="d", local_key=KEY)


def extra(uid: str) -> dict[str, Attribute]:
    return {"tagUid": make_attribute(uid, "Text"), "dataModel": make_attribute("iso28560-3", "Text")}


# (tag id, type of usage, UID): the cards say so; the books carry any other value, or none
CARD_TAGS = st.tuples(st.sampled_from(CARDS), st.just(int(Usage.PATRON_CARD)), st.just("E0040100000000C1"))
BOOK_TAGS = st.tuples(
    st.sampled_from(BOOKS),
    st.one_of(st.none(), st.integers(0, 15).filter(lambda u: u != Usage.PATRON_CARD)),
    st.sampled_from(["E004010000000001", "E004010000000002"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(purpose=st.sampled_from(list(Purpose)), reads=st.lists(st.one_of(CARD_TAGS, BOOK_TAGS), max_size=25))
def test_a_tag_is_what_its_type_of_usage_says_and_a_card_never_leaves_in_clear(
    purpose: Purpose, reads: list[tuple[str, int | None, str]], tmp_path: Path
) -> None:
    pz = PseudonymizeConfig.model_validate(
        {
            "type": "pseudonymize",
            "attributes": ["patronCard", "child"],
            "kinds": {"patronCard": "card", "child": "card"},
        }
    ).build(ProcessorContext(gateway_id="gw", data_dir=str(tmp_path)))
    tags, barcodes = station(purpose), station(purpose)  # the second is fed what the tags are, as barcodes
    t = T0
    for n, (ident, usage, uid) in enumerate(reads, start=1):
        t += timedelta(seconds=1)
        step = tags.item_read(ident, t, n, extra(uid), usage=usage)
        role = tag_role(usage)
        refused = REFUSALS.get(role)
        if role is TagRole.NOT_FOR_LOAN and purpose is Purpose.LENDING:
            refused = "not_for_loan"
        if role is TagRole.PATRON_CARD:
            assert step == barcodes.scan(ScanClass(kind=ScanKind.PATRON, value=ident, id_kind=IdKind.PATRON), t, n)
        elif refused is None:
            assert step == barcodes.item_read(ident, t, n, extra(uid))
        else:
            assert (step.reason, step.feedback) == (refused, Feedback.REFUSED)
            [rejected] = step.readings
            assert rejected.entity_type == "ScanRejected"
            assert rejected.attributes["code"].value == f"rfid_usage_{usage}"
            assert not {ident, uid} & {str(a.value) for a in rejected.attributes.values()}
        for r in step.readings:
            assert r.attributes.get("item", make_attribute("", "Text")).value not in CARDS
            for out in pz.process(r, t):
                blob = json.dumps([out.entity_id, {k: a.value for k, a in out.attributes.items()}])
                assert not any(c in blob for c in CARDS), blob
                assert "E0040100000000C1" not in blob  # a card's UID would follow its patron too


def test_a_card_laid_on_a_lending_pad_is_the_patron_of_the_books_after_it() -> None:
    s = station(Purpose.LENDING)
    opened = s.item_read(CARDS[0], T0, 1, extra("E0040100000000C1"), usage=Usage.PATRON_CARD)
    assert (opened.reason, opened.readings) == ("patron", ())
    loan = s.item_read(BOOKS[0], T0 + timedelta(seconds=5), 2, extra("E004010000000001"), usage=Usage.CIRCULATING)
    assert loan.reason == "loan"
    attrs = {k: a.value for k, a in loan.readings[0].attributes.items()}
    assert (attrs["item"], attrs["patronCard"], attrs["tagUid"]) == (BOOKS[0], CARDS[0], "E004010000000001")


@pytest.mark.parametrize(
    ("purpose", "reason"),
    [
        (Purpose.LENDING, "not_for_loan"),
        (Purpose.RETURN, "return"),  # "may do a checkin"
        (Purpose.INVENTORY, "inventory"),
    ],
)
def test_an_item_not_for_circulation_is_refused_only_at_a_lending_desk(purpose: Purpose, reason: str) -> None:
    s = station(purpose)
    s.scan(ScanClass(kind=ScanKind.PATRON, value=CARDS[0], id_kind=IdKind.PATRON), T0, 1)
    s.scan(ScanClass(kind=ScanKind.SHELF, value="001", id_kind=IdKind.SHELF), T0, 2)
    step = s.item_read(BOOKS[0], T0, 3, extra("E004010000000001"), usage=Usage.NOT_CIRCULATING)
    assert step.reason == reason
    if reason == "not_for_loan":
        assert {k: a.value for k, a in step.readings[0].attributes.items()} == {
            "reason": "not_for_loan",
            "scanKind": "item",
            "code": "rfid_usage_2",
            "idKind": "item",
            "station": "desk1",
            "scanNumber": 3,
        }

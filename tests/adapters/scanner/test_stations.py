"""Stations: classification, loans, returns, inventory, attendance, visits; properties over any scan sequence."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.scanner.aim import Framed, FramingConfig, unframe
from adapters.scanner.classify import CodabarRule, IdKind, ScanClass, ScanKind, classify
from adapters.scanner.codabar import CheckScheme, CodabarConfig, GuardsIn, encode_codabar
from adapters.scanner.station import (
    EVENT_TYPES,
    Feedback,
    LendingMode,
    Purpose,
    Station,
    StationConfig,
    present_today,
)
from adapters.scanner.visit_qr import encode_visit_qr
from gateway.errors import ConfigError
from gateway.processing.api import ProcessorContext
from gateway.processing.pseudonymize import PseudonymizeConfig
from gateway.records import check_values, encode_reading, make_attribute

PATRON_CFG = CodabarConfig(scheme=CheckScheme.MOD16, guards_in=GuardsIn.PRESENT)
ITEM_CFG = CodabarConfig(scheme=CheckScheme.MOD10_W21_SPLIT, guards_in=GuardsIn.PRESENT)
RULES = (
    CodabarRule(kind=IdKind.PATRON, pattern=r"[Aa]\d{8}.[Bb]", codabar=PATRON_CFG),
    CodabarRule(kind=IdKind.ITEM, pattern=r"[Cc]\d{9}[Cc]", codabar=ITEM_CFG),
    CodabarRule(kind=IdKind.SHELF, pattern=r"[Dd]\d{3}[Dd]", codabar=CodabarConfig(guards_in=GuardsIn.PRESENT)),
)
KEY = b"k" * 32
KEYS = {"K1": KEY}
T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo


def patron(n: int) -> str:
    return encode_codabar(f"7310{n:04d}", PATRON_CFG, start="A", stop="B")


def item(n: int) -> str:
    return encode_codabar(f"{n:08d}", ITEM_CFG, start="C", stop="C")


def cls(text: str) -> ScanClass:
    return classify(unframe(text + "\r", FramingConfig()), RULES, KEYS)


def station(purpose: Purpose, **kw: object) -> Station:
    return Station(StationConfig(station_id="desk1", purpose=purpose, **kw), adapter="scan", device="d", local_key=KEY)  # type: ignore[arg-type]


def test_classification() -> None:
    assert cls(patron(1234)).kind is ScanKind.PATRON
    assert cls(item(5)).kind is ScanKind.ITEM
    assert cls("D001D").kind is ScanKind.SHELF
    assert cls("9784344405042") == ScanClass(kind=ScanKind.ISBN, value="9784344405042", id_kind=IdKind.ITEM)
    assert cls("1920193005714").kind is ScanKind.PRICE_ROW
    assert cls("4901234567894").kind is ScanKind.GTIN
    bad = patron(1234)
    bad = bad[:-2] + ("0" if bad[-2] != "0" else "1") + bad[-1]
    assert cls(bad) == ScanClass(kind=ScanKind.BAD_CHECK, id_kind=IdKind.PATRON, code="codabar_check_mismatch")
    assert cls("9784344405043").kind is ScanKind.BAD_CHECK
    assert cls("hello").kind is ScanKind.UNKNOWN
    qr = encode_visit_qr("HOME-12", "K1", KEY)
    assert cls(qr) == ScanClass(kind=ScanKind.VISIT, value="HOME-12", key_id="K1")
    assert cls(qr[:-1] + ("A" if qr[-1] != "A" else "B")).kind is ScanKind.VISIT_REFUSED
    assert cls(encode_visit_qr("HOME-12", "K9", KEY)).code == "visit_qr_key_unknown"
    assert classify(Framed(data="x", aim=None), (), {}).code == "no_rule_matches"


def test_lending_patron_then_items_and_session_timeout() -> None:
    s = station(Purpose.LENDING, lending_mode=LendingMode.OUTREACH)
    assert s.scan(cls(item(1)), T0, 1).reason == "no_patron"
    assert s.scan(cls(patron(42)), T0, 2).feedback is Feedback.ACCEPTED
    step = s.scan(cls(item(1)), T0 + timedelta(seconds=5), 3)
    loan = step.readings[0]
    assert loan.entity_id == "urn:ngsi-ld:LibraryLoan:desk1:3"
    assert loan.attributes["patronCard"].value == "73100042" + patron(42)[-2]
    assert loan.attributes["mode"].value == "outreach"
    isbn = s.scan(cls("9784344405042"), T0 + timedelta(seconds=6), 4).readings[0]
    assert isbn.attributes["itemIdType"].value == "isbn13"
    assert s.scan(cls("1920193005714"), T0, 5).feedback is Feedback.IGNORED
    assert s.scan(cls(item(2)), T0 + timedelta(seconds=400), 6).reason == "no_patron"


def reason_of(s: Station, text: str, at: datetime, n: int) -> str:
    return s.scan(cls(text), at, n).reason


def test_a_copy_lent_or_returned_again_at_once_is_one_event_with_the_accepted_beep() -> None:
    """A double scan, or a book put back on the pad, was a second loan or return for the platform."""
    s = station(Purpose.LENDING)
    s.scan(cls(patron(42)), T0, 1)
    loan = s.scan(cls(item(1)), T0, 2)
    assert [r.entity_id for r in loan.readings] == ["urn:ngsi-ld:LibraryLoan:desk1:2"]
    again = s.scan(cls(item(1)), T0 + timedelta(seconds=1), 3)
    assert (again.readings, again.feedback, again.reason) == ((), Feedback.ACCEPTED, "already_lent")
    assert reason_of(s, item(2), T0, 4) == "loan"
    isbn = "9784344405042"  # a title, not a copy: two copies of it are two loans
    assert [reason_of(s, isbn, T0, n) for n in (5, 6)] == ["loan", "loan"]
    s.scan(cls(patron(43)), T0 + timedelta(seconds=2), 7)  # the next patron may borrow the same book
    assert reason_of(s, item(1), T0 + timedelta(seconds=3), 8) == "loan"
    s.scan(cls(patron(43)), T0 + timedelta(seconds=4), 9)  # the same patron again: the session goes on
    assert reason_of(s, item(1), T0 + timedelta(seconds=5), 10) == "already_lent"
    s.scan(cls(patron(43)), T0 + timedelta(seconds=400), 11)  # after the session ended: a new one
    assert reason_of(s, item(1), T0 + timedelta(seconds=401), 12) == "loan"

    r = station(Purpose.RETURN, debounce_s=60)
    assert [reason_of(r, item(7), T0 + timedelta(seconds=t), t) for t in (0, 30, 59, 61, 90)] == [
        "return",
        "already_returned",
        "already_returned",
        "return",  # a minute after its return: back on the shelf and returned again
        "already_returned",
    ]
    assert reason_of(r, item(8), T0 + timedelta(seconds=91), 92) == "return"
    assert [reason_of(r, "9784344405042", T0, n) for n in (93, 94)] == ["return", "return"]
    reason_of(r, item(9), T0 + timedelta(seconds=200), 95)
    assert list(r.state.returned) == [f"item:{cls(item(9)).value}"]  # what is past the window is forgotten


@pytest.mark.parametrize(("purpose", "reason"), [(Purpose.LENDING, "loan"), (Purpose.RETURN, "return")])
def test_the_parts_of_a_set_are_each_lent_and_returned_and_each_part_once(purpose: Purpose, reason: str) -> None:
    """RFID parts of one set (a book and its CD) share the item id: one event each, by tag."""
    s = station(purpose)
    s.scan(cls(patron(42)), T0, 1)

    def part(uid: str, n: int, scan_no: int) -> str:
        extra = {"tagUid": make_attribute(uid, "Text"), "partNumber": make_attribute(n, "Number")}
        return s.item_read("30001234", T0, scan_no, extra).reason

    assert [part("E004010000000001", 1, 2), part("E004010000000002", 2, 3)] == [reason, reason]
    assert part("E004010000000002", 2, 4) == f"already_{'lent' if reason == 'loan' else 'returned'}"


def test_return_and_inventory() -> None:
    r = station(Purpose.RETURN)
    assert r.scan(cls(item(7)), T0, 1).readings[0].entity_type == "LibraryReturn"
    assert r.scan(cls(patron(7)), T0, 2).reason == "wrong_kind"
    inv = station(Purpose.INVENTORY)
    assert inv.scan(cls(item(1)), T0, 1).reason == "no_shelf"
    inv.scan(cls("D001D"), T0, 2)
    counts = [inv.scan(cls(item(i)), T0, 3 + i).readings[0].attributes["shelfCount"].value for i in range(3)]
    assert counts == [1, 2, 3]
    inv.scan(cls("D002D"), T0, 10)
    assert inv.scan(cls(item(9)), T0, 11).readings[0].attributes["shelf"].value == "002"


def test_attendance_in_out_debounce_next_day() -> None:
    s = station(Purpose.ATTENDANCE, debounce_s=60)
    card = cls(patron(5))
    first = s.scan(card, T0, 1)
    assert first.reason == "checkIn"
    ev, state = first.readings
    assert ev.attributes["action"].value == "checkIn"
    assert state.entity_type == "ChildAttendance" and patron(5)[1:9] not in state.entity_id
    assert present_today(s.state, T0) == 1
    assert s.scan(card, T0 + timedelta(seconds=30), 2).reason == "debounced"
    out = s.scan(card, T0 + timedelta(hours=8), 3)
    assert out.reason == "checkOut"
    assert out.readings[1].attributes["state"].value == "left"
    assert present_today(s.state, T0) == 0
    assert s.scan(card, T0 + timedelta(hours=9), 4).reason == "already_left"
    assert s.scan(card, T0 + timedelta(days=1), 5).reason == "checkIn"
    assert s.scan(cls(item(1)), T0, 6).reason == "wrong_kind"


def test_visit() -> None:
    s = station(Purpose.VISIT)
    step = s.scan(cls(encode_visit_qr("HOME-12", "K1", KEY)), T0, 1)
    assert step.readings[0].entity_type == "WatchVisit"
    assert step.readings[0].attributes["visitPoint"].value == "HOME-12"
    refused = s.scan(cls(encode_visit_qr("HOME-12", "K9", KEY)), T0, 2)
    assert refused.feedback is Feedback.REFUSED
    assert refused.readings[0].attributes["code"].value == "visit_qr_key_unknown"
    assert s.scan(cls(item(1)), T0, 3).reason == "wrong_kind"
    lend = station(Purpose.LENDING)
    assert lend.scan(cls(encode_visit_qr("HOME-12", "K1", KEY)), T0, 1).reason == "wrong_kind"


def test_bad_config_rejected() -> None:
    with pytest.raises(ConfigError) as e:
        StationConfig(station_id="bad id", purpose=Purpose.VISIT, debounce_s=-1)
    assert str(e.value) == (
        "stations.id: must be 1-32 of A-Z a-z 0-9 _ - starting with a letter or digit, got 'bad id'; "
        "stations[bad id].debounce_s: must be 0..3600, got -1"
    )


SCANS = st.one_of(
    st.integers(0, 5).map(patron),
    st.integers(0, 5).map(item),
    st.sampled_from(["D001D", "D002D", "9784344405042", "1920193005714", "garbage", "A123B"]),
    st.just(encode_visit_qr("P-1", "K1", KEY)),
    st.just(encode_visit_qr("P-1", "K2", KEY)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    purpose=st.sampled_from(list(Purpose)),
    scans=st.lists(st.tuples(SCANS, st.integers(0, 7200)), max_size=40),
)
def test_any_scans_give_well_formed_pseudonymized_events(
    purpose: Purpose, scans: list[tuple[str, int]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pz = PseudonymizeConfig.model_validate(
        {
            "type": "pseudonymize",
            "attributes": ["patronCard", "child"],
            "kinds": {"patronCard": "card", "child": "card"},
        }
    ).build(ProcessorContext(gateway_id="gw", data_dir=str(tmp_path)))
    s = station(purpose)
    t = T0
    ids: set[str] = set()
    per_child: dict[str, list[str]] = {}
    cards = {patron(n)[1:9] for n in range(6)}
    for n, (text, dt) in enumerate(scans, start=1):
        t += timedelta(seconds=dt)
        step = s.scan(cls(text), t, n)
        for r in step.readings:
            assert r.entity_type in EVENT_TYPES
            check_values(r)
            if r.entity_type != "ChildAttendance":
                assert r.entity_id not in ids  # one scan number, one event: replays rewrite, scans never collide
                ids.add(r.entity_id)
            for out in pz.process(r, t):
                encode_reading(out)  # storable as the buffer stores it
                # the texts that could carry a card (the encoded form also holds times, whose digits may match)
                blob = json.dumps([out.entity_id, {k: a.value for k, a in out.attributes.items()}])
                assert not any(c in blob for c in cards), blob
                if out.entity_type == "AttendanceEvent":
                    per_child.setdefault(out.attributes["child"].value + out.attributes["day"].value, []).append(
                        out.attributes["action"].value
                    )
    for actions in per_child.values():  # per child and day: in, then at most one out
        assert actions[0] == "checkIn" and actions[1:] in ([], ["checkOut"])
    assert not any(c in caplog.text for c in cards)
    assert json.dumps(pz.diagnostics())

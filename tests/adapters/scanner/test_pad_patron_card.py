"""A patron's RFID library card laid on a FEIG pad is a patron card scan: never a book, never in clear, never
written to. The FEIG stand-in runs on a socat pty; the adapter, its station store and pseudonymizer are real.

Review finding (/tmp/review-privacy/test_rfid_patron_card.py): the card, type of usage 8, was read as a book:
at a return desk a LibraryReturn, at a lending desk a loan charged to the patron before, the card number in
`item` in clear with the default card_numbers = "token", and the card's AFI and EAS written as a book's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.danish import Usage
from adapters.rfid.iso15962 import Compaction, DataElement, encode_elements
from adapters.rfid.pad import AFI_ON_LOAN, AFI_SECURED
from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.classify import ScanClass, ScanKind
from adapters.scanner.config import ScannerAdapterConfig
from gateway.adapter_api import AdapterContext
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread
from tests.adapters.scanner.test_adapter import RULES, Clock, until
from tests.adapters.scanner.test_pad_faults import REFUSED_BEEP, LiftingSim
from tests.adapters.scanner.test_pad_put_back import ACCEPTED_BEEP

CARD = "73100001"  # the patron's library card number, on an RFID card
OTHER_CARD = "73100002"
CARD_UID = bytes.fromhex("E004010000000099")
BOOK_UID = bytes.fromhex("E004010000000001")
CARD_AFI = 0x3E  # whatever the card came with: not the gateway's to change


def danish_card(number: str = CARD) -> bytearray:
    return bytearray(encode_danish(DanishTag(primary_item_id=number, usage=Usage.PATRON_CARD, country="JP")))


def iso28560_2_card(number: str = CARD) -> bytearray:
    """ISO 28560-2: type of usage 0x80, main qualifier 8 (patron card), sub-qualifier 0."""
    raw = encode_elements(
        [
            DataElement(oid=1, compaction=Compaction.OCTET, payload=number.encode()),
            DataElement(oid=5, compaction=Compaction.APPLICATION_DEFINED, payload=b"\x80"),
        ]
    )
    return bytearray(raw.ljust(32, b"\x00"))


def card(memory: bytearray, uid: bytes = CARD_UID) -> SimTag:
    return SimTag(uid=uid, memory=memory, afi=CARD_AFI, eas=False)


def book(usage: int = Usage.CIRCULATING, item: str = "30001234", uid: bytes = BOOK_UID) -> SimTag:
    memory = bytearray(encode_danish(DanishTag(primary_item_id=item, usage=usage, country="JP", isil="1000001")))
    return SimTag(uid=uid, memory=memory, afi=AFI_SECURED, eas=True)  # in the library


def security_writes(sim: FeigSim, uid: bytes) -> list[bytes]:
    """The requests that wrote `uid`'s AFI (0x27) or set or reset its EAS bit (0xA2, 0xA3)."""
    return [
        r
        for r in sim.requests
        if (r[2] == 0xB0 and r[3] == 0x27 and r[5:13] == uid)
        or (r[2] == 0xB1 and r[3] in (0xA2, 0xA3) and r[6:14] == uid)
    ]


def values(r: Reading) -> dict[str, Any]:
    return {k: a.value for k, a in r.attributes.items()}


@dataclass
class Desk:
    sim: FeigSim
    adapter: ScannerAdapter
    out: list[Reading]
    clock: Clock

    async def patron_barcode(self, number: str) -> None:
        """The patron before, whose card was scanned at the desk's barcode scanner."""
        await self.adapter.process("desk", ScanClass(kind=ScanKind.PATRON, value=number), self.clock())


@asynccontextmanager
async def desk(tmp_path: Path, purpose: str, sim: FeigSim | None = None, **keys: Any) -> AsyncIterator[Desk]:
    pair = PtyPair(tmp_path)
    sim = sim or FeigSim(tags=[])
    thread = SimThread(sim, pair.b)
    cfg = ScannerAdapterConfig.model_validate(
        {
            "name": "lib",
            "type": "scanner",
            "rescan_s": 0.2,
            "rules": RULES,
            "stations": [{"id": "desk", "purpose": purpose}],
            "pads": [{"name": "pad", "station": "desk", "port": pair.a, "poll_ms": 50}],
            **keys,
        }
    )
    clock = Clock()
    adapter = ScannerAdapter(cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)), clock=clock)
    out: list[Reading] = []

    async def emit(r: Reading) -> None:
        out.append(r)

    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: adapter.connected.get(f"pad:{pair.a}") is True, "pad online")
        yield Desk(sim=sim, adapter=adapter, out=out, clock=clock)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()


async def test_a_patron_card_laid_on_a_return_pad_is_refused_not_returned_and_never_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer's case: at a return desk a patron card is the wrong kind of scan, as its barcode is."""
    caplog.set_level(logging.DEBUG)
    async with desk(tmp_path, "return") as d:
        assert d.adapter.config.card_numbers.value == "token"
        d.sim.tags.append(card(danish_card()))
        await until(lambda: len(d.out) == 1 and len(d.sim.outputs) == 1, "the refusal and its beep")
        [rejected] = d.out
        assert rejected.entity_type == "ScanRejected"
        assert values(rejected) == {
            "reason": "wrong_kind",
            "scanKind": "patron",
            "idKind": "patron",
            "station": "desk",
            "scanNumber": 1,
        }
        assert d.sim.outputs == [REFUSED_BEEP]
        assert security_writes(d.sim, CARD_UID) == []
        assert (d.sim.tags[0].afi, d.sim.tags[0].eas) == (CARD_AFI, False)
        assert d.adapter.diagnostics()["scans"] == {"wrong_kind": 1}
    assert CARD not in caplog.text
    assert CARD_UID.hex().upper() not in caplog.text
    assert CARD.encode() not in (tmp_path / "stations.db").read_bytes()


async def test_a_card_lifted_mid_read_is_logged_without_its_uid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before its memory is read nothing says a tag is no patron's card: the failed read's line names no UID."""
    caplog.set_level(logging.DEBUG)
    async with desk(tmp_path, "lending", LiftingSim(lift_at=0x2B)) as d:  # lifted at Get System Information
        assert isinstance(d.sim, LiftingSim)
        d.sim.tags.append(card(danish_card()))
        await until(lambda: d.adapter.pad_errors["rfid_tag_status"] == 1, "the failed read")
    assert [r.getMessage() for r in caplog.records if "tag read failed" in r.getMessage()] == [
        "pad pad: tag read failed, the reader is fine: rfid feig reader: reader status not OK, got 0x01; "
        "see the status table in the manual"
    ]
    assert CARD_UID.hex().upper() not in caplog.text


@pytest.mark.parametrize("memory", [danish_card, iso28560_2_card], ids=["iso28560-3", "iso28560-2"])
async def test_lay_the_card_then_the_books_lends_them_to_that_patron_as_a_token(
    tmp_path: Path, memory: Callable[[], bytearray]
) -> None:
    async with desk(tmp_path, "lending") as d:
        d.sim.tags.append(card(memory()))
        await until(lambda: len(d.sim.outputs) == 1, "the card's beep")
        assert (d.out, d.sim.outputs) == ([], [ACCEPTED_BEEP])  # the session is open: no event, the accepted beep
        d.sim.tags.append(book())
        await until(lambda: len(d.out) == 1 and len(d.sim.outputs) == 2, "the loan and its beep")
        [loan] = d.out
        attrs = values(loan)
        assert loan.entity_type == "LibraryLoan"
        assert (attrs["item"], attrs["tagUid"]) == ("30001234", BOOK_UID.hex().upper())
        assert attrs["patronCard"].startswith("pz1:")  # card_numbers = "token", the default
        assert CARD not in str(attrs)
        assert d.sim.outputs == [ACCEPTED_BEEP, ACCEPTED_BEEP]
        await until(lambda: (d.sim.tags[1].afi, d.sim.tags[1].eas) == (AFI_ON_LOAN, False), "the book released")
        assert security_writes(d.sim, CARD_UID) == []
        assert (d.sim.tags[0].afi, d.sim.tags[0].eas) == (CARD_AFI, False)
        assert d.adapter.diagnostics()["scans"] == {"patron": 1, "loan": 1}


async def test_a_card_laid_down_with_a_book_opens_its_session_before_the_book_is_lent(tmp_path: Path) -> None:
    """The reader lists the book first; the patron before still has a session open. The book is the new
    patron's loan all the same (numbers in clear here, to see whose)."""
    async with desk(tmp_path, "lending", card_numbers="clear") as d:
        await d.patron_barcode(CARD)
        d.sim.tags.extend([book(), card(danish_card(OTHER_CARD))])  # one inventory sees both
        await until(lambda: len(d.out) == 1 and len(d.sim.outputs) == 2, "the loan and both beeps")
        [loan] = d.out
        assert (values(loan)["item"], values(loan)["patronCard"]) == ("30001234", OTHER_CARD)
        assert security_writes(d.sim, CARD_UID) == []


@pytest.mark.parametrize(
    ("purpose", "usage", "reason"),
    [
        ("return", Usage.DISCARDED, "discarded"),
        ("lending", Usage.DISCARDED, "discarded"),
        ("lending", Usage.NOT_CIRCULATING, "not_for_loan"),
        ("lending", Usage.ACQUISITION, "not_for_loan"),
        ("return", Usage.LIBRARY_EQUIPMENT, "not_an_item"),
        ("return", 5, "unknown_usage"),
    ],
)
async def test_a_tag_that_is_no_item_to_lend_or_return_is_refused_and_left_as_it_is(
    tmp_path: Path, purpose: str, usage: int, reason: str
) -> None:
    async with desk(tmp_path, purpose) as d:
        if purpose == "lending":
            await d.patron_barcode(CARD)  # not refused for want of a patron
        tag = book(usage)
        tag.afi, tag.eas = AFI_ON_LOAN, False  # a discarded book is left checked out: the gate stays quiet
        d.sim.tags.append(tag)
        await until(lambda: len(d.out) == 1 and len(d.sim.outputs) == 1, "the refusal and its beep")
        [rejected] = d.out
        attrs = values(rejected)
        assert (rejected.entity_type, attrs["reason"], attrs["code"]) == ("ScanRejected", reason, f"rfid_usage_{usage}")
        assert "30001234" not in str(attrs) and BOOK_UID.hex().upper() not in str(attrs)
        assert d.sim.outputs == [REFUSED_BEEP]
        assert security_writes(d.sim, BOOK_UID) == []
        assert (d.sim.tags[0].afi, d.sim.tags[0].eas) == (AFI_ON_LOAN, False)
        # a value the standard assigns to nothing is bad data from the field; the others are refusals by rule
        assert d.adapter.diagnostics()["malformed"] == ({reason: 1} if reason == "unknown_usage" else {})


async def test_an_item_not_for_circulation_is_still_returned_and_secured(tmp_path: Path) -> None:
    """ "The patron must not be able to checkout these items (but may do a checkin)" (DS/INF 163)."""
    async with desk(tmp_path, "return") as d:
        tag = book(Usage.NOT_CIRCULATING)
        tag.afi, tag.eas = AFI_ON_LOAN, False
        d.sim.tags.append(tag)
        await until(lambda: len(d.out) == 1 and len(d.sim.outputs) == 1, "the return and its beep")
        assert (d.out[0].entity_type, values(d.out[0])["item"]) == ("LibraryReturn", "30001234")
        assert (d.sim.tags[0].afi, d.sim.tags[0].eas) == (AFI_SECURED, True)
        assert d.sim.outputs == [ACCEPTED_BEEP]


async def test_a_childs_rfid_card_checks_in_at_a_nursery_door_as_a_token(tmp_path: Path) -> None:
    async with desk(tmp_path, "attendance") as d:
        d.sim.tags.append(card(danish_card()))
        await until(lambda: len(d.out) == 2 and len(d.sim.outputs) == 1, "the check-in and its beep")
        event, state = d.out
        assert (event.entity_type, values(event)["action"]) == ("AttendanceEvent", "checkIn")
        assert values(event)["child"].startswith("pz1:") and values(state)["child"].startswith("pz1:")
        assert CARD not in str([values(event), values(state), state.entity_id])
        assert security_writes(d.sim, CARD_UID) == []

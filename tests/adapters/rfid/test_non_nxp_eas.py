"""EAS is NXP's custom command: sent only to NXP tags; a tag of another maker is secured by its AFI alone.

Regression (review s20, non_nxp.py): every tag was sent NXP's EAS commands (manufacturer code 0x04).
ISO 15693 has a tag of another maker (TI: UID E0 07 …) ignore a custom command carrying another
code, so the reader answered 0x01 (no transponder): a return of a TI-tagged book beeped refused,
putting it back failed for ever, and `PadTag.eas` read False where its docstring promises None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.feig import CMD_ISO_CUSTOM, has_nxp_eas, req_set_eas
from adapters.rfid.pad import AFI_ON_LOAN, AFI_SECURED, Security, SerialPad
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread
from tests.adapters.scanner.test_adapter import make, until

NXP = bytes.fromhex("E004010000000001")  # as the reader reports a UID: MSB first, E0 then the maker
TI = bytes.fromhex("E007000012345678")
ACCEPTED_BEEP = bytes((0x01, 2, 1, 1, 0, 1, 2, 1, 0, 10))  # beeper 100 ms, green LED


def book(uid: bytes, item: str) -> SimTag:
    memory = bytearray(encode_danish(DanishTag(primary_item_id=item, country="JP", isil="1000001")))
    return SimTag(uid=uid, memory=memory, afi=AFI_ON_LOAN, eas=False)


def custom_requests(sim: FeigSim) -> list[bytes]:
    return [r for r in sim.requests if r[2] == CMD_ISO_CUSTOM]


@pytest.mark.parametrize(
    ("uid", "nxp"),
    [
        ("E004010000000001", True),
        ("E0040000DEADBEEF", True),
        ("E007000012345678", False),  # Texas Instruments
        ("E016000012345678", False),  # EM Microelectronic
        ("E002000012345678", False),  # ST
        ("0104000000000000E0", False),  # not 8 bytes
        ("01000000000004E0", False),  # LSB first, as on air: the reader does not report it so
    ],
)
def test_the_maker_is_the_uids_second_byte_as_the_reader_reports_it(uid: str, nxp: bool) -> None:
    assert has_nxp_eas(bytes.fromhex(uid)) is nxp


def test_the_stand_in_keeps_iso_15693s_rule() -> None:
    # the tests below can fail for the right reason only if the stand-in ignores EAS to a TI tag
    sim = FeigSim(tags=[book(TI, "40000007")])
    reply = sim.answer(req_set_eas(TI, True, 0))
    assert reply is not None and reply[3] == 0x01


@pytest.fixture
def pad(tmp_path: Path) -> Iterator[tuple[FeigSim, str]]:
    pair = PtyPair(tmp_path)
    sim = FeigSim(tags=[book(NXP, "40000001"), book(TI, "40000007")])
    thread = SimThread(sim, pair.b)
    try:
        yield sim, pair.a
    finally:
        thread.stop()
        pair.close()


async def test_another_makers_tag_reads_eas_none_without_a_custom_command(pad: tuple[FeigSim, str]) -> None:
    sim, path = pad
    reader = SerialPad(path)
    try:
        ti = await reader.read_tag(TI)
        assert custom_requests(sim) == []
        nxp = await reader.read_tag(NXP)
    finally:
        reader.close()
    assert (ti.item_id, ti.eas, ti.afi) == ("40000007", None, AFI_ON_LOAN)
    assert (nxp.item_id, nxp.eas) == ("40000001", False)
    assert [r[3] for r in custom_requests(sim)] == [0xA5]  # EAS Alarm, to the NXP tag only


async def test_another_makers_tag_is_secured_and_released_by_its_afi_alone(pad: tuple[FeigSim, str]) -> None:
    sim, path = pad
    reader = SerialPad(path)
    try:
        await reader.set_security(TI, Security.SECURED)
        assert sim.tags[1].afi == AFI_SECURED
        await reader.set_security(TI, Security.RELEASED)
        assert sim.tags[1].afi == AFI_ON_LOAN
        assert custom_requests(sim) == []
        await reader.set_security(NXP, Security.SECURED)  # an NXP tag still gets its EAS bit
    finally:
        reader.close()
    assert (sim.tags[0].afi, sim.tags[0].eas) == (AFI_SECURED, True)


async def test_a_ti_tagged_book_returned_on_a_pad_is_secured_and_beeps_accepted(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    sim = FeigSim()
    thread = SimThread(sim, pair.b)
    adapter, out, emit = make(
        tmp_path,
        {
            "stations": [{"id": "ret", "purpose": "return"}],
            "pads": [{"name": "pad", "station": "ret", "port": pair.a, "poll_ms": 50}],
        },
    )
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: any(adapter.connected.values()), "pad online")
        sim.tags.append(book(TI, "40000007"))
        await until(lambda: len(sim.outputs) >= 1, "the beep")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()
    assert [r.entity_type for r in out] == ["LibraryReturn"]
    assert sim.outputs[-1] == ACCEPTED_BEEP
    assert sim.tags[0].afi == AFI_SECURED
    assert not adapter.pad_errors

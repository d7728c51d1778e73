"""The FEIG HF pad over a socat pty pair against a stand-in that speaks the manual's protocol."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.feig import (
    FeigFrameError,
    FeigResponse,
    FrameReader,
    crc16_feig,
    encode_request,
    parse_blocks,
    parse_inventory,
    req_inventory,
)
from adapters.rfid.pad import AFI_ON_LOAN, AFI_SECURED, Security, SerialPad
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, SimThread


def test_crc_check_value() -> None:
    # CRC-16/MCRF4XX check value (reflected 0x8408, init FFFF, no final XOR)
    assert crc16_feig(b"123456789") == 0x6F91


def test_inventory_request_bytes() -> None:
    frame = req_inventory(255)
    assert frame[:5] == bytes((0x07, 0xFF, 0xB0, 0x01, 0x00))
    assert crc16_feig(frame[:-2]) == frame[-2] | frame[-1] << 8


def test_frame_reader_split_and_bad_crc() -> None:
    body = bytes((0x06 + 1, 0x00, 0xB0, 0x01)) + b"\x00"
    c = crc16_feig(body)
    frame = body + bytes((c & 0xFF, c >> 8))
    r = FrameReader()
    assert r.feed(frame[:3]) == []
    assert r.feed(frame[3:]) == [FeigResponse(com_adr=0, control=0xB0, status=0x01, data=b"\x00")]
    bad = frame[:-1] + bytes((frame[-1] ^ 1,))
    with pytest.raises(FeigFrameError) as e:
        r.feed(bad)
    assert str(e.value) == f"rfid feig reader: CRC mismatch, expected 0x{c:04X}, got 0x{(c ^ 0x100):04X}; check wiring"
    with pytest.raises(FeigFrameError, match="advanced protocol frame"):
        FrameReader().feed(b"\x02\x00\x10")


def test_inventory_reply_length_checked() -> None:
    with pytest.raises(FeigFrameError, match="DATA-SETS"):
        parse_inventory(FeigResponse(com_adr=0, control=0xB0, status=0, data=b"\x02" + bytes(10)))
    with pytest.raises(FeigFrameError, match="status not OK, got 0x83"):
        parse_blocks(FeigResponse(com_adr=0, control=0xB0, status=0x83, data=b""))


def _tag(n: int, item: str) -> SimTag:
    memory = bytearray(encode_danish(DanishTag(primary_item_id=item, country="JP", isil="1000001")))
    return SimTag(uid=bytes((0xE0, 0x04, 0x01, 0, 0, 0, 0, n)), memory=memory)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[FeigSim, str]]:
    pair = PtyPair(tmp_path)
    s = FeigSim(tags=[_tag(i, f"1000{i:04d}") for i in range(20)])
    thread = SimThread(s, pair.b)
    try:
        yield s, pair.a
    finally:
        thread.stop()
        pair.close()


async def test_twenty_tags_read_and_decoded(sim: tuple[FeigSim, str]) -> None:
    s, path = sim
    pad = SerialPad(path)
    try:
        t0 = time.perf_counter()
        tags = await pad.read_all()
        elapsed = time.perf_counter() - t0
    finally:
        pad.close()
    assert [t.item_id for t in tags] == [f"1000{i:04d}" for i in range(20)]
    assert {t.owner for t in tags} == {"JP-1000001"}
    assert all(t.data_model == "iso28560-3" and t.afi == AFI_SECURED and t.eas for t in tags)
    # the 20 tags came in three inventory frames (8 + 8 + 4, STATUS 0x94 twice)
    assert sum(1 for r in s.requests if r[3:5] == b"\x01\x80") == 2
    assert s.dropped == 0
    assert elapsed < 5


async def test_security_set_and_read_back(sim: tuple[FeigSim, str]) -> None:
    s, path = sim
    pad = SerialPad(path)
    try:
        uid = s.tags[3].uid
        await pad.set_security(uid, Security.RELEASED)
        tag = await pad.read_tag(uid)
        assert (tag.afi, tag.eas) == (AFI_ON_LOAN, False)
        await pad.set_security(uid, Security.SECURED)
        tag = await pad.read_tag(uid)
        assert (tag.afi, tag.eas) == (AFI_SECURED, True)
        await pad.beep(ok=False)
        assert s.outputs[-1] == bytes((0x01, 2, 1, 1, 0, 5, 3, 1, 0, 10))
    finally:
        pad.close()


async def test_tag_left_the_pad_is_an_error_not_a_hang(sim: tuple[FeigSim, str]) -> None:
    s, path = sim
    pad = SerialPad(path)
    try:
        with pytest.raises(FeigFrameError, match="status not OK, got 0x01"):
            await pad.read_tag(bytes(8))
        s.tags[0].memory[5] ^= 0xFF  # a damaged tag: reported with the codec's code, not dropped
        tag = await pad.read_tag(s.tags[0].uid)
        assert (tag.item_id, tag.error) == (None, "rfid_crc_mismatch")
        # an unknown control byte gets STATUS 0x80 from the stand-in
        resp = await pad.call(encode_request(255, 0x55))
        assert resp.status == 0x80
    finally:
        pad.close()

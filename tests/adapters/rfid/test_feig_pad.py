"""The FEIG HF pad over a socat pty pair against a stand-in that speaks the manual's protocol."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.rfid import DanishTag, encode_danish
from adapters.rfid.feig import (
    FeigAdvancedFrame,
    FeigCrcError,
    FeigFrameError,
    FeigLengthError,
    FeigResponse,
    FeigStatusError,
    FeigTagStatus,
    FrameReader,
    check_ok,
    crc16_feig,
    encode_request,
    parse_blocks,
    parse_inventory,
    parse_system_info,
    req_inventory,
    req_system_info,
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


def _reply(status: int, data: bytes = b"", *, com_adr: int = 0, control: int = 0xB0) -> bytes:
    body = bytes((len(data) + 6, com_adr, control, status)) + data
    c = crc16_feig(body)
    return body + bytes((c & 0xFF, c >> 8))


def _drain(reader: FrameReader) -> list[FeigResponse | str]:
    """Frames, and the text of each error, in stream order until no whole frame is left."""
    out: list[FeigResponse | str] = []
    while True:
        try:
            frame = reader.next()
        except FeigFrameError as exc:
            out.append(str(exc))
            continue
        if frame is None:
            return out
        out.append(frame)


def test_frame_reader_split_and_bad_crc() -> None:
    frame = _reply(0x01, b"\x00")
    c = crc16_feig(frame[:-2])
    r = FrameReader()
    r.feed(frame[:3])
    assert (r.next(), r.pending) == (None, 3)
    r.feed(frame[3:])
    assert r.next() == FeigResponse(com_adr=0, control=0xB0, status=0x01, data=b"\x00")
    assert (r.next(), r.pending) == (None, 0)
    r.feed(frame[:-1] + bytes((frame[-1] ^ 1,)))
    with pytest.raises(FeigCrcError) as e:
        r.next()
    assert str(e.value) == (
        f"rfid feig reader: CRC mismatch in a 7-byte frame, expected 0x{c:04X}, got 0x{(c ^ 0x100):04X}; "
        "the frame is dropped; check the cable, its shield and the baud rate"
    )
    assert (e.value.code, e.value.params["expected"], e.value.params["got"]) == ("rfid_reader_crc", c, c ^ 0x100)
    assert r.pending == 0


def test_good_frame_before_a_bad_crc_frame_in_one_read_is_kept() -> None:
    """Regression: `feed(good + bad)` raised for the bad frame and lost the good one, while feeding them in
    two reads returned it; a pad's answer (a book's check-in) was lost to the next frame's noise."""
    good, other = _reply(0x00, b"\x01"), _reply(0x00, b"\x02")
    bad = bytearray(_reply(0x00, b"\x03"))
    bad[4] ^= 0x40
    crc_text = f"rfid feig reader: CRC mismatch in a 7-byte frame, expected 0x{crc16_feig(bytes(bad[:-2])):04X}, got 0x{bad[-2] | bad[-1] << 8:04X}; the frame is dropped; check the cable, its shield and the baud rate"
    expected = [
        FeigResponse(com_adr=0, control=0xB0, status=0, data=b"\x01"),
        crc_text,
        FeigResponse(com_adr=0, control=0xB0, status=0, data=b"\x02"),
    ]
    whole = FrameReader()
    whole.feed(good + bad + other)
    assert _drain(whole) == expected
    apart = FrameReader()
    got: list[FeigResponse | str] = []
    for part in (good, bytes(bad), other):
        apart.feed(part)
        got += _drain(apart)
    assert got == expected


def test_noise_byte_before_a_good_frame_in_one_read_is_skipped_alone() -> None:
    """A LENGTH byte below 6 used to clear the whole buffer, and with it the good frame read with it."""
    r = FrameReader()
    r.feed(b"\x03" + _reply(0x00) + b"\x02" + _reply(0x94))
    assert _drain(r) == [
        "rfid feig reader: frame length must be 6..255, got 3; line noise or a wrong baud rate; the byte is skipped",
        FeigResponse(com_adr=0, control=0xB0, status=0x00, data=b""),
        "rfid feig reader: advanced protocol frame (STX), got 0x02; set the reader to the standard protocol",
        FeigResponse(com_adr=0, control=0xB0, status=0x94, data=b""),
    ]
    r.feed(b"\x05")
    with pytest.raises(FeigLengthError) as e:
        r.next()
    assert (e.value.code, e.value.params["length"]) == ("rfid_reader_length", 5)
    r.feed(b"\x02")
    with pytest.raises(FeigAdvancedFrame) as adv:
        r.next()
    assert adv.value.code == "rfid_reader_advanced_protocol"


def test_inventory_reply_length_checked() -> None:
    with pytest.raises(FeigFrameError, match="DATA-SETS"):
        parse_inventory(FeigResponse(com_adr=0, control=0xB0, status=0, data=b"\x02" + bytes(10)))
    with pytest.raises(FeigFrameError, match="status not OK, got 0x83"):
        parse_blocks(FeigResponse(com_adr=0, control=0xB0, status=0x83, data=b""))


def _resp(status: int, data: bytes = b"") -> FeigResponse:
    return FeigResponse(com_adr=0, control=0xB0, status=status, data=data)


def test_reply_status_and_length_errors_read_as_a_technician_sees_them() -> None:
    assert parse_inventory(_resp(0x01)) == ([], False)  # no transponder on the pad: not an error
    with pytest.raises(FeigFrameError) as e:
        parse_system_info(_resp(0x01))
    assert str(e.value) == "rfid feig reader: reader status not OK, got 0x01; see the status table in the manual"
    with pytest.raises(FeigFrameError) as e:
        parse_blocks(_resp(0x95, b"\x10"))
    assert str(e.value) == "rfid feig reader: tag answered with an ISO 15693 error, got 0x10"
    with pytest.raises(FeigFrameError, match="status not OK, got 0x95"):
        check_ok(_resp(0x95))  # ISO error without its ISO-ERROR byte
    with pytest.raises(FeigFrameError) as e:
        parse_blocks(_resp(0x00, b"\x01"))
    assert str(e.value) == "rfid feig reader: read-blocks reply too short, got 1"
    with pytest.raises(FeigFrameError) as e:
        parse_blocks(_resp(0x00, bytes((2, 4)) + bytes(9)))
    assert str(e.value) == "rfid feig reader: read-blocks reply length does not match DB-N × DB-SIZE, got 11"
    with pytest.raises(FeigFrameError) as e:
        parse_system_info(_resp(0x00, bytes(14)))
    assert str(e.value) == "rfid feig reader: system-information reply must be 13 bytes, got 14"
    with pytest.raises(ValueError, match=r"^rfid feig reader: UID must be 8 bytes, got 7$"):
        req_system_info(bytes(7))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        # the statuses about the transponder: the reader answered, the tag is gone or failed on air
        (0x01, FeigTagStatus),
        (0x02, FeigTagStatus),
        (0x03, FeigTagStatus),
        (0x83, FeigTagStatus),
        (0x84, FeigTagStatus),
        (0x95, FeigTagStatus),
        # the reader refuses the request itself (unknown command, length error, parameter out of range)
        (0x80, FeigStatusError),
        (0x81, FeigStatusError),
        (0x10, FeigStatusError),
    ],
)
def test_a_status_about_the_tag_is_told_from_one_about_the_reader(status: int, error: type[FeigStatusError]) -> None:
    for data in (b"", b"\x10"):
        with pytest.raises(FeigStatusError) as e:
            check_ok(_resp(status, data))
        assert type(e.value) is error
        assert (e.value.status, e.value.params["status"]) == (status, status)
        assert e.value.code == ("rfid_tag_status" if error is FeigTagStatus else "rfid_reader_status")


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


@dataclass
class NoisySim(FeigSim):
    """The stand-in on a noisy line: `before` and `after` go out with every reply in the same write;
    `spoil` flips a bit of the reply itself."""

    before: bytes = b""
    after: bytes = b""
    spoil: bool = False

    def answer(self, frame: bytes) -> bytes | None:
        reply = super().answer(frame)
        if reply is None:
            return None
        if self.spoil:
            reply = reply[:3] + bytes((reply[3] ^ 0x01,)) + reply[4:]
        return self.before + reply + self.after


# a reply-shaped frame whose CRC is off by one bit
_SOUND = _reply(0x00, b"\x01")
CORRUPT = _SOUND[:-1] + bytes((_SOUND[-1] ^ 0x80,))


@pytest.fixture
def noisy(tmp_path: Path) -> Iterator[tuple[NoisySim, str]]:
    pair = PtyPair(tmp_path)
    s = NoisySim(tags=[_tag(i, f"2000{i:04d}") for i in range(3)])
    thread = SimThread(s, pair.b)
    try:
        yield s, pair.a
    finally:
        thread.stop()
        pair.close()


async def test_corrupt_frames_before_each_reply_are_counted_logged_and_skipped(
    noisy: tuple[NoisySim, str], caplog: pytest.LogCaptureFixture
) -> None:
    s, path = noisy
    s.before = CORRUPT + b"\x01"
    pad = SerialPad(path)
    try:
        with caplog.at_level(logging.DEBUG, logger="adapters.rfid.pad"):
            tags = await pad.read_all()
    finally:
        pad.close()
    assert [t.item_id for t in tags] == ["20000000", "20000001", "20000002"]
    n = len(s.requests)
    assert pad.frame_errors == {"rfid_reader_crc": n, "rfid_reader_length": n}
    c = crc16_feig(CORRUPT[:-2])
    assert [r.getMessage() for r in caplog.records if r.name == "adapters.rfid.pad"][:2] == [
        f"rfid pad {path}: frame dropped: rfid feig reader: CRC mismatch in a 7-byte frame, expected 0x{c:04X}, "
        f"got 0x{c ^ 0x8000:04X}; the frame is dropped; check the cable, its shield and the baud rate",
        f"rfid pad {path}: frame dropped: rfid feig reader: frame length must be 6..255, got 1; "
        "line noise or a wrong baud rate; the byte is skipped",
    ]


async def test_corrupt_frame_right_after_the_reply_does_not_cost_the_reply(noisy: tuple[NoisySim, str]) -> None:
    """The pad-level face of the frame-loss bug: reply and a corrupt frame in one read lost the reply."""
    s, path = noisy
    s.after = CORRUPT
    pad = SerialPad(path)
    try:
        tags = await pad.read_all()
        await pad.set_security(s.tags[1].uid, Security.RELEASED)
    finally:
        pad.close()
    assert [t.item_id for t in tags] == ["20000000", "20000001", "20000002"]
    assert (s.tags[1].afi, s.tags[1].eas) == (AFI_ON_LOAN, False)
    assert pad.frame_errors["rfid_reader_crc"] <= len(s.requests)


async def test_only_a_corrupt_reply_is_its_crc_error_not_a_timeout(noisy: tuple[NoisySim, str]) -> None:
    s, path = noisy
    s.spoil = True
    pad = SerialPad(path, timeout_s=0.2)
    try:
        with pytest.raises(FeigCrcError, match=r"^rfid feig reader: CRC mismatch in a \d+-byte frame"):
            await pad.inventory()
    finally:
        pad.close()
    assert pad.frame_errors == {"rfid_reader_crc": 1}


# a sound reply to a Set Output request ([0x72]): what a beep that timed out answers later
LATE_BEEP = _reply(0x00, control=0x72)


async def test_a_late_reply_read_with_the_reply_is_skipped(noisy: tuple[NoisySim, str]) -> None:
    """Regression: a sound reply to another control byte raised "reply to control 0xB0 expected" and cost
    the request; it is a late answer to an earlier request and the pad's reply follows it."""
    s, path = noisy
    s.before = LATE_BEEP
    pad = SerialPad(path)
    try:
        tags = await pad.read_all()
    finally:
        pad.close()
    assert [t.item_id for t in tags] == ["20000000", "20000001", "20000002"]
    assert pad.frame_errors == {"rfid_reader_stale_reply": len(s.requests)}


@dataclass
class SlowSim(FeigSim):
    """The stand-in answering one control byte after `late_s`, when the pad has given up on it: the reader
    is busy meanwhile, so the next request is answered after the late reply, as on a real line."""

    late_control: int = -1
    late_s: float = 0.0

    def answer(self, frame: bytes) -> bytes | None:
        reply = super().answer(frame)
        if frame[2:3] == bytes((self.late_control,)):
            time.sleep(self.late_s)
        return reply


async def test_a_late_reply_to_a_timed_out_request_is_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = PtyPair(tmp_path)
    s = SlowSim(tags=[_tag(1, "30000001")], late_control=0x72, late_s=0.7)
    thread = SimThread(s, pair.b)
    pad = SerialPad(pair.a, timeout_s=0.5)
    try:
        with pytest.raises(FeigFrameError, match=r"^rfid feig reader: no reply within the timeout, got 0.5 s"):
            await pad.beep(ok=True)
        with caplog.at_level(logging.DEBUG, logger="adapters.rfid.pad"):
            uids = await pad.inventory()
    finally:
        pad.close()
        thread.stop()
        pair.close()
    assert uids == [s.tags[0].uid]
    assert pad.frame_errors == {"rfid_reader_stale_reply": 1}
    assert [r.getMessage() for r in caplog.records if r.name == "adapters.rfid.pad"] == [
        f"rfid pad {pair.a}: frame dropped: rfid feig reader: reply to control 0xB0 expected, got 0x72; "
        "a late reply to an earlier request, skipped"
    ]


async def test_a_reader_answering_only_late_replies_has_not_answered(tmp_path: Path) -> None:
    """Skipped late replies do not stand for the reply: when none follows, the request timed out."""

    class Echo(FeigSim):
        def answer(self, frame: bytes) -> bytes | None:
            super().answer(frame)
            return LATE_BEEP

    pair = PtyPair(tmp_path)
    thread = SimThread(Echo(), pair.b)
    pad = SerialPad(pair.a, timeout_s=0.3)
    try:
        with pytest.raises(FeigFrameError) as e:
            await pad.inventory()
    finally:
        pad.close()
        thread.stop()
        pair.close()
    assert str(e.value) == "rfid feig reader: no reply within the timeout, got 0.3 s; check the cable"
    assert pad.frame_errors == {"rfid_reader_stale_reply": 1}

"""FEIG host protocol codec: any split of the line's bytes, corrupted frames among good ones, round trips.

Frames are built here with the stand-in's own table-driven CRC (`feig_sim.crc`), not the codec's, and
requests are answered by the stand-in, which was written from the manual and not from the codec.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rfid.feig import (
    FeigAdvancedFrame,
    FeigCrcError,
    FeigFrameError,
    FeigLengthError,
    FeigResponse,
    FrameReader,
    InventoryTag,
    SystemInfo,
    check_ok,
    crc16_feig,
    encode_request,
    parse_blocks,
    parse_inventory,
    parse_system_info,
    req_eas_alarm,
    req_inventory,
    req_read_blocks,
    req_set_eas,
    req_set_output,
    req_system_info,
    req_write_afi,
)
from tests.adapters.rfid.feig_sim import FeigSim, SimTag, crc

# --- the oracle's side: frames as the manual draws them -----------------------------------------


def reply_frame(com_adr: int, control: int, status: int, data: bytes) -> bytes:
    """LENGTH COM-ADR CONTROL STATUS DATA… CRC16 (low byte first), CRC from the stand-in's table."""
    body = bytes((len(data) + 6, com_adr, control, status)) + data
    c = crc(body)
    return body + bytes((c & 0xFF, c >> 8))


def with_crc(body: bytes) -> bytes:
    c = crc(body)
    return body + bytes((c & 0xFF, c >> 8))


@dataclass(frozen=True)
class Refused:
    """What the reader is expected to raise for one bad frame or byte."""

    error: type[FeigFrameError]
    length: int  # the LENGTH byte (FeigLengthError, FeigCrcError); 2 for STX


Outcome = FeigResponse | Refused

# the status bytes the parsers tell apart, and any other
statuses = st.one_of(st.sampled_from([0x00, 0x01, 0x94, 0x95]), st.integers(0, 255))
responses = st.builds(
    FeigResponse,
    com_adr=st.integers(0, 255),
    control=st.integers(0, 255),
    status=statuses,
    data=st.binary(max_size=40),
)


def sent(resp: FeigResponse) -> bytes:
    return reply_frame(resp.com_adr, resp.control, resp.status, resp.data)


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[bytes, Refused]:
    """A good frame with one byte after LENGTH changed (CRC-16 catches every error burst up to 16 bits)."""
    frame = bytearray(sent(draw(responses)))
    at = draw(st.integers(1, len(frame) - 1))
    frame[at] ^= draw(st.integers(1, 255))
    return bytes(frame), Refused(FeigCrcError, len(frame))


noise = st.integers(0, 5).map(
    lambda n: (bytes((n,)), Refused(FeigAdvancedFrame, 2) if n == 2 else Refused(FeigLengthError, n))
)
good = responses.map(lambda r: (sent(r), r))
# a line where noise strikes: good frames, corrupted frames and stray bytes in any order
line = st.lists(st.one_of(good, corrupted(), noise), max_size=8)


def chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def outcome(exc: FeigFrameError) -> Refused:
    return Refused(type(exc), int(exc.params.get("length", 2)))


def size(o: Outcome) -> int:
    """Bytes of the stream one outcome stands for: a frame, a frame dropped whole, or one stray byte."""
    if isinstance(o, FeigResponse):
        return 6 + len(o.data)
    return o.length if o.error is FeigCrcError else 1


def decode(parts: list[bytes]) -> tuple[list[Outcome], list[str], int]:
    """Outcomes, error texts and bytes left pending after feeding `parts` one by one, draining after each."""
    reader = FrameReader()
    out: list[Outcome] = []
    texts: list[str] = []
    for part in parts:
        reader.feed(part)
        for _ in range(reader.pending + 1):  # every outcome takes at least one byte
            try:
                frame = reader.next()
            except FeigFrameError as exc:
                out.append(outcome(exc))
                texts.append(str(exc))
                continue
            if frame is None:
                break
            out.append(frame)
        else:
            pytest.fail("the reader gave more outcomes than it was fed bytes")
    return out, texts, reader.pending


# --- framing ------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=12))
def test_arbitrary_bytes_only_raise_frame_errors_and_every_byte_is_accounted_for(data: bytes, cuts: list[int]) -> None:
    got, texts, pending = decode(chunks(data, cuts))  # anything but FeigFrameError escapes and fails
    assert all(t.startswith("rfid feig reader: ") for t in texts)
    used = sum(size(o) for o in got)
    assert used + pending == len(data)
    if pending:  # what is held is the head of one frame not yet whole, never a byte that cannot start one
        length = data[-pending]
        assert length >= 6 and pending < length


@settings(max_examples=200)
@given(st.lists(st.one_of(line.map(lambda items: b"".join(b for b, _ in items)), st.binary(max_size=20)), max_size=4))
def test_any_split_gives_the_same_frames_and_errors(pieces: list[bytes]) -> None:
    stream = b"".join(pieces)
    assert decode(pieces) == decode([stream]) == decode([bytes((b,)) for b in stream])


@settings(max_examples=200)
@given(st.lists(good, min_size=1, max_size=8), st.lists(st.integers(0, 400), max_size=12))
def test_valid_frames_come_out_whole_and_in_order_whatever_the_split(
    items: list[tuple[bytes, FeigResponse]], cuts: list[int]
) -> None:
    stream = b"".join(b for b, _ in items)
    assert decode(chunks(stream, cuts)) == ([r for _, r in items], [], 0)


@settings(max_examples=200)
@given(
    st.lists(good, max_size=4),
    st.lists(st.one_of(corrupted(), noise), min_size=1, max_size=3),
    st.lists(good, max_size=4),
    st.lists(st.integers(0, 600), max_size=12),
)
def test_good_frames_around_corrupted_ones_are_all_delivered_whatever_the_split(
    before: list[tuple[bytes, FeigResponse]],
    bad: list[tuple[bytes, Refused]],
    after: list[tuple[bytes, FeigResponse]],
    cuts: list[int],
) -> None:
    items: list[tuple[bytes, Outcome]] = [*before, *bad, *after]
    stream = b"".join(b for b, _ in items)
    got, _, pending = decode(chunks(stream, cuts))
    assert (got, pending) == ([o for _, o in items], 0)


@settings(max_examples=200)
@given(line, st.lists(st.integers(0, 600), max_size=12))
def test_a_noisy_line_gives_one_outcome_per_frame_or_stray_byte(
    items: list[tuple[bytes, Outcome]], cuts: list[int]
) -> None:
    stream = b"".join(b for b, _ in items)
    got, _, pending = decode(chunks(stream, cuts))
    assert (got, pending) == ([o for _, o in items], 0)


# --- length and CRC boundaries ------------------------------------------------------------------


@pytest.mark.parametrize("length", range(6))
def test_a_length_below_6_is_refused_even_with_a_valid_crc(length: int) -> None:
    # LENGTH 4 and 5 with a matching CRC are whole frames by their own account; no reply is that short
    head = bytes((length, 0x00, 0xB0))[: max(length - 2, 1)]
    reader = FrameReader()
    reader.feed(with_crc(head) if length >= 3 else head)
    with pytest.raises(FeigAdvancedFrame if length == 2 else FeigLengthError) as e:
        reader.next()
    assert e.value.params.get("length", 2) == length
    assert reader.pending == len(with_crc(head) if length >= 3 else head) - 1  # only that byte went


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_length_6_is_a_status_only_reply(com_adr: int, control: int, status: int) -> None:
    reader = FrameReader()
    reader.feed(reply_frame(com_adr, control, status, b""))
    assert reader.next() == FeigResponse(com_adr=com_adr, control=control, status=status, data=b"")


@settings(max_examples=50)
@given(st.binary(min_size=249, max_size=249))
def test_length_255_the_longest_frame(data: bytes) -> None:
    frame = reply_frame(1, 0xB0, 0x00, data)
    assert frame[0] == 255
    reader = FrameReader()
    reader.feed(frame[:-1])
    assert (reader.next(), reader.pending) == (None, 254)
    reader.feed(frame[-1:])
    assert reader.next() == FeigResponse(com_adr=1, control=0xB0, status=0x00, data=data)


@settings(max_examples=200)
@given(responses, st.integers(0, 7), st.sampled_from([-2, -1]))
def test_each_bit_of_the_crc_is_checked(resp: FeigResponse, bit: int, at: int) -> None:
    frame = bytearray(sent(resp))
    c = frame[-2] | frame[-1] << 8
    frame[at] ^= 1 << bit
    reader = FrameReader()
    reader.feed(bytes(frame))
    with pytest.raises(FeigCrcError) as e:
        reader.next()
    assert e.value.params == {
        "where": "rfid feig reader",
        "length": len(frame),
        "expected": c,
        "got": frame[-2] | frame[-1] << 8,
    }


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_the_codec_crc_agrees_with_the_stand_ins_table(data: bytes) -> None:
    assert crc16_feig(data) == crc(data)


# --- requests and replies -----------------------------------------------------------------------


@settings(max_examples=200)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=249))
def test_a_request_frame_read_back_is_the_same_frame(com_adr: int, control: int, status: int, data: bytes) -> None:
    # requests and replies share the framing; a reply's STATUS is the byte a request's DATA starts with
    frame = encode_request(com_adr, control, bytes((status,)) + data)
    assert frame[0] == len(frame) and crc(frame[:-2]) == frame[-2] | frame[-1] << 8
    reader = FrameReader()
    reader.feed(frame)
    assert reader.next() == FeigResponse(com_adr=com_adr, control=control, status=status, data=data)


def test_a_request_longer_than_255_bytes_cannot_be_encoded() -> None:
    assert len(encode_request(255, 0xB0, bytes(250))) == 255
    with pytest.raises(ValueError, match="range"):
        encode_request(255, 0xB0, bytes(251))


uids = st.binary(min_size=8, max_size=8)
nxp_uids = st.binary(min_size=6, max_size=6).map(lambda rest: b"\xe0\x04" + rest)  # MSB first: E0, maker 0x04
inventory_tags = st.builds(InventoryTag, tr_type=st.integers(0, 255), dsfid=st.integers(0, 255), uid=uids)


@settings(max_examples=200)
@given(st.lists(inventory_tags, max_size=24), st.booleans())
def test_inventory_reply_round_trip(tags: list[InventoryTag], more: bool) -> None:
    data = bytes((len(tags),)) + b"".join(bytes((t.tr_type, t.dsfid)) + t.uid for t in tags)
    status = 0x94 if more else 0x00
    assert parse_inventory(FeigResponse(com_adr=0, control=0xB0, status=status, data=data)) == (tags, more)


@settings(max_examples=200)
@given(st.integers(1, 8), st.data())
def test_read_blocks_reply_round_trip(size: int, draw: st.DataObject) -> None:
    blocks = draw.draw(st.lists(st.tuples(st.integers(0, 255), st.binary(min_size=size, max_size=size)), max_size=20))
    data = bytes((len(blocks), size)) + b"".join(bytes((sec,)) + block for sec, block in blocks)
    resp = FeigResponse(com_adr=0, control=0xB0, status=0x00, data=data)
    assert parse_blocks(resp) == (b"".join(b for _, b in blocks), bytes(s for s, _ in blocks))


system_infos = st.builds(
    SystemInfo,
    dsfid=st.integers(0, 255),
    uid=uids,
    afi=st.integers(0, 255),
    block_count=st.integers(1, 256),
    block_size=st.integers(1, 32),  # five bits in ISO 15693's memory size
    ic_ref=st.integers(0, 255),
)


@settings(max_examples=200)
@given(system_infos, st.integers(0, 7))
def test_system_information_reply_round_trip(info: SystemInfo, rfu: int) -> None:
    """MEM-SIZE MSB first: block size − 1 with three RFU bits above it, then number of blocks − 1."""
    mem_size = bytes((rfu << 5 | info.block_size - 1, info.block_count - 1))
    data = bytes((info.dsfid,)) + info.uid + bytes((info.afi,)) + mem_size + bytes((info.ic_ref,))
    assert parse_system_info(FeigResponse(com_adr=0, control=0xB0, status=0x00, data=data)) == info


def test_system_information_of_an_icode_slix_reads_28_blocks_of_4_bytes() -> None:
    """Regression: MEM-SIZE was read number of blocks first, so a SLIX (28 × 4 bytes, MEM-SIZE 03 1B) came out
    as 4 blocks of 28 bytes and the pad read one block of it. The order is FEIG's SDK's (ID ISC.SDK V04.06.10,
    FEDM_ISCReader.cpp, Set_0xB0_0x2B_IsoTableData: `m_ucBlockSize = (ucData[10] & 0x1F) + 1`)."""
    uid = bytes.fromhex("E004010012345678")
    data = bytes((0x00,)) + uid + bytes((0x07, 0x03, 0x1B, 0x01))
    info = parse_system_info(FeigResponse(com_adr=0, control=0xB0, status=0x00, data=data))
    assert (info.block_size, info.block_count, info.afi, info.uid) == (4, 28, 0x07, uid)


@settings(max_examples=200)
@given(st.binary(max_size=40).filter(lambda d: len(d) != 13))
def test_system_information_reply_of_any_other_length_is_refused(data: bytes) -> None:
    with pytest.raises(FeigFrameError) as e:
        parse_system_info(FeigResponse(com_adr=0, control=0xB0, status=0x00, data=data))
    assert str(e.value) == f"rfid feig reader: system-information reply must be 13 bytes, got {len(data)}"


@pytest.mark.parametrize("extra", [-1, 1])
def test_blocks_and_inventory_replies_one_byte_off_are_refused(extra: int) -> None:
    blocks = bytes((2, 4)) + bytes(10 + extra)
    with pytest.raises(FeigFrameError, match=r"does not match DB-N × DB-SIZE, got \d+$"):
        parse_blocks(FeigResponse(com_adr=0, control=0xB0, status=0x00, data=blocks))
    inventory = bytes((1,)) + bytes(10 + extra)
    with pytest.raises(FeigFrameError, match=r"does not match DATA-SETS, got \d+$"):
        parse_inventory(FeigResponse(com_adr=0, control=0xB0, status=0x00, data=inventory))


@settings(max_examples=300)
@given(responses)
def test_any_reply_parses_or_raises_a_frame_error(resp: FeigResponse) -> None:
    texts: list[str] = []
    for parse in (parse_inventory, parse_blocks, parse_system_info, check_ok):
        try:
            parse(resp)
        except FeigFrameError as exc:  # anything else escapes and fails the test
            texts.append(str(exc))
    assert all(t.startswith("rfid feig reader: ") for t in texts)


@settings(max_examples=200)
@given(responses.filter(lambda r: r.status not in (0x00, 0x94)))
def test_a_status_other_than_ok_or_more_is_refused(resp: FeigResponse) -> None:
    for parse in (parse_blocks, parse_system_info, check_ok):
        with pytest.raises(FeigFrameError, match=r"^rfid feig reader: (reader status not OK|tag answered with an ISO)"):
            parse(resp)
    if resp.status == 0x01:  # no transponder: an empty pad, not an error, for an inventory only
        assert parse_inventory(resp) == ([], False)
    else:
        with pytest.raises(FeigFrameError):
            parse_inventory(resp)


# --- requests answered by the stand-in ----------------------------------------------------------


@st.composite
def sim_tags(draw: st.DrawFn) -> list[SimTag]:
    ids = draw(st.lists(st.one_of(uids, nxp_uids), unique=True, max_size=10))
    out = []
    for uid in ids:
        size, nblocks = draw(st.sampled_from([4, 8])), draw(st.integers(1, 16))
        memory = draw(st.binary(min_size=size * nblocks, max_size=size * nblocks))
        out.append(
            SimTag(
                uid=uid,
                memory=bytearray(memory),
                afi=draw(st.integers(0, 255)),
                eas=draw(st.booleans()),
                block_size=size,
                dsfid=draw(st.integers(0, 255)),
            )
        )
    return out


def ask(sim: FeigSim, request: bytes) -> FeigResponse:
    reply = sim.answer(request)
    assert reply is not None
    reader = FrameReader()
    reader.feed(reply)
    frame = reader.next()
    assert frame is not None and reader.pending == 0 and frame.control == request[2]
    return frame


@settings(max_examples=60)
@given(sim_tags(), st.integers(1, 8), st.data())
def test_requests_answered_by_the_stand_in_parse_to_its_tags(
    tags: list[SimTag], per_frame: int, draw: st.DataObject
) -> None:
    sim = FeigSim(tags=tags, max_sets=per_frame)
    found: list[bytes] = []
    more = False
    for _ in range(len(tags) + 1):  # at least one tag a frame while MORE is set
        got, more = parse_inventory(ask(sim, req_inventory(more=more)))
        found += [t.uid for t in got]
        if not more:
            break
    else:
        pytest.fail("the reader said MORE after every tag was reported")
    assert found == [t.uid for t in tags]
    for tag in tags:
        nblocks = len(tag.memory) // tag.block_size
        info = parse_system_info(ask(sim, req_system_info(tag.uid)))
        assert info == SystemInfo(
            dsfid=tag.dsfid, uid=tag.uid, afi=tag.afi, block_count=nblocks, block_size=tag.block_size, ic_ref=0x01
        )
        first = draw.draw(st.integers(0, nblocks - 1))
        count = draw.draw(st.integers(1, nblocks - first))
        memory, sec = parse_blocks(ask(sim, req_read_blocks(tag.uid, first, count)))
        assert memory == tag.memory[first * tag.block_size : (first + count) * tag.block_size]
        assert sec == bytes(count)
        with pytest.raises(FeigFrameError, match=r"ISO 15693 error, got 0x10$"):
            parse_blocks(ask(sim, req_read_blocks(tag.uid, first, nblocks - first + 1)))
        afi, eas = draw.draw(st.integers(0, 255)), draw.draw(st.booleans())
        check_ok(ask(sim, req_write_afi(tag.uid, afi)))
        if tag.uid[1] != 0x04:  # another maker's tag ignores NXP's custom commands: the reader finds no transponder
            was = tag.eas
            assert ask(sim, req_set_eas(tag.uid, eas)).status == 0x01
            assert (tag.afi, tag.eas) == (afi, was)
            assert ask(sim, req_eas_alarm(tag.uid)).status == 0x01
            continue
        check_ok(ask(sim, req_set_eas(tag.uid, eas)))
        assert (tag.afi, tag.eas) == (afi, eas)
        assert ask(sim, req_eas_alarm(tag.uid)).status == (0x00 if eas else 0x01)
    outputs = draw.draw(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 255), st.integers(0, 0xFFFF)), max_size=4))
    check_ok(ask(sim, req_set_output(outputs)))
    assert sim.outputs[-1] == bytes((0x01, len(outputs))) + b"".join(
        bytes((n, s)) + t.to_bytes(2, "big") for n, s, t in outputs
    )
    assert sim.dropped == 0

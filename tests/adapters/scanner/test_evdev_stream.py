"""The evdev `input_event` stream through a real pipe: partial records, idle gap, SYN_DROPPED, no grab on a pipe."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.evdev_stream import (
    EV_KEY,
    EV_SYN,
    EVENT_SIZE,
    SYN_DROPPED,
    EventParser,
    InputEvent,
    WedgeAssembler,
    grab,
    pack_event,
)
from adapters.scanner.keymap import Layout, Terminator, WedgeConfig, encode_scan

JP = WedgeConfig(layout=Layout.JP106, terminator=Terminator.ENTER)


def recording(text: str, config: WedgeConfig, start_us: int, step_us: int = 2000, *, syn: bool = True) -> bytes:
    """What the kernel writes for a scanner typing `text`: EV_KEY events each followed by SYN_REPORT."""
    out = b""
    t = start_us
    for code, value in encode_scan(text, config):
        out += pack_event(t, EV_KEY, code, value)
        if syn:
            out += pack_event(t, EV_SYN, 0, 0)
        t += step_us
    return out


def scans_of(data: bytes, assembler: WedgeAssembler, chunk: int) -> list[str | None]:
    parser = EventParser()
    out: list[str | None] = []
    for i in range(0, len(data), chunk):
        for ev in parser.feed(data[i : i + chunk]):
            out += [r.text for r in assembler.feed(ev)]
    return out


def test_event_size_is_the_native_abi() -> None:
    assert EVENT_SIZE == 24  # 64-bit hosts: two longs, two u16, one s32


def test_scans_read_through_a_pipe_without_grab() -> None:
    data = recording("A37859+B", JP, 1_000_000) + recording("9784344405042", JP, 2_000_000)
    r, w = os.pipe()
    try:
        assert grab(r) is False  # a pipe is no input device: read as is
        os.write(w, data)
        os.close(w)
        got = b""
        while chunk := os.read(r, 100):
            got += chunk
    finally:
        os.close(r)
    assert scans_of(got, WedgeAssembler(JP), 7) == ["A37859+B", "9784344405042"]


def test_idle_gap_ends_a_scan_without_terminator() -> None:
    events = recording("A1234B", JP, 0)
    parser = EventParser()
    evs = [e for e in parser.feed(events) if not (e.type == EV_KEY and e.code == 28)]
    asm = WedgeAssembler(JP, idle_gap_ms=50)
    out = [r for e in evs for r in asm.feed(e)]
    assert out == []
    last = [e for e in evs if e.type == EV_KEY][-1].time_us
    assert asm.idle(last + 40_000) == []
    done = asm.idle(last + 60_000)
    assert [(r.text, r.time_us) for r in done] == [("A1234B", last)]
    # the next keystroke after a gap also closes the previous scan
    asm2 = WedgeAssembler(JP, idle_gap_ms=50)
    out2 = [r.text for e in evs for r in asm2.feed(e)]
    out2 += [r.text for r in asm2.feed(InputEvent(time_us=last + 100_000, type=EV_KEY, code=2, value=1))]
    assert out2 == ["A1234B"]


def test_syn_dropped_discards_the_scan_in_progress() -> None:
    evs = list(EventParser().feed(recording("A1234B", JP, 0)))
    asm = WedgeAssembler(JP)
    half = len(evs) // 2
    out = [r for e in evs[:half] for r in asm.feed(e)]
    out += asm.feed(InputEvent(time_us=1, type=EV_SYN, code=SYN_DROPPED, value=0))
    assert [r.error.code for r in out if r.error] == ["keymap_events_dropped"]
    rest = [r.text for e in EventParser().feed(recording("A99B", JP, 10)) for r in asm.feed(e)]
    assert rest == ["A99B"]


def test_partial_record_is_held() -> None:
    p = EventParser()
    one = pack_event(5, EV_KEY, 2, 1)
    assert list(p.feed(one[:10])) == []
    assert p.pending == 10
    assert list(p.feed(one[10:])) == [InputEvent(time_us=5, type=EV_KEY, code=2, value=1)]


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="0123456789-$:/.+ABCD", min_size=1, max_size=20), min_size=1, max_size=5),
    chunk=st.integers(1, 60),
    layout=st.sampled_from(list(Layout)),
)
def test_any_scans_in_any_chunking_come_out_whole(texts: list[str], chunk: int, layout: Layout) -> None:
    cfg = WedgeConfig(layout=layout, terminator=Terminator.ENTER)
    data = b"".join(recording(t, cfg, i * 1_000_000) for i, t in enumerate(texts))
    assert scans_of(data, WedgeAssembler(cfg, idle_gap_ms=100), chunk) == texts


def test_an_error_on_the_last_key_of_a_scan_does_not_swallow_the_next_one_at_the_idle_gap() -> None:
    """A scanner with no terminator (scans end at the idle gap): a key with no character as the last of a
    scan left the decoder dropping with no scan open, so nothing ended the dropping but the next scan's
    idle flush, and that whole next scan (a loan) was lost without a word."""
    first = [e for e in EventParser().feed(recording("A12", JP, 0)) if not (e.type == EV_KEY and e.code == 28)]
    last = [e for e in first if e.type == EV_KEY][-1].time_us
    unknown = InputEvent(time_us=last + 2000, type=EV_KEY, code=183, value=1)  # F13: no character in any layout
    second = [
        e for e in EventParser().feed(recording("A34", JP, last + 500_000)) if not (e.type == EV_KEY and e.code == 28)
    ]
    end = [e for e in second if e.type == EV_KEY][-1].time_us
    asm = WedgeAssembler(JP, idle_gap_ms=50)
    out = [r for e in first for r in asm.feed(e)] + asm.feed(unknown)
    assert [r.error.code for r in out if r.error] == ["keymap_unknown_key"]
    out = asm.idle(last + 100_000)  # the gap after the scan that failed: it ends there
    out += [r for e in second for r in asm.feed(e)] + asm.idle(end + 100_000)
    assert [(r.text, r.error) for r in out] == [("A34", None)]

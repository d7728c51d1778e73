"""Keys between two scans (a terminator held into autorepeat, a stray Tab) never cost the next scan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.codec import KeymapError
from adapters.scanner.evdev_stream import EV_KEY, EV_SYN, EventParser, WedgeAssembler, pack_event
from adapters.scanner.keymap import Layout, Terminator, WedgeConfig, WedgeDecoder, decode_events, encode_scan
from tests.adapters.scanner.test_evdev_stream import recording

# linux/input-event-codes.h
KEY_1, KEY_2, KEY_TAB, KEY_ENTER, KEY_GRAVE = 2, 3, 15, 28, 41
KEY_LEFTCTRL, KEY_LEFTSHIFT, KEY_RIGHTALT, KEY_KPENTER = 29, 42, 100, 96
JP = WedgeConfig(layout=Layout.JP106, terminator=Terminator.ENTER)
LOAN = ["A73100001B", "C000000018C", "C000000026C"]  # a patron card, then two books


def held_enter(text: str) -> list[tuple[int, int]]:
    """`text` typed and its Enter held long enough for the host to autorepeat it."""
    return [*encode_scan(text, JP)[:-1], (KEY_ENTER, 2), (KEY_ENTER, 2), (KEY_ENTER, 0)]


def outcomes(decoder: WedgeDecoder, events: list[tuple[int, int]]) -> list[str]:
    out = []
    for code, value in events:
        try:
            scan = decoder.feed(code, value)
        except KeymapError as exc:
            out.append(f"<{exc.code}>")
        else:
            if scan is not None:
                out.append(scan)
    return out


def test_a_held_enter_ends_its_scan_and_the_next_scan_comes_out() -> None:
    events = held_enter(LOAN[0]) + held_enter(LOAN[1]) + encode_scan(LOAN[2], JP)
    assert decode_events(events, JP) == LOAN  # no error either: decode_events raises at the first


def test_a_held_modifier_between_scans_is_reported_once_and_drops_nothing() -> None:
    ctrl = [(KEY_LEFTCTRL, 1), (KEY_LEFTCTRL, 2), (KEY_LEFTCTRL, 2), (KEY_LEFTCTRL, 0)]
    shift = [(KEY_LEFTSHIFT, 1), (KEY_LEFTSHIFT, 2), (KEY_LEFTSHIFT, 0)]
    events = encode_scan(LOAN[0], JP) + ctrl + shift + encode_scan(LOAN[1], JP)
    assert outcomes(WedgeDecoder(JP), events) == [LOAN[0], "<keymap_unknown_key>", LOAN[1]]


def test_a_tab_after_the_enter_is_reported_and_the_next_scan_comes_out() -> None:
    events = [*encode_scan(LOAN[0], JP), (KEY_TAB, 1), (KEY_TAB, 0), *encode_scan(LOAN[1], JP)]
    assert outcomes(WedgeDecoder(JP), events) == [LOAN[0], "<keymap_unknown_key>", LOAN[1]]


def test_an_error_inside_a_scan_still_drops_that_scan_only() -> None:
    broken = [(KEY_1, 1), (KEY_1, 0), (KEY_GRAVE, 1), (KEY_GRAVE, 0), (KEY_2, 1), (KEY_2, 0), (KEY_ENTER, 1)]
    events = [*broken, (KEY_ENTER, 2), (KEY_ENTER, 0), *encode_scan(LOAN[1], JP)]
    assert outcomes(WedgeDecoder(JP), events) == ["<keymap_unknown_key>", LOAN[1]]


@pytest.mark.parametrize("chunk", [24, 7])
def test_a_held_enter_through_the_event_stream_gives_every_scan_and_no_error(chunk: int) -> None:
    data = recording(LOAN[0], JP, 0)
    for n, text in enumerate(LOAN[1:], start=1):
        # the kernel's record of a held Enter: the press, autorepeats, then the release (dropped from `recording`)
        data += recording(text, JP, n * 1_000_000)[: -2 * 24]
        for t in (n * 1_000_000 + 500_000, n * 1_000_000 + 533_000):
            data += pack_event(t, EV_KEY, KEY_ENTER, 2) + pack_event(t, EV_SYN, 0, 0)
        data += pack_event(n * 1_000_000 + 540_000, EV_KEY, KEY_ENTER, 0)
    assembler, parser = WedgeAssembler(JP, idle_gap_ms=100), EventParser()
    results = [
        r for i in range(0, len(data), chunk) for ev in parser.feed(data[i : i + chunk]) for r in assembler.feed(ev)
    ]
    assert [(r.text, r.error) for r in results] == [(text, None) for text in LOAN]


# What a host can see between two scans: autorepeats of the terminator or of modifiers, modifier
# taps, keys the layout has no character for (a stray Tab, a function key).
BETWEEN = st.lists(
    st.sampled_from(
        [
            [(KEY_ENTER, 2)],
            [(KEY_KPENTER, 2)],
            [(KEY_LEFTSHIFT, 1), (KEY_LEFTSHIFT, 2), (KEY_LEFTSHIFT, 0)],
            [(KEY_RIGHTALT, 1), (KEY_RIGHTALT, 2), (KEY_RIGHTALT, 0)],
            [(KEY_TAB, 1), (KEY_TAB, 0)],
            [(KEY_GRAVE, 1), (KEY_GRAVE, 2), (KEY_GRAVE, 0)],
        ]
    ),
    max_size=3,
)


@settings(max_examples=200)
@given(data=st.data(), terminator=st.sampled_from([Terminator.ENTER, Terminator.ENTER_OR_TAB]))
def test_whatever_comes_between_scans_no_scan_is_lost(data: st.DataObject, terminator: Terminator) -> None:
    config = WedgeConfig(layout=Layout.JP106, terminator=terminator)
    scans = data.draw(st.lists(st.text(alphabet="0123456789ABCD+-", min_size=1, max_size=20), min_size=1, max_size=4))
    events: list[tuple[int, int]] = []
    for scan in scans:
        events += [event for noise in data.draw(BETWEEN) for event in noise]
        events += encode_scan(scan, config)
    got = [out for out in outcomes(WedgeDecoder(config), events) if not out.startswith("<")]
    assert got == scans

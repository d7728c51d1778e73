"""Keyboard-wedge scanners: evdev key events to scans, US and JP106 layouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.codec import KeymapError
from adapters.scanner.keymap import (
    Layout,
    Terminator,
    WedgeConfig,
    WedgeDecoder,
    decode_events,
    encode_scan,
)
from gateway.errors import ConfigError

# linux/input-event-codes.h
KEY_1, KEY_2, KEY_3, KEY_0 = 2, 3, 4, 11
KEY_MINUS, KEY_EQUAL, KEY_TAB, KEY_ENTER = 12, 13, 15, 28
KEY_A, KEY_B = 30, 48
KEY_SEMICOLON, KEY_APOSTROPHE, KEY_GRAVE = 39, 40, 41
KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_LEFTCTRL = 42, 54, 29
KEY_KP7, KEY_KPPLUS, KEY_KPENTER = 71, 78, 96
KEY_RO, KEY_YEN = 89, 124

US = WedgeConfig(layout=Layout.US)
JP = WedgeConfig(layout=Layout.JP106)


def tap(code: int) -> list[tuple[int, int]]:
    return [(code, 1), (code, 0)]


def shifted(code: int, shift: int = KEY_LEFTSHIFT) -> list[tuple[int, int]]:
    return [(shift, 1), (code, 1), (code, 0), (shift, 0)]


def test_us_and_jp106_differ_exactly_on_colon_and_plus() -> None:
    # xkeyboard-config symbols/us(basic): AC10 = semicolon/colon, AE12 = equal/plus
    # xkeyboard-config symbols/jp(106):   AC10 = semicolon/plus,  AC11 = colon/asterisk
    assert encode_scan(":+", US) == shifted(KEY_SEMICOLON) + shifted(KEY_EQUAL) + tap(KEY_ENTER)
    assert encode_scan(":+", JP) == tap(KEY_APOSTROPHE) + shifted(KEY_SEMICOLON) + tap(KEY_ENTER)
    # A scanner left on the US layout, read as JP106: ":" becomes "+" and "+" becomes "~"
    # (casawin support page: with the wrong keyboard setting "+" comes out as "~").
    assert decode_events(encode_scan("A12:34+B", US), JP) == ["A12+34~B"]
    assert decode_events(encode_scan("A12:34+B", JP), JP) == ["A12:34+B"]


def test_jp106_specific_keys() -> None:
    events = tap(KEY_RO) + shifted(KEY_RO) + tap(KEY_YEN) + shifted(KEY_YEN) + tap(KEY_EQUAL) + tap(KEY_ENTER)
    assert decode_events(events, JP) == ["\\_\\|^"]
    assert decode_events(shifted(KEY_0) + tap(KEY_ENTER), JP) == ["~"]


def test_right_shift_and_overlapping_shifts() -> None:
    events = [
        *shifted(KEY_A, KEY_RIGHTSHIFT),
        # overlapping shifts: the left one goes up while the right one is still held
        (KEY_LEFTSHIFT, 1),
        (KEY_RIGHTSHIFT, 1),
        (KEY_LEFTSHIFT, 0),
        (KEY_B, 1),
        (KEY_B, 0),
        # the right shift repeats, then goes up
        (KEY_RIGHTSHIFT, 2),
        (KEY_RIGHTSHIFT, 0),
        (KEY_B, 1),
        (KEY_B, 0),
        *tap(KEY_ENTER),
    ]
    assert decode_events(events, US) == ["ABb"]


def test_keypad_digits_and_enter_tab_terminators() -> None:
    assert decode_events(tap(KEY_KP7) + tap(KEY_KPPLUS) + tap(KEY_KPENTER), US) == ["7+"]
    tab = WedgeConfig(layout=Layout.US, terminator=Terminator.TAB)
    assert decode_events(tap(KEY_1) + tap(KEY_TAB) + tap(KEY_2) + tap(KEY_TAB), tab) == ["1", "2"]
    either = WedgeConfig(terminator=Terminator.ENTER_OR_TAB)
    assert decode_events(tap(KEY_1) + tap(KEY_TAB) + tap(KEY_2) + tap(KEY_ENTER), either) == ["1", "2"]
    assert encode_scan("1", tab) == tap(KEY_1) + tap(KEY_TAB)


def test_enter_is_a_character_error_when_tab_terminates() -> None:
    tab = WedgeConfig(layout=Layout.US, terminator=Terminator.TAB)
    with pytest.raises(KeymapError) as err:
        decode_events(tap(KEY_1) + tap(KEY_ENTER), tab)
    assert err.value.code == "keymap_unknown_key"


def test_lone_terminator_is_ignored() -> None:
    assert decode_events(tap(KEY_ENTER) + tap(KEY_1) + tap(KEY_ENTER), JP) == ["1"]


@pytest.mark.parametrize(
    ("events", "config", "code", "message", "params"),
    [
        (tap(KEY_GRAVE), JP, "keymap_unknown_key",
         "keyboard wedge: key has no character in this layout, got code 41; "
         "check the scanner's keyboard-layout setting against scanner.wedge.layout",
         {"key": 41, "shift": False}),
        (shifted(KEY_KP7), US, "keymap_unknown_key",
         "keyboard wedge: key has no character in this layout with shift, got code 71; "
         "check the scanner's keyboard-layout setting against scanner.wedge.layout",
         {"key": 71, "shift": True}),
        ([(KEY_LEFTCTRL, 1)], US, "keymap_unknown_key",
         "keyboard wedge: key has no character in this layout, got code 29; "
         "check the scanner's keyboard-layout setting against scanner.wedge.layout",
         {"key": 29, "shift": False}),
        ([(KEY_1, 1), (KEY_1, 2)], US, "keymap_autorepeat",
         "keyboard wedge: key held long enough to autorepeat, got code 2 value 2; "
         "the host stalled mid-scan; scan again",
         {"key": 2, "value": 2}),
        ([(KEY_1, 7)], US, "keymap_event_value",
         "keyboard wedge: unknown key event value, got code 2 value 7; pass EV_KEY values 0, 1, 2 only",
         {"key": 2, "value": 7}),
        ([(KEY_LEFTSHIFT, -1)], US, "keymap_event_value",
         "keyboard wedge: unknown key event value, got code 42 value -1; pass EV_KEY values 0, 1, 2 only",
         {"key": 42, "value": -1}),
        (tap(KEY_1) * 3, WedgeConfig(max_length=2), "keymap_too_long",
         "keyboard wedge: no terminator within 2 characters, got 3; "
         "check the scanner's terminator (Enter/Tab) setting",
         {"max_length": 2}),
    ],
)  # fmt: skip
def test_errors(
    events: list[tuple[int, int]], config: WedgeConfig, code: str, message: str, params: dict[str, object]
) -> None:
    with pytest.raises(KeymapError) as err:
        decode_events(events, config)
    assert (err.value.code, str(err.value), err.value.params) == (code, message, params)


def test_after_an_error_the_rest_of_that_scan_is_dropped() -> None:
    decoder = WedgeDecoder(US)
    for code, value in tap(KEY_1):
        assert decoder.feed(code, value) is None
    with pytest.raises(KeymapError):
        decoder.feed(KEY_GRAVE + 100, 1)
    # tail of the broken scan: more keys, an autorepeat, an unknown key - all dropped silently
    for code, value in [*tap(KEY_2), (KEY_3, 2), (KEY_GRAVE + 100, 1), *shifted(KEY_A)]:
        assert decoder.feed(code, value) is None
    assert decoder.feed(KEY_ENTER, 1) is None
    assert decoder.feed(KEY_ENTER, 0) is None
    for code, value in tap(KEY_3):
        decoder.feed(code, value)
    assert decoder.feed(KEY_ENTER, 1) == "3"


def test_unmappable_character_and_bad_config() -> None:
    with pytest.raises(KeymapError) as err:
        encode_scan("12é", JP)
    assert (err.value.code, str(err.value)) == (
        "keymap_unmappable",
        "keyboard wedge: character 3 cannot be typed on jp106, got 'é'",
    )
    with pytest.raises(ConfigError) as cfg:
        WedgeConfig(max_length=0)
    assert cfg.value.errors == ["scanner.wedge.max_length: must be 1..4096, got 0"]


def typable(layout: Layout) -> str:
    chars = [chr(c) for c in range(32, 127)]
    ok = []
    for ch in chars:
        try:
            encode_scan(ch, WedgeConfig(layout=layout))
        except KeymapError:
            continue
        ok.append(ch)
    return "".join(ok)


TYPABLE = {layout: typable(layout) for layout in Layout}


def test_each_layout_types_all_printable_ascii_it_has() -> None:
    # JP106 lacks nothing printable; both reach all 95 printable ASCII characters.
    assert len(TYPABLE[Layout.US]) == 95
    assert len(TYPABLE[Layout.JP106]) == 95


@settings(max_examples=300)
@given(layout=st.sampled_from(Layout), terminator=st.sampled_from(Terminator), data=st.data())
def test_encode_then_decode_round_trips(layout: Layout, terminator: Terminator, data: st.DataObject) -> None:
    config = WedgeConfig(layout=layout, terminator=terminator)
    scans = data.draw(st.lists(st.text(alphabet=TYPABLE[layout], min_size=1, max_size=40), max_size=4))
    events = [event for scan in scans for event in encode_scan(scan, config)]
    assert decode_events(events, config) == scans


@settings(max_examples=300)
@given(
    layout=st.sampled_from(Layout),
    events=st.lists(st.tuples(st.integers(0, 130) | st.integers(), st.integers(-1, 3) | st.integers()), max_size=80),
)
def test_arbitrary_events_raise_only_keymap_errors(layout: Layout, events: list[tuple[int, int]]) -> None:
    decoder = WedgeDecoder(WedgeConfig(layout=layout, max_length=16))
    for code, value in events:
        try:
            scan = decoder.feed(code, value)
        except KeymapError:
            continue
        assert scan is None or 0 < len(scan) <= 16

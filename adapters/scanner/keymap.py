"""Keyboard-wedge scanners: Linux evdev key events (US or JP106 layout) in, one scan per Enter/Tab out.

A USB HID scanner types each character as key presses. The scanner is set up for a host layout;
if ours differs, exactly the characters that sit on different keys come out wrong - for NW-7 that is
`:` and `+` (US shift+`;` is `+` on JP106, US shift+`=` is `~`). Tables follow xkeyboard-config
`symbols/us(basic)` and `symbols/jp(106)`; codes are linux/input-event-codes.h.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn

from gateway.errors import ConfigError

from .codec import KeymapError

__all__ = ["Layout", "Terminator", "WedgeConfig", "WedgeDecoder", "decode_events", "encode_scan"]

KEY_TAB = 15
KEY_ENTER = 28
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_KPENTER = 96
# Held while another key is typed, so a scanner (or a person) may hold one long enough to autorepeat.
_MODIFIERS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT, 29, 97, 56, 100, 125, 126})  # shift, ctrl, alt, meta
RELEASE, PRESS, AUTOREPEAT = 0, 1, 2


class Layout(Enum):
    US = "us"
    JP106 = "jp106"


class Terminator(Enum):
    ENTER = "enter"  # Enter or keypad Enter
    TAB = "tab"
    ENTER_OR_TAB = "enter_or_tab"


_LETTER_ROWS = ((16, "qwertyuiop"), (30, "asdfghjkl"), (44, "zxcvbnm"))
# Keypad with NumLock on; scanners in "keypad emulation" send these unshifted.
_KEYPAD = {71: "7", 72: "8", 73: "9", 74: "-", 75: "4", 76: "5", 77: "6", 78: "+", 79: "1", 80: "2",
           81: "3", 82: "0", 83: ".", 55: "*", 98: "/"}  # fmt: skip
# code: (unshifted, shifted); None = no character on that level
_US: dict[int, tuple[str, str | None]] = {
    2: ("1", "!"), 3: ("2", "@"), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"), 7: ("6", "^"),
    8: ("7", "&"), 9: ("8", "*"), 10: ("9", "("), 11: ("0", ")"), 12: ("-", "_"), 13: ("=", "+"),
    26: ("[", "{"), 27: ("]", "}"), 39: (";", ":"), 40: ("'", '"'), 41: ("`", "~"), 43: ("\\", "|"),
    51: (",", "<"), 52: (".", ">"), 53: ("/", "?"), 57: (" ", " "),
}  # fmt: skip
_JP106: dict[int, tuple[str, str | None]] = {
    2: ("1", "!"), 3: ("2", '"'), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"), 7: ("6", "&"),
    8: ("7", "'"), 9: ("8", "("), 10: ("9", ")"), 11: ("0", "~"), 12: ("-", "="), 13: ("^", "~"),
    26: ("@", "`"), 27: ("[", "{"), 39: (";", "+"), 40: (":", "*"), 43: ("]", "}"),
    51: (",", "<"), 52: (".", ">"), 53: ("/", "?"), 57: (" ", " "),
    89: ("\\", "_"),  # KEY_RO (ろ)
    124: ("\\", "|"),  # KEY_YEN (¥)
}  # fmt: skip


def _tables(layout: Layout) -> tuple[dict[int, str], dict[int, str]]:
    keys = dict(_US if layout is Layout.US else _JP106)
    for first, row in _LETTER_ROWS:
        for offset, letter in enumerate(row):
            keys[first + offset] = (letter, letter.upper())
    normal = {code: pair[0] for code, pair in keys.items()} | _KEYPAD
    shifted = {code: pair[1] for code, pair in keys.items() if pair[1] is not None}
    return normal, shifted


_TABLES = {layout: _tables(layout) for layout in Layout}
_TERMINATORS = {
    Terminator.ENTER: frozenset({KEY_ENTER, KEY_KPENTER}),
    Terminator.TAB: frozenset({KEY_TAB}),
    Terminator.ENTER_OR_TAB: frozenset({KEY_ENTER, KEY_KPENTER, KEY_TAB}),
}


def _reverse(layout: Layout) -> dict[str, tuple[int, bool]]:
    normal, shifted = _TABLES[layout]
    chars: dict[str, tuple[int, bool]] = {}
    # Main-block keys first, then shifted, so each character has one canonical key (lowest code).
    for code in sorted(set(normal) - set(_KEYPAD)):
        chars.setdefault(normal[code], (code, False))
    for code in sorted(shifted):
        chars.setdefault(shifted[code], (code, True))
    return chars


_REVERSE = {layout: _reverse(layout) for layout in Layout}


@dataclass(frozen=True, kw_only=True, slots=True)
class WedgeConfig:
    layout: Layout = Layout.JP106
    terminator: Terminator = Terminator.ENTER
    max_length: int = 128  # characters; a scanner never sends more, a stuck key does

    def __post_init__(self) -> None:
        if not 1 <= self.max_length <= 4096:
            raise ConfigError([f"scanner.wedge.max_length: must be 1..4096, got {self.max_length}"])


def _fail(code: str, what: str, value: object, fix: str = "", /, **params: object) -> KeymapError:
    tail = f"; {fix}" if fix else ""
    return KeymapError(code, f"keyboard wedge: {what}, got {value}{tail}", **params)


class WedgeDecoder:
    """Feed EV_KEY events in order; `feed` returns a scan when its terminator arrives.

    Shift state follows left and right shift separately. Releases of other keys carry nothing, nor
    do autorepeats of a terminator or a modifier: a scanner that holds Enter a moment too long has
    finished its scan. Empty scans (a lone terminator) are ignored. After an error in a scan the rest
    of that scan is dropped; an error between scans (no characters held) is reported and nothing is
    dropped, as the next keys are the next scan, which must not be lost.
    """

    __slots__ = ("_chars", "_dropping", "_left", "_max", "_normal", "_right", "_shifted", "_terminators")

    def __init__(self, config: WedgeConfig) -> None:
        self._normal, self._shifted = _TABLES[config.layout]
        self._terminators = _TERMINATORS[config.terminator]
        self._max = config.max_length
        self._chars: list[str] = []
        self._left = False
        self._right = False
        self._dropping = False

    @property
    def dropping(self) -> bool:
        """The rest of a scan that failed is being dropped, up to its terminator (or the idle gap's flush)."""
        return self._dropping

    def feed(self, code: int, value: int) -> str | None:
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT) and value in (PRESS, RELEASE):
            if code == KEY_LEFTSHIFT:
                self._left = value == PRESS
            else:
                self._right = value == PRESS
            return None
        if value == RELEASE or (value == AUTOREPEAT and (code in self._terminators or code in _MODIFIERS)):
            return None
        if self._dropping:
            if value == PRESS and code in self._terminators:
                self._dropping = False
            return None
        if value != PRESS:
            repeat = value == AUTOREPEAT
            self._error(
                "keymap_autorepeat" if repeat else "keymap_event_value",
                "key held long enough to autorepeat" if repeat else "unknown key event value",
                f"code {code} value {value}",
                "the host stalled mid-scan; scan again" if repeat else "pass EV_KEY values 0, 1, 2 only",
                key=code,
                value=value,
            )
        if code in self._terminators:
            scan = "".join(self._chars)
            self._chars.clear()
            return scan or None
        shift = self._left or self._right
        char = (self._shifted if shift else self._normal).get(code)
        if char is None:
            self._error(
                "keymap_unknown_key",
                "key has no character in this layout" + (" with shift" if shift else ""),
                f"code {code}",
                "check the scanner's keyboard-layout setting against scanner.wedge.layout",
                key=code,
                shift=shift,
            )
        if len(self._chars) >= self._max:
            self._error(
                "keymap_too_long",
                f"no terminator within {self._max} characters",
                len(self._chars) + 1,
                "check the scanner's terminator (Enter/Tab) setting",
                max_length=self._max,
            )
        self._chars.append(char)
        return None

    def _error(self, code: str, what: str, value: object, fix: str, /, **params: object) -> NoReturn:
        # Drop the rest of this scan up to its terminator, so its tail never prefixes the next one;
        # between scans there is no rest, and dropping would swallow the next scan whole.
        self._dropping = bool(self._chars)
        self._chars.clear()
        raise _fail(code, what, value, fix, **params)


def decode_events(events: Iterable[tuple[int, int]], config: WedgeConfig) -> list[str]:
    """All scans in a finished sequence of (code, value) EV_KEY events; raises at the first error."""
    decoder = WedgeDecoder(config)
    scans = []
    for code, value in events:
        scan = decoder.feed(code, value)
        if scan is not None:
            scans.append(scan)
    return scans


def encode_scan(text: str, config: WedgeConfig) -> list[tuple[int, int]]:
    """The key events a scanner set up for `config.layout` types for `text` and its terminator."""
    chars = _REVERSE[config.layout]
    events: list[tuple[int, int]] = []
    for index, char in enumerate(text):
        key = chars.get(char)
        if key is None:
            raise _fail(
                "keymap_unmappable",
                f"character {index + 1} cannot be typed on {config.layout.value}",
                repr(char),
                position=index + 1,
            )
        code, shift = key
        if shift:
            events += [(KEY_LEFTSHIFT, PRESS), (code, PRESS), (code, RELEASE), (KEY_LEFTSHIFT, RELEASE)]
        else:
            events += [(code, PRESS), (code, RELEASE)]
    end = KEY_TAB if config.terminator is Terminator.TAB else KEY_ENTER
    events += [(end, PRESS), (end, RELEASE)]
    return events

"""Numbers written as text ("2.35", " -7 ", "1e3", "２３"), and numbers orjson cannot give as written (LargeNumber)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

INTEGER_TEXT_RE: Final = re.compile(r"^\s*[+-]?\d+\s*$")
_MAX_TEXT = 64  # a longer "number" is not a measurement; also bounds Decimal's work
_DIGITS = re.compile(r"[0-9]+")


def number_text(text: str) -> Decimal | None:
    """The finite number `text` spells, else None (NaN and Infinity are not measurements)."""
    if len(text) > _MAX_TEXT:
        return None
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


@dataclass(frozen=True, slots=True)
class LargeNumber:
    """A JSON number as its document wrote it, where orjson cannot give it: an integer beyond 64 bits
    (orjson rounds it to a float) or any number beyond a double's range (orjson refuses the document).

    Only adapters.jsonmap.decode makes them, and only after orjson refused or rounded; each reader
    takes what its type needs (a Text field the integer's digits, a Number a fraction's nearest float
    or an integer a scale brings within ±2^53) or refuses it for its own field. None ever reaches a
    Reading.
    """

    literal: str  # JSON number grammar, checked by the parser that made it

    @property
    def integer(self) -> bool:
        """Written as an integer (no fraction, no exponent): a serial number, a code."""
        return not any(c in self.literal for c in ".eE")

    def as_float(self) -> float:
        """The nearest double; ±inf beyond a double's range."""
        return float(self.literal)  # float() of a text has no digit limit, unlike int()

    def is_finite(self) -> bool:
        return math.isfinite(self.as_float())

    def __repr__(self) -> str:
        # as adapters.jsonmap.errors.describe shows a number: its shape, not its digits (it may be a card number)
        return _DIGITS.sub(lambda m: f"<{len(m[0])} digit{'' if len(m[0]) == 1 else 's'}>", self.literal)

"""Numbers written as text ("2.35", " -7 ", "1e3", "２３"): many JSON sources quote their measurements."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

INTEGER_TEXT_RE: Final = re.compile(r"^\s*[+-]?\d+\s*$")
_MAX_TEXT = 64  # a longer "number" is not a measurement; also bounds Decimal's work


def number_text(text: str) -> Decimal | None:
    """The finite number `text` spells, else None (NaN and Infinity are not measurements)."""
    if len(text) > _MAX_TEXT:
        return None
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        return None
    return d if d.is_finite() else None

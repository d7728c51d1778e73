"""Every answer the locker adapter gives the pickup kiosk has its own sentence on the kiosk's screen.

The kiosk shows `kiosk.outcome.<word>` for the word before the first ":" of the adapter's answer
when it is in `OUTCOMES`, and its generic "please try again in a moment" otherwise: an answer word
missing from either told the patron something untrue (an `unconfirmed` door, which may be open, read
as a passing failure).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.web.kiosk import OUTCOMES

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = ROOT / "gateway" / "web" / "catalogs"


# The words the locker adapter's pickup command answers with (adapters/locker/adapter.py: _kiosk, _open_door,
# _unconfirmed and the pickup store's code checks); its other commands' answers never reach the kiosk.
PICKUP_ANSWERS = {
    "opened",
    "wrong_code",
    "locked",
    "no_code",
    "cancelled_code",
    "expired_code",
    "used_code",
    "unknown",
    "offline",
    "open",
    "stuck",
    "unconfirmed",
}


def test_every_pickup_answer_is_a_kiosk_outcome() -> None:
    source = (ROOT / "adapters" / "locker" / "adapter.py").read_text(encoding="utf-8")
    for word in PICKUP_ANSWERS - {"wrong_code", "locked", "no_code"}:  # those three come from the store's checks
        assert re.search(rf'f?"{word}: ', source), word
    assert PICKUP_ANSWERS <= OUTCOMES


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_outcome_has_its_sentence(lang: str) -> None:
    catalog = json.loads((CATALOGS / lang / "lockers.json").read_text(encoding="utf-8"))
    assert sorted(o for o in OUTCOMES if f"kiosk.outcome.{o}" not in catalog) == []

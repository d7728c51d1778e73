"""Each refusal the locker adapter answers staff with has its own text on /lockers, in Japanese first.

`mail_failed:` (the code mail could not be queued, nothing assigned) fell back to the generic "the
action failed", which left staff guessing whether the compartment was reserved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.web.pages.lockers import _reason

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = ROOT / "gateway" / "web" / "catalogs"


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_mail_failed_says_nothing_was_assigned(lang: str) -> None:
    texts = json.loads((CATALOGS / lang / "lockers.json").read_text(encoding="utf-8"))
    reason = _reason("mail_failed: the code mail for compartment A-02 could not be queued, got OperationalError")
    assert reason == "mail_failed"
    text = texts[f"lockers.refused.{reason}"]
    assert "{label}" in text
    assert ("割り当ては行っていません" if lang == "ja" else "nothing was assigned") in text

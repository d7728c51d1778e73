"""Every refusal a station can give has its line on the stations page, in Japanese and in English.

The page lists a station's errors by their reason code (`ERROR_REASONS`) and shows each through the
catalog key `stations.reason_<code>`; a code missing from either showed the bare key, or was left
off the errors list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.rfid.danish import Usage
from adapters.scanner.adapter import CALLER_REFUSALS
from adapters.scanner.station import Feedback, Purpose, Station, StationConfig
from gateway.web.pages.stations import ERROR_REASONS

CATALOGS = Path(__file__).resolve().parents[2] / "gateway" / "web" / "catalogs"
AT = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)


def _refusals() -> set[str]:
    """The reasons of every refused RFID tag read, over every purpose and every type of usage."""
    reasons = set()
    for purpose in Purpose:
        for usage in [None, *range(16)]:
            station = Station(
                StationConfig(station_id="s1", purpose=purpose), adapter="a", device="d", local_key=b"k" * 32
            )
            step = station.item_read("30001234", AT, 1, {}, usage=usage)
            if step.feedback is Feedback.REFUSED and usage != Usage.PATRON_CARD:
                reasons.add(step.reason)
    return reasons


def test_the_tag_refusals_are_the_ones_the_page_knows() -> None:
    refusals = _refusals()
    assert {"not_for_loan", "discarded", "not_an_item", "unknown_usage"} <= refusals
    assert refusals <= ERROR_REASONS


def test_what_the_adapter_refuses_itself_is_on_the_page_too() -> None:
    assert set(CALLER_REFUSALS) <= ERROR_REASONS


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_error_reason_has_its_text(lang: str) -> None:
    catalog = json.loads((CATALOGS / lang / "stations.json").read_text(encoding="utf-8"))
    missing = sorted(r for r in ERROR_REASONS if f"stations.reason_{r}" not in catalog)
    assert missing == []

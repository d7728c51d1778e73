"""The helpdesk app of config/kintone-helpdesk.toml on the kintone stand-in, and readings for it."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.records import Attribute, Lane, Reading, Source
from tests.support.kintone_double import KintoneDouble, form_field

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "kintone-helpdesk.toml"
HELPDESK_APP = 42
TOKEN = "kintone-helpdesk-token-0123456789abcdef"
T0 = datetime(2024, 7, 1, 0, 10, 30, tzinfo=UTC)
STATION = "urn:ngsi-ld:WaterObserved:kumamoto-0431"

SEVERITIES = ["informational", "low", "medium", "high", "critical"]


def helpdesk_fields() -> list[dict[str, Any]]:
    """The helpdesk app's form as KINTONE.md describes it."""
    return [
        form_field("alert_key", "SINGLE_LINE_TEXT", "警報キー", unique=True, required=True),
        form_field("title", "SINGLE_LINE_TEXT", "件名"),
        form_field("station", "SINGLE_LINE_TEXT", "観測所"),
        form_field("threshold", "SINGLE_LINE_TEXT", "基準水位"),
        form_field("severity", "DROP_DOWN", "重大度", choices=SEVERITIES),
        form_field("water_level", "NUMBER", "水位 (m)"),
        form_field("raised_at", "DATETIME", "発生日時"),
        form_field("cleared_at", "DATETIME", "解消日時"),
        form_field("cleared_note", "MULTI_LINE_TEXT", "解消時の記録"),
        form_field("status", "DROP_DOWN", "対応状況", choices=["対応中", "解消"]),
        form_field("last_alert_id", "SINGLE_LINE_TEXT", "最新の警報ID"),
        form_field("record_no", "RECORD_NUMBER", "レコード番号"),
    ]


def example_section() -> dict[str, Any]:
    """The shipped example's kintone uplink section."""
    doc = tomllib.loads(EXAMPLE.read_text())
    [section] = [u for u in doc["uplinks"] if u["type"] == "kintone"]
    return dict(section)


def alert(direction: str, minute: int, level: float, *, threshold: str = "氾濫注意水位", index: int = 2) -> Reading:
    """A river Alert reading as gateway.processing.river makes it (docs/quality-and-river.md)."""
    at = T0 + timedelta(minutes=minute)
    verb = "に達しました" if direction == "up" else "を下回りました"
    return Reading(
        entity_id=f"urn:ngsi-ld:Alert:kumamoto-0431-{index}-{direction}-{int(at.timestamp())}",
        entity_type="Alert",
        attributes={
            "category": Attribute(value="naturalDisaster", type="Text"),
            "subCategory": Attribute(value="flood", type="Text"),
            "severity": Attribute(value="medium" if direction == "up" else "low", type="Text"),
            "alertSource": Attribute(value=STATION, type="Relationship"),
            "description": Attribute(value=f"{threshold} 3.50 m {verb}（水位 {level:.2f} m）", type="Text"),
            "dateIssued": Attribute(value=at.isoformat().replace("+00:00", "Z"), type="DateTime"),
            "thresholdName": Attribute(value=threshold, type="Text"),
            "thresholdLevel": Attribute(value=3.5, type="Number", unit="MTR"),
            "waterLevel": Attribute(value=level, type="Number", unit="MTR"),
            "direction": Attribute(value=direction, type="Text"),
        },
        observed_at=at,
        source=Source(adapter="river-portal"),
        lane=Lane.ALERT,
    )


def visit(n: int, value: Any) -> Reading:
    """A watch visit (an `add` mapping's reading): a count that must be a number."""
    return Reading(
        entity_id=f"urn:ngsi-ld:Visit:lib-{n:05d}",
        entity_type="Visit",
        attributes={"visitors": Attribute(value=value, type="Number"), "place": Attribute(value="図書館", type="Text")},
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="counter"),
    )


VISITS_APP = 7


def visit_fields() -> list[dict[str, Any]]:
    return [
        form_field("visitors", "NUMBER", "来館者数"),
        form_field("place", "SINGLE_LINE_TEXT", "場所"),
        form_field("visit_id", "SINGLE_LINE_TEXT", "訪問ID"),
        form_field("at", "DATETIME", "日時"),
    ]


def visits_section(url: str, **keys: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "visits",
        "type": "kintone",
        "url": url,
        "app": VISITS_APP,
        "api_token": "secret:visits_token",
        "start_delay_max_s": 0,
        "mappings": [
            {
                "entity_types": ["Visit"],
                "mode": "add",
                "fields": {"visitors": "visitors", "place": "place", "visit_id": "$entity_id", "at": "$observed_at"},
            }
        ],
    }
    doc.update(keys)
    return doc


@pytest.fixture
async def kintone() -> AsyncIterator[KintoneDouble]:
    async with KintoneDouble() as double:
        double.add_app(HELPDESK_APP, helpdesk_fields(), TOKEN)
        double.add_app(VISITS_APP, visit_fields(), "visits-token-abcdef0123456789")
        yield double

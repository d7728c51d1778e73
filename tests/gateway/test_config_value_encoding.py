"""An uplink's own `value_encoding = "reject"` under a gateway-wide one that is not: refused by the config check.

Readings are checked with `[ngsi] value_encoding` before the buffer; a value such as 人吉(水の手橋) passed that check
under "percent", went out as it was on an uplink of its own "reject" and was dead-lettered by Orion (review
cfgfix, fault 1). Only that direction can do harm: under `[ngsi] value_encoding = "reject"` no such value reaches
an uplink, whatever it encodes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError, ReadingError
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.records import Attribute, Reading, Source

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)

UPLINKS: dict[str, dict[str, Any]] = {
    "orion": {"name": "orion", "type": "orion", "url": "https://orion.example.jp"},
    "ngsi-ld": {"name": "ld", "type": "ngsi-ld", "url": "https://ld.example.jp"},
    "mqtt": {"name": "agent", "type": "mqtt", "host": "mqtt.example.jp", "apikey": "k1"},
}


def doc(uplink: str, encoding: str, ngsi: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"gateway": {"id": "gw-001"}, "uplinks": [{**UPLINKS[uplink], "value_encoding": encoding}]}
    if ngsi is not None:
        out["ngsi"] = {"value_encoding": ngsi}
    return out


def refusal(ngsi: str) -> str:
    return (
        f'uplinks[0].value_encoding: must not be stricter than [ngsi] value_encoding, got "reject" while [ngsi] '
        f'value_encoding is "{ngsi}"; readings are checked at the source with [ngsi] value_encoding, so a value such '
        "as 人吉(水の手橋) would pass there and be dead-lettered when the broker refuses it: set [ngsi] value_encoding = "
        '"reject" to refuse such readings at the source, or drop this uplink\'s value_encoding'
    )


@pytest.mark.parametrize("uplink", sorted(UPLINKS))
@pytest.mark.parametrize("ngsi", [None, "percent", "text-unrestricted"])
def test_reject_on_an_uplink_alone_is_refused_with_both_settings_and_the_fix(uplink: str, ngsi: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc(uplink, "reject", ngsi))
    assert info.value.errors == [refusal(ngsi or "percent")]


@pytest.mark.parametrize(
    ("uplink", "ngsi"),
    [
        ("reject", "reject"),
        ("percent", "reject"),  # nothing Orion refuses gets past the source check: encoding it is harmless
        ("text-unrestricted", "reject"),
        ("text-unrestricted", "percent"),  # neither sends a value Orion refuses
        ("percent", "text-unrestricted"),
    ],
)
def test_the_other_combinations_load(uplink: str, ngsi: str) -> None:
    for kind in UPLINKS:
        config = parse_config(doc(kind, uplink, ngsi))
        assert config.uplinks[0].value_encoding is ValueEncoding(uplink)  # type: ignore[attr-defined]


def test_the_fix_the_message_gives_refuses_the_value_at_the_source() -> None:
    config = parse_config(doc("orion", "reject", "reject"))
    reading = Reading(
        entity_id="urn:ngsi-ld:WaterObserved:g1",
        entity_type="WaterObserved",
        attributes={"name": Attribute(value="人吉(水の手橋)", type="Text")},
        observed_at=T0,
        source=Source(adapter="gauge"),
    )
    with pytest.raises(ReadingError, match=r"value contains '\(', which Orion refuses"):
        check_reading(reading, encoding=config.ngsi.value_encoding)


def test_told_with_the_uplinks_other_errors_and_never_for_a_type_without_the_key() -> None:
    bad = doc("orion", "reject")
    bad["uplinks"][0]["timeout_s"] = 0
    bad["uplinks"].append({"name": "x", "type": "orian", "value_encoding": "reject"})
    bad["uplinks"].append({"name": "k", "type": "kintone", "value_encoding": "reject"})
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    errors = info.value.errors
    assert errors[0] == "uplinks[0].timeout_s: input should be greater than 0, got 0"
    assert refusal("percent") in errors
    assert [e for e in errors if "uplinks[1]" in e] == [
        "uplinks[1].type: unknown type, got 'orian'; valid: kintone, mqtt, ngsi-ld, orion"
    ]
    assert "uplinks[2].value_encoding: unknown key" in "\n".join(errors)
    assert not [e for e in errors if "uplinks[2].value_encoding: must not" in e]


def test_an_invalid_ngsi_section_is_reported_once_not_compared() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc("orion", "reject", "bogus"))
    assert info.value.errors == [
        "ngsi.value_encoding: input should be 'percent', 'text-unrestricted' or 'reject', got \"bogus\""
    ]


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_still_loads(path: Path) -> None:
    load_config(path)

"""An uplink's own `value_encoding = "reject"` under a gateway-wide one that is not: warned of by the config check.

Readings are checked with `[ngsi] value_encoding` before the buffer; a value such as 人吉(水の手橋) passed that check
under "percent", went out as it was on an uplink of its own "reject" and was dead-lettered by Orion (review
cfgfix, fault 1). Only that direction can do harm: under `[ngsi] value_encoding = "reject"` no such value reaches
an uplink, whatever it encodes. Commit da21757 made it an error, and a box upgraded with such a config stopped
(the package starts the units only when check-config passes): a warning now (review cfgwarn), exit 0.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import config_warnings, load_config, parse_config, start_warnings
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


def warning(ngsi: str) -> str:
    return (
        f'uplinks[0].value_encoding: "reject" is stricter than [ngsi] value_encoding = "{ngsi}"; readings are checked '
        "at the source with [ngsi]'s, so a value such as 人吉(水の手橋) passes there and is dead-lettered on this uplink "
        'instead of delivered: set [ngsi] value_encoding = "reject" to refuse such readings at the source (counted '
        "and logged), or drop this uplink's value_encoding to send them encoded"
    )


@pytest.mark.parametrize("uplink", sorted(UPLINKS))
@pytest.mark.parametrize("ngsi", [None, "percent", "text-unrestricted"])
def test_reject_on_an_uplink_alone_loads_and_is_warned_of_with_both_settings_and_the_fix(
    uplink: str, ngsi: str | None
) -> None:
    config = parse_config(doc(uplink, "reject", ngsi))
    assert config.uplinks[0].value_encoding is ValueEncoding.REJECT  # type: ignore[attr-defined]
    assert config_warnings(config) == [warning(ngsi or "percent")]
    assert start_warnings(config) == [warning(ngsi or "percent")]  # no uplink says it at its start


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
def test_the_other_combinations_load_unwarned(uplink: str, ngsi: str) -> None:
    for kind in UPLINKS:
        config = parse_config(doc(kind, uplink, ngsi))
        assert config.uplinks[0].value_encoding is ValueEncoding(uplink)  # type: ignore[attr-defined]
        assert config_warnings(config) == []


def test_an_uplink_that_sets_none_takes_ngsis_and_is_not_warned_of() -> None:
    for kind in UPLINKS:
        config = parse_config(
            {"gateway": {"id": "gw-001"}, "ngsi": {"value_encoding": "reject"}, "uplinks": [UPLINKS[kind]]}
        )
        assert config.uplinks[0].value_encoding is ValueEncoding.REJECT  # type: ignore[attr-defined]
        assert config_warnings(config) == []


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


def test_check_config_exits_0_printing_the_warning(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nid = "gw-001"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "https://orion.example.jp"\nvalue_encoding = "reject"\n'
    )
    for options in ([], ["--offline"]):
        run = subprocess.run(
            [sys.executable, "-m", "gateway", "check-config", str(path), *options],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr
        assert run.stderr.splitlines() == [
            f"{path}: 1 warning(s): the gateway starts with them",
            f"  {warning('percent')}",
        ]


def test_an_invalid_ngsi_section_is_reported_once_not_compared() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc("orion", "reject", "bogus"))
    assert info.value.errors == [
        "ngsi.value_encoding: input should be 'percent', 'text-unrestricted' or 'reject', got \"bogus\""
    ]


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_still_loads_unwarned(path: Path) -> None:
    assert config_warnings(load_config(path)) == []

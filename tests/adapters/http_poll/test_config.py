"""Configuration errors name the key path and the fix, checked without any network."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.http_poll.config import HttpPollConfig
from adapters.jsonmap.config import TimeFormat
from gateway.configbase import format_validation_error
from gateway.tls import TlsVerify

SAMPLE = Path(__file__).parents[3] / "adapters" / "http_poll" / "sample.toml"
URL_FIX = (
    'put the credential in the secret store (`edgegw secret set <name>`) and reference it as "secret:<name>" '
    '(or "env:<VARIABLE>") from the section\'s headers, params or token settings'
)
ID_RULE = "1-256 printable ASCII characters without blanks or any of < > \" ' = ; ( ) & ? / # { } | \\ ^ `"


def mapping(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "items": "stations",
        "entity_id": "urn:ngsi-ld:WaterObserved:{stationCode}",
        "entity_type": "WaterObserved",
        "attributes": [{"path": "level", "name": "waterLevel", "unit": "MTR"}],
    }
    item.update(overrides)
    return item


def errors(**section: Any) -> list[str]:
    doc = {"name": "portal", "type": "http_poll", "url": "https://example.lg.jp/river.json", **section}
    doc.setdefault("mappings", [mapping()])
    with pytest.raises(ValidationError) as info:
        HttpPollConfig.model_validate(doc)
    return format_validation_error(info.value, HttpPollConfig, "adapters[0]")


def test_sample_section_is_valid() -> None:
    section = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))["adapters"][0]
    cfg = HttpPollConfig.model_validate(section)
    assert (cfg.interval_s, cfg.timeout_s, cfg.max_bytes, cfg.tls) == (600, 20, 10 * 1024 * 1024, None)
    assert cfg.headers == {"Accept": "application/json", "X-Api-Key": "secret:river-portal-key"}
    m = cfg.mappings[0]
    assert (m.items, m.entity_id, m.timestamp and m.timestamp.format) == (
        "観測所",
        "urn:ngsi-ld:WaterObserved:kumamoto-{観測所番号}",
        TimeFormat.LOCAL,
    )
    assert cfg.display_url == "https://bousai.example.lg.jp/api/v1/river/latest.json"


def test_top_level_problems_are_reported_with_their_key_paths() -> None:
    assert errors(
        url="ftp://example.lg.jp/x",
        interval_s=0.01,
        headers={"Authorization": "Bearer abc", "X Key": "1", "If-None-Match": "x"},
        params={"apikey": "abc"},
        encoding="sjis-2",
        tls={"cert_file": "/etc/edgegw/c.pem", "verify": "none"},
        poll=1,
    ) == [
        'adapters[0].url: must be an http(s) URL, got "ftp://example.lg.jp/x"',
        "adapters[0].headers: header 'Authorization' carries a credential and must not be written in clear; use a "
        'secret reference: "secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"',
        "adapters[0].params: parameter 'apikey' carries a credential and must not be written in clear; use a secret "
        'reference: "secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"',
        "adapters[0].interval_s: input should be greater than or equal to 0.05, got 0.01",
        'adapters[0].encoding: must be a text encoding Python knows, like utf-8, cp932 or euc_jp, got "sjis-2"',
        "adapters[0].tls.verify: input should be 'full' or 'off', got \"none\"",
        "adapters[0].poll: unknown key; valid keys here: allow_insecure_http, encoding, headers, interval_s, mappings, "
        "max_bytes, max_items, name, params, timeout_s, tls, type, url",
    ]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        # the same check as every URL of the config; the error must not repeat the password (issue 9)
        (
            {"url": "https://user:pw@example.lg.jp/x"},
            "adapters[0].url: must not carry credentials (user:password@), got a value that is not shown here; "
            + URL_FIX,
        ),
        (
            {"url": "https://example.lg.jp/x?pref=43&apikey=abc"},
            "adapters[0].url: must not carry a credential in its query (parameter 'apikey'), got a value that is not "
            "shown here; " + URL_FIX,
        ),
        (
            {"headers": {"X Key": "1"}},
            "adapters[0].headers: header name 'X Key' must be an HTTP token (letters, digits, - and !#$%&'*+.^_`|~)",
        ),
        (
            {"headers": {"If-None-Match": "x"}},
            "adapters[0].headers: header 'If-None-Match' is set by the adapter itself; remove it",
        ),
        (
            {"headers": {"X-Api-Key": "secret:has space"}},
            "adapters[0].headers: header 'X-Api-Key' is not a valid secret reference; use a secret reference: "
            '"secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"',
        ),
        (
            {"interval_s": 5, "timeout_s": 10},
            "adapters[0].timeout_s: must be at most interval_s so a poll ends before the next is due, got 10.0 > 5.0",
        ),
        (
            {"url": "http://example.lg.jp/x", "tls": {"verify": "off"}},
            "adapters[0].tls: [adapters.tls] applies to https:// URLs only; remove it or use https",
        ),
        (
            {"tls": {"key_file": "/etc/edgegw/c.key"}},
            "adapters[0].tls: key_file needs cert_file for mutual TLS, got only key_file; set cert_file to the client "
            "certificate",
        ),
        ({"mappings": []}, "adapters[0].mappings: must list at least one [[adapters.mappings]] entry, got none"),
    ],
)
def test_single_top_level_problem(section: dict[str, Any], message: str) -> None:
    assert errors(**section) == [message]


def test_mapping_problems_are_reported_with_their_key_paths() -> None:
    assert errors(
        mappings=[
            mapping(items="stations..list"),
            mapping(entity_id="urn:ngsi-ld:WaterObserved:fixed"),
            mapping(entity_id="urn:ngsi-ld:Water Observed:{code}"),
            mapping(entity_id="urn:ngsi-ld:WaterObserved:{code"),
            mapping(entity_type="Water/Observed"),
            mapping(
                attributes=[
                    {"path": "level", "name": "id"},
                    {"path": "level", "name": "waterLevel", "unit": "m"},
                    {"path": "name", "name": "name", "type": "Text", "scale": 0.1},
                    {"path": "level", "name": "h", "type": "Float"},
                ]
            ),
            mapping(attributes=[{"path": "a", "name": "h"}, {"path": "b", "name": "h"}]),
            mapping(timestamp={"path": "観測時刻", "format": "strptime"}),
            mapping(timestamp={"path": "t", "format": "strptime", "pattern": "%H:%M"}),
            mapping(timestamp={"path": "t", "format": "local", "zone": "JST", "pattern": "%Y"}),
            mapping(lane="urgent"),
        ]
    ) == [
        "adapters[0].mappings[0].items: must be a JSON path like data.stations or 観測値[0].水位 (keys separated by "
        "'.', list items as [i]), got \"stations..list\"",
        "adapters[0].mappings[1].entity_id: must contain at least one {field} placeholder, or every item gets the "
        'same entity id, got "urn:ngsi-ld:WaterObserved:fixed"',
        f"adapters[0].mappings[2].entity_id: must be {ID_RULE} outside the {{name}} placeholders (found ' '), "
        'got "urn:ngsi-ld:Water Observed:{code}"',
        "adapters[0].mappings[3].entity_id: has a '{' without its '}'; placeholders are {<path of an item field>}, "
        'got "urn:ngsi-ld:WaterObserved:{code"',
        f"adapters[0].mappings[4].entity_type: entity type must be {ID_RULE} (found '/'), got \"Water/Observed\"",
        "adapters[0].mappings[5].attributes[0].name: attribute name must not be one Orion reserves (*, "
        'alterationType, dateCreated, dateExpires, dateModified, geo:distance, id, servicePath, type), got "id"',
        "adapters[0].mappings[5].attributes[1].unit: must be a UN/CEFACT common code of 2-3 capitals/digits "
        '(CEL, MTR, P1, KWH), got "m"',
        "adapters[0].mappings[5].attributes[2].scale: applies to Number attributes only, got type 'Text'",
        "adapters[0].mappings[5].attributes[3].type: input should be 'Number', 'Text', 'Boolean', 'DateTime' or "
        "'StructuredValue', got \"Float\"",
        "adapters[0].mappings[6].attributes: must name each attribute once, got 'h' twice",
        'adapters[0].mappings[7].timestamp.pattern: is needed with format = "strptime", got none; e.g. '
        'pattern = "%Y%m%d%H%M"',
        "adapters[0].mappings[8].timestamp.pattern: must contain the year (%Y), got '%H:%M'",
        'adapters[0].mappings[9].timestamp.zone: must be an IANA time zone name like Asia/Tokyo or UTC, got "JST"',
        "adapters[0].mappings[10].lane: input should be 'alert', 'normal' or 'bulk', got \"urgent\"",
    ]


def test_choices_and_japanese_paths_parse() -> None:
    cfg = HttpPollConfig.model_validate(
        {
            "name": "portal",
            "type": "http_poll",
            "url": "https://example.lg.jp/river.json/",
            "tls": {"verify": "off"},
            "mappings": [
                mapping(
                    items="$",
                    entity_id="urn:ngsi-ld:WaterObserved:{観測所.番号}-{値[0]}",
                    timestamp={"path": "t", "format": "strptime", "pattern": "%Y%m%d%H%M"},
                )
            ],
        }
    )
    assert cfg.url == "https://example.lg.jp/river.json"  # a trailing slash is dropped
    assert cfg.tls is not None and cfg.tls.verify is TlsVerify.OFF
    assert cfg.mappings[0].items == "$"

"""Issue 9, items 5, 6 and 8: credentials in URLs and headers refused without being repeated, one line per
cross-field problem with its full key path, and files a Windows editor saved read or named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError, model_validator

from gateway.config import parse_config
from gateway.configbase import ConfigProblems, Section, format_validation_error
from gateway.errors import ConfigError

URL_FIX = ('put the credential in the secret store (`edgegw secret set <name>`) and reference it as "secret:<name>" '
           '(or "env:<VARIABLE>") from the section\'s headers, params or token settings')
USERINFO = f"must not carry credentials (user:password@), got a value that is not shown here; {URL_FIX}"
REF_HELP = 'use a secret reference: "secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"'


def errors_of(**doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": {"id": "gw1"}, **doc})
    return info.value.errors


def orion(**keys: Any) -> dict[str, Any]:
    return {"name": "o", "type": "orion", "url": "http://127.0.0.1:1026", **keys}


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"uplinks": [orion(url="https://admin:hunter22@orion.example.jp")]}, "uplinks[0].url"),
        ({"uplinks": [orion(url="ftp://admin:hunter22@orion.example.jp")]}, "uplinks[0].url"),  # not even http
        ({"uplinks": [{"name": "ld", "type": "ngsi-ld", "url": "http://ld:1026",
                       "context": "https://u:hunter22@ctx.example.jp/c.jsonld"}]}, "uplinks[0].context"),
        ({"uplinks": [orion(oauth2={"token_url": "https://gw:hunter22@idm.example.jp/token", "client_id": "gw",
                                    "client_secret": "secret:idm"})]}, "uplinks[0].oauth2.token_url"),
    ],
)
def test_no_url_may_carry_a_password_and_the_error_never_shows_it(doc: dict[str, Any], path: str) -> None:
    errors = errors_of(**doc)
    assert errors == [f"{path}: {USERINFO}"]


def test_credential_headers_of_http_uplinks_follow_the_http_poll_rule() -> None:
    assert errors_of(uplinks=[
        orion(headers={"Authorization": "Bearer abc", "X-Gateway": "gw-001"}),
        {"name": "ld", "type": "ngsi-ld", "url": "http://ld:1026", "headers": {"apikey": "k-123"}},
        orion(name="o2", headers={"X-Api-Key": "secret:has space"}),
    ]) == [
        f"uplinks[0].headers: header 'Authorization' carries a credential and must not be written in clear; {REF_HELP}",
        f"uplinks[1].headers: header 'apikey' carries a credential and must not be written in clear; {REF_HELP}",
        f"uplinks[2].headers: header 'X-Api-Key' is not a valid secret reference; {REF_HELP}",
    ]
    ok = parse_config({"gateway": {"id": "gw1"}, "uplinks": [orion(headers={"apikey": "env:KEY", "X-Gw": "gw-001"})]})
    assert ok.uplinks[0].headers == {"apikey": "env:KEY", "X-Gw": "gw-001"}  # type: ignore[attr-defined]


class _Pair(Section):
    low: int
    high: int


class _Outer(Section):
    pairs: tuple[_Pair, ...]

    @model_validator(mode="after")
    def _ordered(self) -> _Outer:
        problems = [(f"pairs[{i}].high", f"must not be below low ({p.low}), got {p.high}")
                    for i, p in enumerate(self.pairs) if p.high < p.low]
        if problems:
            raise ConfigProblems([*problems, ("", f"has {len(problems)} pairs out of order")])
        return self


def test_model_validators_raise_one_line_per_problem_with_its_own_key_path() -> None:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate({"pairs": [{"low": 1, "high": 2}, {"low": 5, "high": 3}, {"low": 9, "high": 0}]})
    assert format_validation_error(info.value, _Outer, "adapters[3]") == [
        "adapters[3].pairs[1].high: must not be below low (5), got 3",
        "adapters[3].pairs[2].high: must not be below low (9), got 0",
        "adapters[3]: has 2 pairs out of order",
    ]
    assert format_validation_error(info.value, _Outer)[2] == "(top level): has 2 pairs out of order"


def test_a_simulated_entity_type_error_names_its_key() -> None:
    assert errors_of(adapters=[{"name": "s", "type": "simulated", "entity_type": "River Level"}],
                     uplinks=[orion()]) == [
        ("adapters[0].entity_type: entity type must be 1-256 printable ASCII characters without blanks or any of "
         "< > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got \"River Level\"")
    ]



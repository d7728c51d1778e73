"""Issue 9, items 5, 6 and 8: credentials in URLs and headers refused without being repeated, one line per
cross-field problem with its full key path, and files a Windows editor saved read or named."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
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



"""Configuration of the HTTP uplinks through `parse_config`: every mistake named by its key path."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.ngsi.config import ValueEncoding
from gateway.tls import TlsVerify
from gateway.uplinks.ngsi_ld import ContextMode, NgsiLdConfig
from gateway.uplinks.orion import CatchUp, OrionConfig


def errors_of(*uplinks: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": {"id": "gw-001"}, "uplinks": list(uplinks)})
    return info.value.errors


def orion(**keys: Any) -> dict[str, Any]:
    return {"name": "orion-main", "type": "orion", "url": "https://orion.example.jp", **keys}


def test_defaults() -> None:
    config = parse_config(
        {"gateway": {"id": "gw-001"}, "uplinks": [orion(), {"name": "ld", "type": "ngsi-ld", "url": "http://ld:1026/"}]}
    )
    v2, ld = config.uplinks
    assert isinstance(v2, OrionConfig) and isinstance(ld, NgsiLdConfig)
    assert (v2.service, v2.service_path, v2.max_batch_bytes, v2.catch_up, v2.value_encoding, v2.tls.verify) == (
        None,
        "/",
        1_048_576,
        CatchUp.FULL_HISTORY,
        ValueEncoding.PERCENT,
        TlsVerify.FULL,
    )
    assert (ld.url, ld.context_mode, ld.context) == (
        "http://ld:1026",
        ContextMode.LINK,
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    )


def test_service_and_service_path_follow_orions_rules() -> None:
    assert errors_of(orion(service="Hitoyoshi", service_path="/river/")) == [
        'uplinks[0].service: must be 1-50 characters of a-z 0-9 _ (lower case; Orion\'s Fiware-Service), got "Hitoyoshi"',
        "uplinks[0].service_path: must be / or / followed by 1-10 segments of A-Z a-z 0-9 _ (1-50 each) separated by /, "
        'without a trailing /, got "/river/"',
    ]


def test_secrets_are_never_in_clear() -> None:
    oauth2 = {"token_url": "https://idm.example.jp/oauth2/token", "client_id": "gw", "client_secret": "hunter2"}
    assert errors_of(orion(x_auth_token="abc123", oauth2=oauth2)) == [
        'uplinks[0].x_auth_token: must reference a secret as "secret:<name>" (stored with `edgegw secret set <name>`) '
        'or "env:<VARIABLE>", never the secret in clear, got a value that is not shown here',
        'uplinks[0].oauth2.client_secret: must reference a secret as "secret:<name>" (stored with `edgegw secret set '
        '<name>`) or "env:<VARIABLE>", never the secret in clear, got a value that is not shown here',
    ]


def test_tls_keys() -> None:
    assert errors_of(orion(tls={"cafile": "/etc/ca.pem", "key_file": "/etc/k.pem"})) == [
        "uplinks[0].tls.cafile: unknown key; valid keys here: ca_file, cert_file, key_file, verify",
    ]
    assert errors_of(orion(tls={"key_file": "/etc/k.pem"})) == [
        "uplinks[0].tls: key_file needs cert_file for mutual TLS, got only key_file; set cert_file to the client "
        "certificate",
    ]
    assert errors_of(orion(url="http://orion:1026", tls={"ca_file": "/etc/ca.pem"})) == [
        "uplinks[0]: tls settings need an https:// url, got an http:// url; change url or drop [tls]",
    ]


def test_headers_and_token_settings_do_not_collide() -> None:
    oauth2 = {
        "token_url": "https://idm.example.jp/token",
        "client_id": "gw",
        "client_secret": "secret:c",
        "header": "x-auth-token",
    }
    assert errors_of(orion(headers={"Fiware-Service": "x", "bad name": "y"})) == [
        "uplinks[0].headers: must not set a header the uplink sets itself, got 'Fiware-Service'",
    ]
    assert errors_of(orion(headers={"edgegw-seq": "1-5"})) == [
        "uplinks[0].headers: must not set a header the uplink sets itself, got 'edgegw-seq'",
    ]
    assert errors_of(orion(x_auth_token="secret:t", oauth2=oauth2)) == [
        'uplinks[0]: must set X-Auth-Token from one place, got both x_auth_token and oauth2.header = "x-auth-token"; '
        "keep one of them",
    ]
    assert errors_of(orion(x_auth_token="secret:t", headers={"x-auth-token": "secret:u"})) == [
        "uplinks[0]: must set 'x-auth-token' from one place, got it in headers and in the token settings; "
        "remove it from headers",
    ]


def test_choices_and_ranges() -> None:
    ld = {"name": "ld", "type": "ngsi-ld", "url": "ftp://ld", "context_mode": "embedded", "tenant": "Kumamoto"}
    assert errors_of(orion(catch_up="latest", max_batch_bytes=10, timeout_s=0), ld) == [
        "uplinks[0].timeout_s: input should be greater than 0, got 0",
        "uplinks[0].max_batch_bytes: input should be greater than or equal to 1024, got 10",
        "uplinks[0].catch_up: input should be 'full-history' or 'latest-state', got \"latest\"",
        'uplinks[1].url: must be an http(s) URL, got "ftp://ld"',
        "uplinks[1].context_mode: input should be 'link' or 'inline', got \"embedded\"",
        'uplinks[1].tenant: must be 1-50 characters of a-z 0-9 _ (lower case; Orion\'s Fiware-Service), got "Kumamoto"',
    ]


def test_drain_rate_and_start_delay_default_and_bounds() -> None:
    config = parse_config(
        {
            "gateway": {"id": "gw-001"},
            "uplinks": [orion(), orion(name="paced", retry_max_s=30, drain_rate=250, start_delay_max_s=0)],
        }
    )
    default, paced = config.uplinks
    # unlimited, and the start delay spreads as far as the backoff's own jitter
    assert (default.drain_rate, default.start_delay_s) == (None, 5.0)
    assert (paced.drain_rate, paced.start_delay_s) == (250, 0.0)
    assert errors_of(orion(drain_rate=0, start_delay_max_s=-1)) == [
        "uplinks[0].drain_rate: input should be greater than 0, got 0",
        "uplinks[0].start_delay_max_s: input should be greater than or equal to 0, got -1",
    ]

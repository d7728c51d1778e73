"""Credentials never go over plain http to another host unless the uplink says `allow_insecure_http = true`.

Review cfgfix, fault 2: an `http://` `oauth2.token_url` received `Authorization: Basic <client:secret>` and an
`http://` `url` the tokens, without a word. RFC 6749 §3.2 requires TLS at the token endpoint. A loopback host
stays allowed (the credential never leaves the box: a local IoT Agent, the tests' doubles).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from gateway.uplinks.ngsi_ld import NgsiLdUplink
from gateway.uplinks.orion import OrionUplink

OAUTH2 = {"token_url": "https://idm.example.jp/oauth2/token", "client_id": "gw-001", "client_secret": "secret:idm"}
FIX = (
    "use https://, or set allow_insecure_http = true on the uplink if it is a lab or a closed network (at your own "
    "risk: anyone on the way can read and reuse the credentials)"
)
LOOPBACK_ONLY = "must be an https:// URL unless its host is this box (127.0.0.1, ::1, localhost)"


def orion(**keys: Any) -> dict[str, Any]:
    return {"name": "orion", "type": "orion", "url": "https://orion.example.jp", **keys}


def errors_of(*uplinks: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": {"id": "gw-001"}, "uplinks": list(uplinks)})
    return info.value.errors


def loads(*uplinks: dict[str, Any]) -> None:
    parse_config({"gateway": {"id": "gw-001"}, "uplinks": list(uplinks)})


def url_error(i: int, sent: str, host: str) -> str:
    return (
        f"uplinks[{i}].url: {LOOPBACK_ONLY}: credentials go with every request ({sent}), got http:// to host "
        f'"{host}"; {FIX}'
    )


def token_url_error(i: int, host: str) -> str:
    return (
        f"uplinks[{i}].oauth2.token_url: {LOOPBACK_ONLY}: the client secret and the access tokens go over it "
        f'(RFC 6749 §3.2 requires TLS), got http:// to host "{host}"; {FIX}'
    )


def test_an_http_token_url_off_the_box_is_refused_naming_its_host() -> None:
    assert errors_of(orion(oauth2={**OAUTH2, "token_url": "http://idm.example.jp:8080/oauth2/token"})) == [
        token_url_error(0, "idm.example.jp")
    ]


def test_an_http_url_off_the_box_is_refused_when_credentials_go_with_it() -> None:
    assert errors_of(
        orion(url="http://orion.example.jp:1026", x_auth_token="secret:orion_token"),
        {
            "name": "ld",
            "type": "ngsi-ld",
            "url": "http://192.0.2.10:1026",
            "headers": {"apikey": "secret:ld_key", "X-Gateway": "gw-001", "X-Tenant-Ref": "env:TENANT"},
        },
        orion(
            name="both",
            url="http://ORION.example.jp",
            oauth2={**OAUTH2, "token_url": "http://[2001:db8::5]/token"},
        ),
    ) == [
        url_error(0, "x_auth_token", "orion.example.jp"),
        # a header from the secret store is a credential whatever its name; a header in clear is not
        url_error(1, "header 'apikey', header 'X-Tenant-Ref'", "192.0.2.10"),
        url_error(2, "the oauth2 access token", "orion.example.jp"),
        token_url_error(2, "2001:db8::5"),
    ]


def test_an_http_url_without_credentials_loads() -> None:
    loads(orion(url="http://orion.example.jp:1026", headers={"X-Gateway": "gw-001"}))


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LocalHost"],
)
def test_a_loopback_host_keeps_credentials_on_the_box_and_loads(host: str) -> None:
    loads(
        orion(
            url=f"http://{host}:1026",
            headers={"apikey": "secret:k"},
            oauth2={**OAUTH2, "token_url": f"http://{host}:3005/oauth2/token"},
        )
    )


@pytest.mark.parametrize(
    "host", ["localhost.example.jp", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1", "[::ffff:192.0.2.1]", "[fe80::1]"]
)
def test_hosts_that_only_look_local_are_off_the_box(host: str) -> None:
    shown = host.strip("[]").lower()
    assert errors_of(orion(url=f"http://{host}:1026", x_auth_token="secret:t")) == [url_error(0, "x_auth_token", shown)]


def test_the_opt_in_loads_and_https_needs_none() -> None:
    loads(
        orion(
            url="http://orion.lab:1026",
            x_auth_token="secret:t",
            oauth2={**OAUTH2, "token_url": "http://idm.lab/token", "header": "authorization"},
            allow_insecure_http=True,
        ),
        orion(name="secure", x_auth_token="secret:t", oauth2=OAUTH2),
    )


async def test_the_opt_in_is_warned_of_once_at_start_naming_the_uplink_and_hosts_never_the_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SecretStore(tmp_path)
    store.set("orion_token", "tok-s3cr3t-orion")
    store.set("idm", "client-s3cr3t-idm")
    config = parse_config(
        {
            "gateway": {"id": "gw-001"},
            "uplinks": [
                orion(
                    url="http://orion.lab:1026",
                    headers={"X-Api-Key": "secret:orion_token"},
                    oauth2={**OAUTH2, "token_url": "http://idm.lab:8080/token"},
                    allow_insecure_http=True,
                ),
                {
                    "name": "ld",
                    "type": "ngsi-ld",
                    "url": "http://ld.lab:1026",
                    "x_auth_token": "secret:orion_token",
                    "allow_insecure_http": True,
                },
            ],
        }
    )
    context = AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))
    caplog.set_level(logging.DEBUG)
    for up in (OrionUplink(config.uplinks[0], context), NgsiLdUplink(config.uplinks[1], context)):
        await up.start()
        await up.close()
    warnings = [(r.component, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]  # type: ignore[attr-defined]
    advice = (
        "(allow_insecure_http = true): anyone on the network between can read and reuse them; use only on a lab or "
        "a closed network, https:// elsewhere"
    )
    assert warnings == [
        ("orion", f"credentials go over plain http to orion.lab, idm.lab {advice}"),
        ("ld", f"credentials go over plain http to ld.lab {advice}"),
    ]
    assert not [r for r in caplog.records if "s3cr3t" in r.getMessage()]


async def test_no_warning_where_nothing_goes_off_the_box_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(tmp_path).set("t", "tok")
    config = parse_config(
        {
            "gateway": {"id": "gw-001"},
            "uplinks": [
                orion(url="http://127.0.0.1:1026", x_auth_token="secret:t", allow_insecure_http=True),
                orion(name="tls", x_auth_token="secret:t", allow_insecure_http=True),
                orion(name="plain", url="http://orion.lab:1026", allow_insecure_http=True),
            ],
        }
    )
    caplog.set_level(logging.DEBUG)
    for section in config.uplinks:
        up = OrionUplink(section, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
        await up.start()
        await up.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

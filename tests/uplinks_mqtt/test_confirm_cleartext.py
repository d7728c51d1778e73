"""`[uplinks.confirm]` credentials over plain http to another host are warned of, not refused.

Review cleartext3: commit 0bd38a6 warns of credentials going over plain http off the box for the Orion and NGSI-LD
uplinks, but the MQTT uplink's confirmation queries (`x_auth_token`, `secret:` headers, the oauth2 token and client
secret) went to any `http://` Orion without a word. Same rule and words as there, as warnings (a config valid
before must not stop an upgraded box); the opt-in is a key of this table, since the uplink's own password goes
to the broker and the key there would be unknown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.config import config_warnings, parse_config
from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from gateway.uplinks.mqtt import MqttUplink
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import V2_QUERY, OrionDouble
from tests.uplinks_mqtt.conftest import reading, subscribe

OAUTH2 = {"token_url": "https://idm.example.jp/oauth2/token", "client_id": "gw-001", "client_secret": "secret:idm"}
ADVICE = (
    "anyone on the network between can read and reuse them; use https://, or set allow_insecure_http = true in "
    "[uplinks.confirm] if this network is closed"
)


def mqtt(confirm: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return {
        "name": "pref-mqtt",
        "type": "mqtt",
        "host": "broker.example.jp",
        "apikey": "K3Y",
        "confirm": confirm,
        **keys,
    }


def warnings_of(*uplinks: dict[str, Any]) -> list[str]:
    return config_warnings(parse_config({"gateway": {"id": "gw-001"}, "uplinks": list(uplinks)}))


def test_an_http_confirm_url_or_token_url_off_the_box_loads_and_is_warned_of_naming_the_key_host_and_way_out() -> None:
    assert warnings_of(
        mqtt({"url": "http://orion.example.jp:1026", "x_auth_token": "secret:orion_token"}),
        mqtt(
            {
                "url": "http://192.0.2.10:1026",
                "headers": {"apikey": "secret:k", "X-Gateway": "gw-001"},
                "oauth2": {**OAUTH2, "token_url": "http://IDM.example.jp:8080/token"},
            },
            name="second",
        ),
    ) == [
        f'uplinks[0].confirm.url: credentials (x_auth_token) go over plain http to host "orion.example.jp": {ADVICE}',
        # a header from the secret store is a credential whatever its name; a header in clear is not
        "uplinks[1].confirm.url: credentials (the oauth2 access token, header 'apikey') go over plain http to host "
        f'"192.0.2.10": {ADVICE}',
        "uplinks[1].confirm.oauth2.token_url: the client secret and the access tokens go over plain http to host "
        f'"idm.example.jp" (RFC 6749 §3.2 requires TLS): {ADVICE}',
    ]


def test_without_credentials_on_loopback_over_https_or_with_the_opt_in_nothing_is_warned_of() -> None:
    assert (
        warnings_of(
            mqtt({"url": "http://orion.example.jp:1026", "headers": {"X-Gateway": "gw-001"}}, name="plain"),
            mqtt(
                {
                    "url": "http://[::1]:1026",
                    "x_auth_token": "secret:t",
                    "oauth2": {**OAUTH2, "token_url": "http://localhost:3005/token", "header": "authorization"},
                },
                name="loopback",
            ),
            mqtt({"url": "https://orion.example.jp", "x_auth_token": "secret:t", "oauth2": OAUTH2}, name="tls"),
            mqtt(
                {
                    "url": "http://orion.lab:1026",
                    "x_auth_token": "secret:t",
                    "oauth2": {**OAUTH2, "token_url": "http://idm.lab/token", "header": "authorization"},
                    "allow_insecure_http": True,
                },
                name="lab",
            ),
            mqtt({"url": "http://orion.lab:1026"}, name="none", format="iota-ul"),
        )
        == []
    )


def test_the_opt_in_belongs_to_the_confirm_table_not_the_uplink() -> None:
    # the MQTT uplink's own credentials go to the broker, not over http: the key there is unknown, and said so
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "gateway": {"id": "gw-001"},
                "uplinks": [
                    mqtt({"url": "http://orion.lab:1026", "x_auth_token": "secret:t"}, allow_insecure_http=True)
                ],
            }
        )
    [unknown] = info.value.errors
    assert unknown.startswith("uplinks[0].allow_insecure_http: unknown key; valid keys here: ack_timeout_s, ")


async def started(
    broker: MosquittoBroker, orion: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture, *, allow: bool
) -> list[logging.LogRecord]:
    SecretStore(tmp_path).set("orion_token", "tok-s3cr3t-orion")
    # Linux connects to 0.0.0.0 as to this host, so the double answers; the rule, rightly, counts it off the box
    off_box = orion.url.replace("127.0.0.1", "0.0.0.0")
    config = parse_config(
        {
            "gateway": {"id": "gw-001"},
            "uplinks": [
                mqtt(
                    {
                        "url": off_box,
                        "service": "edgegw",
                        "service_path": "/river",
                        "timeout_s": 0.5,
                        "x_auth_token": "secret:orion_token",
                        "allow_insecure_http": allow,
                    },
                    host=broker.host,
                    port=broker.port,
                )
            ],
        }
    )
    up = MqttUplink(config.uplinks[0], AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    caplog.set_level(logging.DEBUG)
    async with subscribe(broker, "/K3Y/#"):
        await up.start()
        try:
            await up.deliver([reading(seq=1)])
        finally:
            await up.close()
    # the confirmation query carried the credential, over plain http
    [query, *_] = orion.requests_to(V2_QUERY)
    assert query.headers["X-Auth-Token"] == "tok-s3cr3t-orion"
    assert not [r for r in caplog.records if "s3cr3t" in r.getMessage()]
    return [r for r in caplog.records if "plain http" in r.getMessage()]


async def test_a_start_warns_once_naming_the_host_and_the_fix_and_the_queries_carry_the_credential(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    said = await started(mosquitto_private, orion_double, tmp_path, caplog, allow=False)
    assert [(r.levelno, r.component, r.getMessage()) for r in said] == [  # type: ignore[attr-defined]
        (logging.WARNING, "pref-mqtt", f"confirmation: credentials go over plain http to 0.0.0.0: {ADVICE}")
    ]


async def test_with_the_opt_in_a_start_says_it_once_at_info(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    said = await started(mosquitto_private, orion_double, tmp_path, caplog, allow=True)
    assert [(r.levelno, r.component, r.getMessage()) for r in said] == [  # type: ignore[attr-defined]
        (
            logging.INFO,
            "pref-mqtt",
            "confirmation: credentials go over plain http to 0.0.0.0 (confirm.allow_insecure_http = true)",
        )
    ]

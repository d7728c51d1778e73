"""An http_poll adapter's `secret:`/`env:` headers and parameters over plain http to another host are warned of.

Review cleartext3: commit 0bd38a6 warns of credentials going over plain http off the box for the Orion and NGSI-LD
uplinks; an http_poll `url = "http://..."` still sent its API key with every poll without a word. Warned of by
`edgegw check-config` and once at the adapter's start, not refused (a config valid before must not stop an
upgraded box); `allow_insecure_http = true` on the adapter silences it. A URL without credentials (open data over
http, common on municipal portals) is not warned of.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.http_poll.config import HttpPollConfig
from gateway.config import config_warnings, parse_config
from gateway.secrets import SecretStore
from tests.adapters.http_poll.peers import DocServer, serve, wait_for
from tests.adapters.http_poll.test_adapter import LOGGER, running

ADVICE = (
    "anyone on the network between can read and reuse them; use https://, or set allow_insecure_http = true if this "
    "network is closed"
)
MAPPING = {
    "items": "stations",
    "entity_id": "urn:ngsi-ld:WaterObserved:{code}",
    "entity_type": "WaterObserved",
    "attributes": [{"path": "level", "name": "waterLevel", "unit": "MTR"}],
}
UPLINKS = [{"name": "orion", "type": "orion", "url": "https://orion.example.jp"}]
KEY = "k3y-s3cr3t-0123"


def poll(url: str, **keys: Any) -> dict[str, Any]:
    return {"name": "river", "type": "http_poll", "url": url, "mappings": [MAPPING], **keys}


def warnings_of(*adapters: dict[str, Any]) -> list[str]:
    return config_warnings(parse_config({"gateway": {"id": "gw-001"}, "adapters": list(adapters), "uplinks": UPLINKS}))


def test_an_http_url_off_the_box_loads_and_is_warned_of_when_credentials_go_with_it() -> None:
    assert warnings_of(
        poll("http://bousai.example.lg.jp/river.json", headers={"X-Api-Key": "secret:k", "Accept": "text/json"}),
        poll("http://192.0.2.7/r", name="second", params={"appid": "env:APP", "pref": "43"}),
    ) == [
        f"adapters[0].url: credentials (header 'X-Api-Key') go over plain http to host \"bousai.example.lg.jp\": {ADVICE}",
        f"adapters[1].url: credentials (parameter 'appid') go over plain http to host \"192.0.2.7\": {ADVICE}",
    ]


def test_adapters_are_warned_of_before_uplinks() -> None:
    config = parse_config(
        {
            "gateway": {"id": "gw-001"},
            "adapters": [poll("http://portal.lab/r", headers={"X-Api-Key": "secret:k"})],
            "uplinks": [{**UPLINKS[0], "url": "http://orion.lab", "x_auth_token": "secret:t"}],
        }
    )
    assert [line.partition(":")[0] for line in config_warnings(config)] == ["adapters[0].url", "uplinks[0].url"]


def test_without_credentials_on_loopback_over_https_or_with_the_opt_in_nothing_is_warned_of() -> None:
    assert (
        warnings_of(
            poll(
                "http://bousai.example.lg.jp/river.json", headers={"Accept": "application/json"}, params={"pref": "43"}
            ),
            poll("http://127.0.0.1:8080/r", name="loopback", headers={"X-Api-Key": "secret:k"}),
            poll("http://localhost/r", name="localhost", params={"apikey": "env:K"}),
            poll("https://bousai.example.lg.jp/r", name="tls", headers={"X-Api-Key": "secret:k"}),
            poll("http://portal.lab/r", name="lab", headers={"X-Api-Key": "secret:k"}, allow_insecure_http=True),
        )
        == []
    )


async def polled(tmp_path: Path, caplog: pytest.LogCaptureFixture, **keys: Any) -> list[tuple[int, str]]:
    SecretStore(tmp_path).set("portal-key", KEY)
    caplog.set_level(logging.DEBUG)
    async with serve(DocServer(body=b'{"stations": []}')) as server:
        # Linux connects to 0.0.0.0 as to this host, so the server answers; the rule, rightly, counts it off the box
        off_box = server.url.replace("127.0.0.1", "0.0.0.0")
        cfg = HttpPollConfig.model_validate(poll(off_box, interval_s=0.05, timeout_s=0.05, **keys))
        async with running(cfg, tmp_path) as (adapter, _got):
            await wait_for(lambda: adapter.polls >= 3, what="three polls")
    assert server.requests[0].headers.get("X-Api-Key") == (KEY if "X-Api-Key" in keys["headers"] else None)
    assert KEY not in caplog.text
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER and "plain http" in r.getMessage()]


async def test_a_start_warns_once_naming_the_host_and_the_fix_and_the_poll_carries_the_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    said = await polled(tmp_path, caplog, headers={"X-Api-Key": "secret:portal-key"})
    assert said == [(logging.WARNING, f"credentials go over plain http to 0.0.0.0: {ADVICE}")]


async def test_with_the_opt_in_a_start_says_it_once_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    said = await polled(tmp_path, caplog, headers={"X-Api-Key": "secret:portal-key"}, allow_insecure_http=True)
    assert said == [(logging.INFO, "credentials go over plain http to 0.0.0.0 (allow_insecure_http = true)")]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING] == []


async def test_nothing_is_said_where_no_credential_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert await polled(tmp_path, caplog, headers={"Accept": "application/json"}) == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

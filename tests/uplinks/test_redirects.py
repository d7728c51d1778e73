"""Redirects are never followed and only the broker's own success statuses count as delivered.

Followed, a 301/302/303 turned the POST into a body-less GET whose 200 (a login page, a captive portal)
marked the batch delivered, and a redirect to another host took `X-Auth-Token` and `secret:` headers
along (307/308 the readings too). Now a 3xx is a configuration refusal naming the status and where
it points, credentials masked; so is a 2xx the broker never sends. Real loopback peers throughout:
the strict Orion double as the broker and its token endpoint, a scripted peer for what stands in front.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway import redact
from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.secrets import SecretStore
from gateway.uplinks.api import Fault, Outcome, Status
from gateway.uplinks.http import client
from gateway.uplinks.http.batch import HttpBatchUplink
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import TOKEN_PATH, V2_UPDATE, OrionDouble
from tests.uplinks.scripted_peer import ScriptedPeer

TOKEN = "tok-SUPERSECRET-3f9a"
APIKEY = "apikey-SUPERSECRET-77"
CLIENT_SECRET = "cs-SUPERSECRET-123"
LOGIN_PAGE = "<html><head><title>Sign in</title></head><body>login</body></html>"


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{n}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=float(n), type="Number", unit="MTR")},
        observed_at=datetime(2024, 7, 1, 3, 0, tzinfo=UTC),
        source=Source(adapter="gauge"),
    )


def orion(url: str, tmp_path: Path, **keys: Any) -> OrionUplink:
    SecretStore(tmp_path).set("orion_token", TOKEN)
    SecretStore(tmp_path).set("gw_apikey", APIKEY)
    doc = {
        "name": "orion-main",
        "type": "orion",
        "url": url,
        "service": "hitoyoshi",
        "service_path": "/river",
        "x_auth_token": "secret:orion_token",
        "headers": {"apikey": "secret:gw_apikey"},
    }
    doc.update(keys)
    return OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


def ngsi_ld(url: str, tmp_path: Path) -> NgsiLdUplink:
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": url}
    return NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def deliver(up: HttpBatchUplink, batch: list[Reading]) -> list[Outcome]:
    await up.start()
    try:
        return await up.deliver(batch)
    finally:
        await up.close()


def refused_with(outcomes: list[Outcome], reason: str) -> bool:
    return outcomes == [Outcome(Status.RETRY, reason, Fault.CONFIGURATION)] * len(outcomes)


@pytest.mark.parametrize("status", [301, 302, 303])
async def test_a_redirect_to_a_login_page_is_refused_not_delivered(status: int, tmp_path: Path) -> None:
    async with ScriptedPeer(200, body=LOGIN_PAGE) as portal, ScriptedPeer(status, location=portal.url + "/login") as lb:
        up = orion(lb.url, tmp_path)
        outcomes = await deliver(up, [reading(1), reading(2)])
    assert refused_with(
        outcomes,
        f"Orion at {lb.url}/v2/op/update answered with a redirect, got HTTP {status} to {portal.url}/login; "
        "redirects are not followed (readings and credentials would go to another address), readings stay "
        "buffered: set url to the broker's own address",
    )
    assert [s.method for s in lb.seen] == ["POST"] and portal.seen == []
    assert up.counters.delivered == 0


@pytest.mark.parametrize("status", [307, 308])
async def test_a_redirect_to_another_broker_takes_neither_readings_nor_credentials_there(
    status: int, orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.require_x_auth_token(TOKEN)  # followed, the other host would take the readings
    async with ScriptedPeer(status, location=orion_double.url + V2_UPDATE) as lb:
        up = orion(lb.url, tmp_path)
        outcomes = await deliver(up, [reading(1)])
    assert refused_with(
        outcomes,
        f"Orion at {lb.url}/v2/op/update answered with a redirect, got HTTP {status} to {orion_double.url}"
        "/v2/op/update; redirects are not followed (readings and credentials would go to another address), "
        f'readings stay buffered: set url to the broker\'s own address (this redirect says url = "{orion_double.url}")',
    )
    assert orion_double.requests == [] and orion_double.entities == {}
    [sent] = lb.seen
    assert (sent.headers["X-Auth-Token"], sent.headers["apikey"]) == (TOKEN, APIKEY)  # only to the configured url


async def test_a_location_is_shown_without_the_credentials_it_carries(tmp_path: Path) -> None:
    location = f"https://gw:pw-{TOKEN}@login.example.jp/sso/{TOKEN}?ticket=ST-991-x&next=/v2/op/update&{APIKEY}#f"
    async with ScriptedPeer(302, location=location) as lb:
        up = orion(lb.url, tmp_path)
        outcomes = await deliver(up, [reading(1)])
    assert refused_with(
        outcomes,
        f"Orion at {lb.url}/v2/op/update answered with a redirect, got HTTP 302 to "
        "https://***@login.example.jp/sso/***?ticket=***&next=***&***; redirects are not followed (readings and "
        "credentials would go to another address), readings stay buffered: set url to the broker's own address",
    )
    assert TOKEN not in up.counters.last_error and APIKEY not in up.counters.last_error


async def test_a_relative_redirect_names_the_address_to_configure(tmp_path: Path) -> None:
    # a platform that moved Orion under a prefix, and says so with a relative Location
    async with ScriptedPeer(308, location="/orion/v2/op/update") as lb:
        outcomes = await deliver(orion(lb.url, tmp_path), [reading(1)])
    assert outcomes[0].reason.endswith(
        f"got HTTP 308 to {lb.url}/orion/v2/op/update; redirects are not followed (readings and credentials would "
        f"go to another address), readings stay buffered: set url to the broker's own address (this redirect says "
        f'url = "{lb.url}/orion")'
    )


async def test_a_redirect_without_a_location_is_refused_too(tmp_path: Path) -> None:
    async with ScriptedPeer(302) as lb:
        outcomes = await deliver(orion(lb.url, tmp_path), [reading(1)])
    assert outcomes[0].fault is Fault.CONFIGURATION
    assert "answered with a redirect, got HTTP 302 to no Location;" in outcomes[0].reason


async def test_a_200_page_is_not_orions_204(tmp_path: Path) -> None:
    # a captive portal answering the POST itself
    async with ScriptedPeer(200, body=LOGIN_PAGE) as portal:
        up = orion(portal.url, tmp_path)
        outcomes = await deliver(up, [reading(1), reading(2)])
    assert refused_with(
        outcomes,
        f"Orion at {portal.url}/v2/op/update answered with a success Orion never sends for this request, got "
        "HTTP 200: Sign in (an HTML page: a proxy or web server answered, not Orion's API); Orion answers 204: "
        "something else answered (a login page, a captive portal, a proxy), readings stay buffered: check url",
    )
    assert up.counters.delivered == 0


@pytest.mark.parametrize("status", [200, 202])
async def test_ngsi_ld_counts_only_201_204_and_207(status: int, tmp_path: Path) -> None:
    async with ScriptedPeer(status, body='{"ok": true}', content_type="application/json") as peer:
        outcomes = await deliver(ngsi_ld(peer.url, tmp_path), [reading(1)])
    assert refused_with(
        outcomes,
        f"the NGSI-LD broker at {peer.url}/ngsi-ld/v1/entityOperations/upsert?options=update answered with a "
        f'success the NGSI-LD broker never sends for this request, got HTTP {status}: {{"ok": true}}; the NGSI-LD '
        "broker answers 201, 204 or 207: something else answered (a login page, a captive portal, a proxy), "
        "readings stay buffered: check url",
    )


async def test_ngsi_ld_does_not_follow_a_redirect(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with ScriptedPeer(303, location=orion_double.url + "/ngsi-ld/v1/entityOperations/upsert") as lb:
        outcomes = await deliver(ngsi_ld(lb.url, tmp_path), [reading(1)])
    assert outcomes[0].fault is Fault.CONFIGURATION and outcomes[0].status is Status.RETRY
    assert outcomes[0].reason.startswith(
        f"the NGSI-LD broker at {lb.url}/ngsi-ld/v1/entityOperations/upsert?options=update answered with a "
        f"redirect, got HTTP 303 to {orion_double.url}/ngsi-ld/v1/entityOperations/upsert;"
    )
    assert orion_double.requests == []


async def test_the_token_request_does_not_follow_a_redirect_with_the_client_secret(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # client_auth = "post": the secret is in the form body, which a 307 would send to the other host
    SecretStore(tmp_path).set("idm_client", CLIENT_SECRET)
    orion_double.require_oauth("gw-001", CLIENT_SECRET)
    async with ScriptedPeer(307, location=orion_double.url + TOKEN_PATH) as idm_lb:
        oauth2 = {
            "token_url": idm_lb.url + TOKEN_PATH,
            "client_id": "gw-001",
            "client_secret": "secret:idm_client",
            "client_auth": "post",
        }
        doc = {"name": "orion-main", "type": "orion", "url": orion_double.url, "oauth2": oauth2}
        up = OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
        outcomes = await deliver(up, [reading(1)])
    assert refused_with(
        outcomes,
        f"orion-main.oauth2: token endpoint answered with a redirect, got HTTP 307 to {orion_double.url}/oauth2/token; "
        "redirects are not followed (the client credentials would go to another address): set oauth2.token_url to "
        "the identity server's token endpoint",
    )
    assert orion_double.requests == [] and orion_double.token_fetches == 0
    [asked] = idm_lb.seen
    assert asked.body.endswith(b"client_secret=" + CLIENT_SECRET.encode())  # sent to token_url only


@settings(max_examples=300, deadline=None)
@given(
    location=st.text(max_size=300),
    value=st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=8, max_size=40),
)
def test_a_shown_location_is_short_and_holds_no_query_value_nor_secret(location: str, value: str) -> None:
    # whatever a far side puts in Location: a value after `?` is masked whatever its name, a
    # registered secret anywhere, and the text stays short enough for a status line
    assume(value not in location)
    redact.register(TOKEN)
    try:
        for raw in (f"{location}?k={value}", f"{location}/{TOKEN}/{location}", f"https://gw:{TOKEN}@{location}"):
            answer = client.HttpResponse(status=302, body=b"", content_type="", location=raw)
            shown = client.redirect_target(answer, "http://o:1/v2")
            assert len(shown) <= 200
            assert value not in shown and TOKEN not in shown
    finally:
        redact.clear()

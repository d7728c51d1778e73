"""OAuth2 client credentials against the double's own token endpoint: fetch, cache, refresh, re-fetch on 401."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.errors import UplinkTransient
from gateway.records import Attribute, Reading, Source
from gateway.secrets import SecretStore
from gateway.tls import TlsSection
from gateway.uplinks.api import DELIVERED, Status
from gateway.uplinks.http.client import make_session
from gateway.uplinks.http.oauth2 import OAuth2Config, TokenSource
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import TOKEN_PATH, V2_UPDATE, ManualClock, OrionDouble
from tests.support.ports import free_port


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{n}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=float(n), type="Number")},
        observed_at=datetime(2024, 7, 1, tzinfo=UTC),
        source=Source(adapter="gauge"),
    )


def make_uplink(orion: OrionDouble, tmp_path: Path, clock: ManualClock, **oauth: Any) -> OrionUplink:
    SecretStore(tmp_path).set("platform_client", "s3cret")
    oauth2 = {"token_url": orion.url + TOKEN_PATH, "client_id": "gw-001", "client_secret": "secret:platform_client"}
    oauth2.update(oauth)
    config = OrionConfig.model_validate({"name": "orion-main", "type": "orion", "url": orion.url, "oauth2": oauth2})
    return OrionUplink(config, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)), clock=clock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_token_is_fetched_once_reused_and_refreshed_before_expiry(tmp_path: Path, clock: ManualClock) -> None:
    async with OrionDouble(clock=clock) as orion:
        orion.require_oauth("gw-001", "s3cret", expires_in=60)
        up = make_uplink(orion, tmp_path, clock)
        await up.start()
        try:
            assert await up.deliver([reading(1)]) == [DELIVERED]
            clock.advance(50)
            assert await up.deliver([reading(2)]) == [DELIVERED]
            assert orion.token_fetches == 1
            # 60 s token: refreshed 6 s (a tenth of its life) before it runs out, never used expired
            clock.advance(4.5)
            assert await up.deliver([reading(3)]) == [DELIVERED]
            assert orion.token_fetches == 2
        finally:
            await up.close()
        updates = orion.requests_to(V2_UPDATE)
        assert [r.status for r in updates] == [204, 204, 204]
        tokens = [r.headers["Authorization"] for r in updates]
        assert tokens[0] == tokens[1] != tokens[2] and tokens[0].startswith("Bearer ")
        [first_fetch, _] = orion.requests_to(TOKEN_PATH)
        assert first_fetch.body == b"grant_type=client_credentials"
        assert first_fetch.headers["Authorization"] == "Basic Z3ctMDAxOnMzY3JldA=="  # gw-001:s3cret


async def test_401_drops_the_token_and_refetches_once(tmp_path: Path, clock: ManualClock) -> None:
    async with OrionDouble(clock=clock) as orion:
        orion.require_oauth("gw-001", "s3cret", expires_in=3600)
        up = make_uplink(orion, tmp_path, clock)
        await up.start()
        try:
            assert await up.deliver([reading(1)]) == [DELIVERED]
            orion.revoke_tokens()  # the authorization server rotated its keys
            assert await up.deliver([reading(2)]) == [DELIVERED]
        finally:
            await up.close()
        assert [r.status for r in orion.requests_to(V2_UPDATE)] == [204, 401, 204]
        assert orion.token_fetches == 2


async def test_client_secret_post_with_scope_and_audience(tmp_path: Path, clock: ManualClock) -> None:
    async with OrionDouble(clock=clock) as orion:
        orion.require_oauth("gw-001", "s3cret")
        up = make_uplink(orion, tmp_path, clock, client_auth="post", scope="orion:write", audience="orion")
        await up.start()
        try:
            assert await up.deliver([reading(1)]) == [DELIVERED]
        finally:
            await up.close()
        [fetch] = orion.requests_to(TOKEN_PATH)
        assert fetch.body == (
            b"grant_type=client_credentials&scope=orion%3Awrite&audience=orion&client_id=gw-001&client_secret=s3cret"
        )
        assert "Authorization" not in fetch.headers


async def test_x_auth_token_header_for_a_keyrock_pep_proxy(tmp_path: Path, clock: ManualClock) -> None:
    async with OrionDouble(clock=clock) as orion:
        up = make_uplink(orion, tmp_path, clock, header="x-auth-token")
        orion.require_oauth("gw-001", "s3cret")
        await up.start()
        try:
            await up.deliver([reading(1)])
        finally:
            await up.close()
        [fetch, update] = orion.requests
        token = orjson.loads(fetch.response)["access_token"]
        assert update.headers["X-Auth-Token"] == token and "Authorization" not in update.headers


async def test_wrong_client_secret_is_retry_never_rejected(tmp_path: Path, clock: ManualClock) -> None:
    async with OrionDouble(clock=clock) as orion:
        orion.require_oauth("gw-001", "another-secret")
        up = make_uplink(orion, tmp_path, clock)
        await up.start()
        try:
            outcomes = await up.deliver([reading(1), reading(2)])
        finally:
            await up.close()
        assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY]
        assert outcomes[0].reason == (
            "orion-main.oauth2: token endpoint refused the client credentials, got HTTP 401 invalid_client "
            "(Invalid client credentials); check oauth2.client_id and the secret secret:platform_client"
        )
        assert orion.requests_to(V2_UPDATE) == []


async def test_token_source_without_expires_in_and_concurrent_callers(
    orion_double_plain: OrionDouble, clock: ManualClock
) -> None:
    orion_double_plain.require_oauth("gw-001", "s3cret")
    session = make_session(tls=TlsSection(), timeout_s=5, where="t")
    try:
        config = OAuth2Config(token_url=orion_double_plain.url + TOKEN_PATH, client_id="gw-001", client_secret="env:X")
        source = TokenSource(config, "s3cret", session, where="t", clock=clock)
        tokens = await asyncio.gather(*(source.token() for _ in range(5)))
        assert len(set(tokens)) == 1 and source.fetches == 1
        source.invalidate("some-other-token")  # a stale 401 must not drop the newer token
        assert await source.token() == tokens[0] and source.fetches == 1
        source.invalidate(tokens[0])
        assert await source.token() != tokens[0] and source.fetches == 2
    finally:
        await session.close()


async def test_unreachable_token_endpoint_raises_transient(clock: ManualClock) -> None:
    session = make_session(tls=TlsSection(), timeout_s=5, where="t")
    try:
        url = f"http://127.0.0.1:{free_port()}/oauth2/token"
        source = TokenSource(
            OAuth2Config(token_url=url, client_id="gw", client_secret="env:X"), "x", session, where="u", clock=clock
        )
        with pytest.raises(UplinkTransient) as info:
            await source.token()
        assert info.value.message.startswith(f"u.oauth2: cannot reach {url}, got Cannot connect to host")
    finally:
        await session.close()


@pytest.fixture
async def orion_double_plain(clock: ManualClock) -> Any:
    async with OrionDouble(clock=clock) as orion:
        yield orion

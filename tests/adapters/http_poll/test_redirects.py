"""Redirects are refused, not followed: another address would get the credential headers and pass for the URL."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from gateway.secrets import SecretStore
from tests.adapters.http_poll.peers import DocServer, self_signed, serve, server_tls, wait_for
from tests.adapters.http_poll.test_adapter import LOGGER, config, river_doc, running, warnings_of


@dataclass(kw_only=True)
class Redirector(DocServer):
    """Answers every GET with `status` and a Location header."""

    location: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await super().handle(request)  # recorded like any request; its answer is replaced
        return web.Response(status=self.status, headers={"Location": self.location})


async def test_a_redirect_to_another_host_is_a_failed_poll_and_the_key_stays_home(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    SecretStore(tmp_path).set("portal-key", "k3y-0123456789")
    other = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10")))
    cert, key = self_signed(tmp_path)
    portal = Redirector(status=302)
    async with serve(other, path="/steal"), serve(portal, ssl_context=server_tls(cert, key)):
        portal.location = other.url + "?ticket=s3cr3t-t1cket&pref=43"
        # a TLS handshake on a loaded CI machine can outlast the 50 ms the shared config allows
        cfg = config(
            portal.url,
            headers={"X-Api-Key": "secret:portal-key"},
            tls={"ca_file": str(cert)},
            interval_s=0.3,
            timeout_s=0.3,
        )
        async with running(cfg, tmp_path) as (adapter, got):
            await wait_for(lambda: adapter.polls >= 4, what="three polls done")
    assert other.requests == []
    assert got.readings == []
    assert adapter.failed["http_status"] >= 3
    assert portal.requests[0].headers["X-Api-Key"] == "k3y-0123456789"
    detail = (
        f"answered with a redirect, got HTTP 302 Found to {other.url}?ticket=***&pref=***; redirects are not "
        "followed (the headers and parameters, credentials among them, would go to another address): "
        "set url to the final address"
    )
    assert warnings_of(caplog) == [f"polling {portal.url} fails (http_status): {detail}; retrying every 0.3s"]
    assert adapter.diagnostics()["last_error"] == f"http_status: {detail}"
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)


async def test_a_relative_redirect_is_refused_and_shown_as_the_address_it_names() -> None:
    portal = Redirector(status=301, location="/v2/river.json")
    async with serve(portal), running(config(portal.url)) as (adapter, got):
        await wait_for(lambda: adapter.failed["http_status"] >= 2, what="two redirected polls")
    assert got.readings == []
    # followed, the unserved target's 404 would be the last error
    base = portal.url.removesuffix("/river.json")
    assert adapter.last_error.startswith(
        f"http_status: answered with a redirect, got HTTP 301 Moved Permanently to {base}/v2/river.json; "
    )

"""Issue 9, item 7, end to end: a far side that echoes every header and token it was sent back in its error
bodies, and the gateway at debug level; no secret may appear in anything the gateway wrote.

The buffer database is left out of the search: its dead letters are data (the far side's reason for
refusing a record, kept verbatim for `edgegw buffer dead-letters`), not a log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote_plus

import pytest
from aiohttp import web

from gateway.secrets import SecretStore
from tests.e2e.harness import GatewayProcess, wait_until

pytestmark = pytest.mark.e2e

# Random per run, so no match can come from anything but the run; `+`, `/` and `&` make the
# form-encoded and percent-encoded spellings differ from the raw one.
X_AUTH_TOKEN = f"xat-{secrets.token_hex(8)}"
CLIENT_SECRET = f"cs+{secrets.token_hex(6)}/&{secrets.token_hex(6)}"
API_KEY = f"key-{secrets.token_hex(8)}"


@dataclass
class EchoingPlatform:
    """Answers errors whose bodies repeat what it was sent: headers, form fields, tokens."""

    url: str = ""
    issued: list[str] = field(default_factory=list)  # access tokens handed out
    echoed: list[str] = field(default_factory=list)  # every error body sent
    token_requests: dict[str, int] = field(default_factory=dict)  # by client id
    updates: dict[str, int] = field(default_factory=dict)  # by uplink
    answers: list[int] = field(default_factory=list)

    def _error(self, status: int, body: str, content_type: str = "application/json") -> web.Response:
        self.echoed.append(body)
        self.answers.append(status)
        return web.Response(status=status, text=body, content_type=content_type)

    async def token(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        auth = request.headers.get("Authorization", "")
        client = form.get("client_id") or base64.b64decode(auth[6:]).decode().partition(":")[0]
        seen = self.token_requests[client] = self.token_requests.get(client, 0) + 1
        if seen == 1:
            secret = form.get("client_secret") or base64.b64decode(auth[6:]).decode().partition(":")[2]
            return self._error(
                401,
                json.dumps(
                    {
                        "error": "invalid_client",
                        "error_description": f"client {client} with secret {secret} ({auth[6:]}) and body {body} "
                        f"refused; Authorization: {auth}",
                    }
                ),
            )
        token = f"at-{secrets.token_hex(12)}"
        self.issued.append(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    async def update(self, request: web.Request) -> web.Response:
        await request.read()
        headers = dict(request.headers)
        uplink = "orion-post" if "apikey" in headers else "orion-basic"
        n = self.updates[uplink] = self.updates.get(uplink, -1) + 1
        token = headers.get("Authorization", "").removeprefix("Bearer ") or headers.get("X-Auth-Token", "")
        # per uplink: 500, 401 twice (refused again after a fresh token), 400, then 204 twice; and again
        answer = (500, 401, 401, 400, 204, 204)[n % 6]
        if answer == 500:  # an HTML error page of a proxy, with the request's headers
            return self._error(
                500, "<pre>" + "\r\n".join(f"{k}: {v}" for k, v in headers.items()) + "</pre>", "text/html"
            )
        if answer == 401:  # a PEP proxy naming the token it refused
            return self._error(
                401,
                json.dumps({"error": "Unauthorized", "description": f"token {token} is not valid; headers {headers}"}),
            )
        if answer == 400:  # a validation error echoing the request
            return self._error(400, json.dumps({"error": "BadRequest", "description": json.dumps(headers)}))
        self.answers.append(204)
        return web.Response(status=204)


@pytest.fixture
async def platform() -> AsyncIterator[EchoingPlatform]:
    echo = EchoingPlatform()
    app = web.Application()
    app.router.add_post("/token", echo.token)
    app.router.add_post("/v2/op/update", echo.update)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    echo.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield echo
    finally:
        await runner.cleanup()


def written_files(root: Path) -> dict[Path, bytes]:
    """Every file the gateway left under `root` but its buffer, with its bytes."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.startswith("buffer.db")}


def config(url: str) -> str:
    return f"""
[gateway]
id = "gw-echo"
data_dir = "@DATA_DIR@"
log_level = "debug"

[[adapters]]
name = "river"
type = "simulated"
entities = 3
rate = 40

[[uplinks]]
name = "orion-basic"
type = "orion"
url = "{url}"
x_auth_token = "secret:orion_token"
batch_max_rows = 4
retry_initial_s = 0.05
retry_max_s = 0.2

[uplinks.oauth2]
token_url = "{url}/token"
client_id = "gw-basic"
client_secret = "secret:idm_secret"
client_auth = "basic"

[[uplinks]]
name = "orion-post"
type = "orion"
url = "{url}"
headers = {{ apikey = "env:EDGEGW_TEST_APIKEY" }}
batch_max_rows = 4
retry_initial_s = 0.05
retry_max_s = 0.2

[uplinks.oauth2]
token_url = "{url}/token"
client_id = "gw-post"
client_secret = "secret:idm_secret"
client_auth = "post"
header = "x-auth-token"
"""


async def test_no_secret_reaches_the_log_or_the_status_file(
    platform: EchoingPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEGW_TEST_APIKEY", API_KEY)
    gw = GatewayProcess(tmp_path, config(platform.url))
    store = SecretStore(gw.data_dir)
    store.set("orion_token", X_AUTH_TOKEN)
    store.set("idm_secret", CLIENT_SECRET)
    gw.data_dir.mkdir(exist_ok=True)
    (gw.data_dir / "status.json").write_text("{}")
    (gw.data_dir / "status.json").chmod(0o644)  # as an earlier version left it
    gw.start()
    try:
        # both clients refused once and then served, every error kind answered at least twice, data delivered
        await wait_until(
            lambda: (
                platform.token_requests.get("gw-basic", 0) >= 2
                and platform.token_requests.get("gw-post", 0) >= 2
                and all(platform.answers.count(s) >= 2 for s in (500, 401, 400, 204))
            ),
            60,
            "the platform to answer every kind of error",
            gw,
        )
        await wait_until(lambda: bool(gw.status().get("uplinks")), 30, "a status file", gw)
        code, _ = await gw.terminate()
        assert code == 0
    finally:
        gw.stop_now()

    basic = base64.b64encode(f"gw-basic:{quote_plus(CLIENT_SECRET)}".encode()).decode()
    values = [X_AUTH_TOKEN, CLIENT_SECRET, quote_plus(CLIENT_SECRET), API_KEY, basic, *platform.issued]
    # the platform did echo them: the search below is for something that was there to leak
    sent = "\n".join(platform.echoed)
    assert all(v in sent for v in values), [v for v in values if v not in sent]

    written = await asyncio.to_thread(written_files, tmp_path)
    assert {p.name for p in written} >= {"gateway-1.log", "status.json", "gateway.toml"}
    for path, data in written.items():
        for value in values:
            assert value.encode() not in data, f"{value!r} in {path}"

    log = written[tmp_path / "gateway-1.log"].decode()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    errors = [line["msg"] for line in lines if line["level"] == "error"]
    assert any(
        m.startswith(
            "orion-basic.oauth2: token endpoint refused the client credentials, got HTTP 401 "
            "invalid_client (client gw-basic with secret *** (***) and body grant_type=client_credentials "
            "refused; Authorization: Basic ***)"
        )
        for m in errors
    ), errors
    assert any("client_secret=***" in m for m in errors), errors
    for uplink in ("orion-basic", "orion-post"):
        assert any(
            m.startswith("Orion refused our credentials, got HTTP 401 Unauthorized: token *** is not valid; headers {")
            and line["component"] == uplink
            for line in lines
            if line["level"] == "error"
            for m in [line["msg"]]
        ), errors
    assert any("X-Auth-Token: ***" in line["msg"] for line in lines)
    assert all(line.get("component") for line in lines)

    status = tmp_path / "data" / "status.json"
    assert stat.S_IMODE(os.stat(status).st_mode) == 0o640
    assert "***" in status.read_text()

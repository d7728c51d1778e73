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
from pathlib import Path
from urllib.parse import parse_qs, quote_plus

import orjson
import pytest

from gateway.secrets import SecretStore
from tests.e2e.harness import GatewayProcess, wait_until
from tests.support.orion_double import TOKEN_PATH, V2_UPDATE, Arrival, OrionDouble, Refusal

pytestmark = pytest.mark.e2e

# Random per run, so no match can come from anything but the run; `+`, `/` and `&` make the
# form-encoded and percent-encoded spellings differ from the raw one.
X_AUTH_TOKEN = f"xat-{secrets.token_hex(8)}"
CLIENT_SECRET = f"cs+{secrets.token_hex(6)}/&{secrets.token_hex(6)}"
API_KEY = f"key-{secrets.token_hex(8)}"


class EchoingPlatform:
    """The strict Orion double behind a proxy and an IdM whose error bodies repeat what they were sent:
    headers, form fields, tokens. The refusals are scripted; every other request meets Orion's rules
    and the double's token endpoint, so a 204 is one Orion would give."""

    def __init__(self, orion: OrionDouble) -> None:
        self.orion = orion
        self.token_requests: dict[str, int] = {}  # by client id
        self.updates: dict[str, int] = {}  # by uplink
        orion.require_oauth("gw-basic", CLIENT_SECRET, expires_in=3600)
        orion.require_oauth("gw-post", CLIENT_SECRET, expires_in=3600)
        orion.refuse_with(self.refuse)

    @property
    def url(self) -> str:
        return self.orion.url

    @property
    def issued(self) -> list[str]:
        """Access tokens handed out."""
        return [orjson.loads(r.response)["access_token"] for r in self.orion.requests_to(TOKEN_PATH) if r.status == 200]

    @property
    def echoed(self) -> list[str]:
        """Every error body sent."""
        return [r.response.decode() for r in self.orion.requests if r.status >= 400]

    @property
    def answers(self) -> list[int]:
        return [r.status for r in self.orion.requests_to(V2_UPDATE)]

    def refuse(self, arrival: Arrival) -> Refusal | None:
        if arrival.path == TOKEN_PATH:
            return self.refuse_token(arrival)
        return self.refuse_update(arrival)

    def refuse_token(self, arrival: Arrival) -> Refusal | None:
        body = arrival.body.decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        auth = arrival.headers.get("Authorization", "")
        client = form.get("client_id") or base64.b64decode(auth[6:]).decode().partition(":")[0]
        seen = self.token_requests[client] = self.token_requests.get(client, 0) + 1
        if seen > 1:
            return None  # the double's token endpoint checks the credentials and issues a token
        secret = form.get("client_secret") or base64.b64decode(auth[6:]).decode().partition(":")[2]
        error = {
            "error": "invalid_client",
            "error_description": f"client {client} with secret {secret} ({auth[6:]}) and body {body} "
            f"refused; Authorization: {auth}",
        }
        return Refusal(status=401, body=json.dumps(error))

    def refuse_update(self, arrival: Arrival) -> Refusal | None:
        headers = dict(arrival.headers)
        uplink = "orion-post" if "apikey" in arrival.headers else "orion-basic"
        n = self.updates[uplink] = self.updates.get(uplink, -1) + 1
        token = headers.get("Authorization", "").removeprefix("Bearer ") or headers.get("X-Auth-Token", "")
        # per uplink: 500, 401 twice (refused again after a fresh token), 400, then twice to Orion's rules
        answer = (500, 401, 401, 400, None, None)[n % 6]
        if answer == 500:  # an HTML error page of a proxy, with the request's headers
            page = "<pre>" + "\r\n".join(f"{k}: {v}" for k, v in headers.items()) + "</pre>"
            return Refusal(status=500, body=page, content_type="text/html")
        if answer == 401:  # a PEP proxy naming the token it refused
            error = {"error": "Unauthorized", "description": f"token {token} is not valid; headers {headers}"}
            return Refusal(status=401, body=json.dumps(error))
        if answer == 400:  # a validation error echoing the request
            return Refusal(status=400, body=json.dumps({"error": "BadRequest", "description": json.dumps(headers)}))
        return None


@pytest.fixture
async def platform(orion_double: OrionDouble) -> EchoingPlatform:
    return EchoingPlatform(orion_double)


def written_files(root: Path) -> dict[Path, bytes]:
    """Every file the gateway left under `root` but its buffer, with its bytes."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.startswith("buffer.db")}


def config(url: str) -> str:
    return f"""
[gateway]
id = "gw-echo"
data_dir = "@DATA_DIR@"
log_level = "debug"
status_interval_s = 0.3

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
token_url = "{url}{TOKEN_PATH}"
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
token_url = "{url}{TOKEN_PATH}"
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

"""What a technician reads when the OAuth2 token endpoint does not hand out a token, per answer.

Every failure used to say "token endpoint refused the client credentials … check oauth2.client_id and
the secret", a 503 and a 429 included (sending people to rotate a working secret); a 404 (a wrong
token_url) was transient, and a 200 login page counted as "unreachable". Now the words and the fault
follow the status. The double's token endpoint answers (its scripted refusals for 4xx/5xx); a scripted
peer stands in for the pages a token endpoint is not supposed to send (200 without a token, 204).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.secrets import SecretStore
from gateway.uplinks.api import Fault, Outcome, Status
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import TOKEN_PATH, Arrival, OrionDouble, Refusal
from tests.uplinks.scripted_peer import ScriptedPeer

SECRET = "cs-SUPERSECRET-123"
WHERE = "orion-main.oauth2"


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{n}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=float(n), type="Number", unit="MTR")},
        observed_at=datetime(2024, 7, 1, 3, 0, tzinfo=UTC),
        source=Source(adapter="gauge"),
    )


async def fetch_token(tmp_path: Path, orion_url: str, token_url: str) -> tuple[Outcome, str]:
    """One delivery; its outcome and the uplink's last_error (what the status shows)."""
    SecretStore(tmp_path).set("idm_client", SECRET)
    oauth2 = {"token_url": token_url, "client_id": "gw-001", "client_secret": "secret:idm_client"}
    doc = {"name": "orion-main", "type": "orion", "url": orion_url, "oauth2": oauth2}
    up = OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    await up.start()
    try:
        [outcome] = await up.deliver([reading(1)])
    finally:
        await up.close()
    return outcome, up.counters.last_error


def token_answer(status: int, body: str, content_type: str) -> Callable[[Arrival], Refusal | None]:
    def answer(arrival: Arrival) -> Refusal | None:
        return Refusal(status=status, body=body, content_type=content_type) if arrival.path == TOKEN_PATH else None

    return answer


UNAVAILABLE_PAGE = f"<html><title>503 Service Unavailable</title>upstream said client_secret={SECRET}</html>"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "words", "fault"),
    [
        (
            503,
            UNAVAILABLE_PAGE,
            "text/html",
            "the identity server at {token_url} is unavailable, got HTTP 503 "
            "'<html><title>503 Service Unavailable</title>upstream said client_secret=***</html>'",
            Fault.TRANSIENT,
        ),
        (
            429,
            '{"error":"slow_down"}',
            "application/json",
            "the identity server at {token_url} is busy, got HTTP 429 slow_down",
            Fault.TRANSIENT,
        ),
        (
            404,
            "404: Not Found",
            "text/plain",
            "{token_url} is not a token endpoint, got HTTP 404 '404: Not Found'; check oauth2.token_url",
            Fault.CONFIGURATION,
        ),
        (
            405,
            '{"error":"MethodNotAllowed","description":"method not allowed"}',
            "application/json",
            "{token_url} is not a token endpoint, got HTTP 405 MethodNotAllowed; check oauth2.token_url",
            Fault.CONFIGURATION,
        ),
        (
            400,
            '{"error":"invalid_scope","error_description":"unknown scope orion:write"}',
            "application/json",
            "token endpoint refused the scope, got HTTP 400 invalid_scope (unknown scope orion:write); "
            "check oauth2.scope and oauth2.audience",
            Fault.CONFIGURATION,
        ),
        (
            400,
            '{"error":"invalid_request","error_description":"client_id missing"}',
            "application/json",
            "token endpoint refused the token request, got HTTP 400 invalid_request (client_id missing); check "
            'oauth2.client_auth ("basic" or "post", as the identity server wants) and oauth2.token_url',
            Fault.CONFIGURATION,
        ),
        (
            400,
            '{"error":"unauthorized_client"}',
            "application/json",
            "token endpoint refused the client credentials, got HTTP 400 unauthorized_client; "
            "check oauth2.client_id and the secret secret:idm_client",
            Fault.CONFIGURATION,
        ),
    ],
    ids=["503-page", "429", "404", "405", "invalid_scope", "invalid_request", "unauthorized_client"],
)
async def test_token_endpoint_answers_are_worded_by_status(
    status: int,
    body: str,
    content_type: str,
    words: str,
    fault: Fault,
    orion_double: OrionDouble,
    tmp_path: Path,
) -> None:
    orion_double.refuse_with(token_answer(status, body, content_type))
    token_url = orion_double.url + TOKEN_PATH
    outcome, last_error = await fetch_token(tmp_path, orion_double.url, token_url)
    reason = f"{WHERE}: " + words.format(token_url=token_url)
    assert (outcome.status, outcome.fault, outcome.reason, last_error) == (Status.RETRY, fault, reason, reason)
    assert SECRET not in reason
    assert [r.path for r in orion_double.requests] == [TOKEN_PATH]  # no data request without a token


async def test_a_token_endpoint_that_is_not_configured_on_the_server_says_token_url(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # the double without require_oauth answers the token path with a bare 404, like a server without it
    outcome, _ = await fetch_token(tmp_path, orion_double.url, orion_double.url + TOKEN_PATH)
    assert (outcome.fault, outcome.reason) == (
        Fault.CONFIGURATION,
        f"{WHERE}: {orion_double.url}{TOKEN_PATH} is not a token endpoint, got HTTP 404 ''; check oauth2.token_url",
    )


@pytest.mark.parametrize(
    ("status", "body", "content_type", "got"),
    [
        (
            200,
            f"<html><title>Portal</title>please log in; access_token={SECRET} " + "x" * 400 + "</html>",
            "text/html",
            # redacted, then cut to 200 characters
            "HTTP 200 text/html '<html><title>Portal</title>please log in; access_token=*** " + "x" * 141 + "'",
        ),
        (
            200,
            orjson.dumps({"token_type": "Bearer"}).decode(),
            "application/json",
            """HTTP 200 application/json '{"token_type":"Bearer"}'""",
        ),
        (204, "", "text/html", "HTTP 204 (no body)"),
    ],
    ids=["login-page", "json-without-token", "204"],
)
async def test_an_answer_without_a_token_is_transient_and_says_what_came_back(
    status: int, body: str, content_type: str, got: str, orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with ScriptedPeer(status, body=body, content_type=content_type) as idm:
        outcome, _ = await fetch_token(tmp_path, orion_double.url, idm.url + TOKEN_PATH)
    assert (outcome.status, outcome.fault, outcome.reason) == (
        Status.RETRY,
        Fault.TRANSIENT,  # an answer came: not "unreachable", which the loop probes at a short interval
        f"{WHERE}: token endpoint answered without a usable access_token, got {got}",
    )
    assert orion_double.requests == []

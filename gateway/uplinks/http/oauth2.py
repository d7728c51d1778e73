"""OAuth2 client-credentials tokens (RFC 6749 §4.4) for the HTTP uplinks: fetch, cache, refresh before expiry.

A token is reused until shortly before `expires_in` runs out; a 401 from the far side drops it so the
next request fetches a fresh one. Token endpoint failures are transient for the data: a rejected
client secret is a configuration problem and must never dead-letter readings.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, urlencode

import orjson

from gateway import redact
from gateway.configbase import Field, HttpUrl, Section
from gateway.errors import UplinkTransient
from gateway.secrets import SecretRef
from gateway.uplinks.http.client import post

if TYPE_CHECKING:
    import aiohttp  # the session comes from client.make_session, which imports it (see there why not here)

Clock = Callable[[], float]

# Refresh this long before expiry so a token never runs out between fetch and use...
REFRESH_MARGIN_S = 30.0
# ...but for very short-lived tokens keep at least 90 % of their life.
REFRESH_MARGIN_FRACTION = 0.1
# RFC 6749 only recommends `expires_in`; without it, reuse for this long (a 401 still forces a refetch).
DEFAULT_LIFETIME_S = 300.0


class ClientAuth(enum.Enum):
    BASIC = "basic"  # client_secret_basic: HTTP Basic with client id and secret (RFC 6749's recommendation)
    POST = "post"  # client_secret_post: client id and secret in the form body (some API gateways want this)


class TokenHeader(enum.Enum):
    AUTHORIZATION = "authorization"  # `Authorization: Bearer <token>` (API gateways, Kong, Keycloak-fronted)
    X_AUTH_TOKEN = "x-auth-token"  # `X-Auth-Token: <token>` (FIWARE Keyrock + Wilma PEP proxy)


class OAuth2Config(Section):
    """`oauth2` sub-table of an HTTP uplink."""

    token_url: HttpUrl
    client_id: str = Field(min_length=1, max_length=256)
    client_secret: SecretRef
    scope: str | None = None
    audience: str | None = None
    client_auth: ClientAuth = ClientAuth.BASIC
    header: TokenHeader = TokenHeader.AUTHORIZATION


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    value: str
    refresh_at: float  # clock time after which a new token is fetched


class TokenSource:
    """Hands out a valid access token; one fetch at a time however many requests wait for it."""

    def __init__(
        self,
        config: OAuth2Config,
        client_secret: str,
        session: aiohttp.ClientSession,
        *,
        where: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self._config = config
        self._secret = client_secret
        self._session = session
        self._where = f"{where}.oauth2"
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def __repr__(self) -> str:
        return f"TokenSource(token_url={self._config.token_url!r}, client_id={self._config.client_id!r})"

    def header(self, token: str) -> tuple[str, str]:
        if self._config.header is TokenHeader.X_AUTH_TOKEN:
            return "X-Auth-Token", token
        return "Authorization", f"Bearer {token}"

    async def token(self) -> str:
        """A cached token, or a fresh one; raises UplinkTransient when the token endpoint fails."""
        async with self._lock:
            current = self._token
            if current is not None and self._clock() < current.refresh_at:
                return current.value
            self._token = await self._fetch()
            return self._token.value

    def invalidate(self, token: str) -> None:
        """The far side refused `token`: drop it, unless another request already replaced it."""
        if self._token is not None and self._token.value == token:
            self._token = None

    async def _fetch(self) -> Token:
        cfg = self._config
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if cfg.scope:
            form["scope"] = cfg.scope
        if cfg.audience:
            form["audience"] = cfg.audience
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if cfg.client_auth is ClientAuth.BASIC:
            # RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding
            pair = f"{quote_plus(cfg.client_id)}:{quote_plus(self._secret)}"
            credentials = base64.b64encode(pair.encode()).decode("ascii")
            redact.register(credentials)  # a token endpoint may echo the header it was sent
            headers["Authorization"] = "Basic " + credentials
        else:
            form["client_id"] = cfg.client_id
            form["client_secret"] = self._secret
        body = urlencode(form).encode()
        started = self._clock()
        resp = await post(self._session, cfg.token_url, body=body, headers=headers, where=self._where)
        self.fetches += 1
        if resp.status != 200:
            raise UplinkTransient(
                f"{self._where}: token endpoint refused the client credentials, got HTTP {resp.status} "
                f"{_error_text(resp.body)}; check oauth2.client_id and the secret {cfg.client_secret}",
                status=resp.status,
            )
        try:
            doc = orjson.loads(resp.body)
            value = doc["access_token"]
            lifetime = float(doc.get("expires_in", DEFAULT_LIFETIME_S))
            if not isinstance(value, str) or not value:
                raise ValueError("empty access_token")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UplinkTransient(
                f"{self._where}: token endpoint answered without a usable access_token, got {_excerpt(resp.body)}"
            ) from None
        redact.register(value, ephemeral=True)  # a far side may echo it in an error body
        margin = min(REFRESH_MARGIN_S, lifetime * REFRESH_MARGIN_FRACTION)
        return Token(value=value, refresh_at=started + lifetime - margin)


def _error_text(body: bytes) -> str:
    """RFC 6749 §5.2 error fields, or the start of whatever came back."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _excerpt(body)
    if isinstance(doc, dict) and "error" in doc:
        desc = doc.get("error_description")
        return f"{doc['error']}" + (f" ({desc})" if desc else "")
    return _excerpt(body)


def _excerpt(body: bytes, limit: int = 200) -> str:
    """The start of an answer, redacted before it is cut: a cut must not leave half a secret unrecognised."""
    return repr(redact.text(body.decode("utf-8", "replace"))[:limit])

"""OAuth2 client-credentials tokens (RFC 6749 §4.4) for the HTTP uplinks: fetch, cache, refresh before expiry.

A token is reused until shortly before `expires_in` runs out; a 401 from the far side drops it so the
next request fetches a fresh one. Token endpoint failures are transient for the data (they never
dead-letter readings), and their words follow the status, so a technician is sent to the right key:

    answer                                           words                          configuration
    401, 403, invalid_client, unauthorized_client    check client_id and the secret  yes
    400 invalid_scope                                check scope and audience        yes
    400 with another RFC 6749 error                  check client_auth, token_url    yes
    3xx (never followed), 404, 405, any other 4xx    check token_url                 yes
    5xx, 408 / 429                                   identity server unavailable / busy   no
    2xx but not a 200 with an access_token           what came back, redacted        no

`configuration=True` (a parameter of the UplinkTransient) says nothing passes until someone fixes
the config: the HTTP uplinks retry with an ERROR and show `refused`, as for any request they refuse.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlencode, urlsplit

import orjson

from gateway import redact
from gateway.configbase import Field, HttpUrl, Section
from gateway.errors import UplinkTransient
from gateway.secrets import SecretRef, is_ref
from gateway.uplinks.http.client import HttpResponse, post, redirect_target

if TYPE_CHECKING:
    import aiohttp  # the session comes from client.make_session, which imports it (see there why not here)

Clock = Callable[[], float]

# Refresh this long before expiry so a token never runs out between fetch and use...
REFRESH_MARGIN_S = 30.0
# ...but for very short-lived tokens keep at least 90 % of their life.
REFRESH_MARGIN_FRACTION = 0.1
# RFC 6749 only recommends `expires_in`; without it, reuse for this long (a 401 still forces a refetch).
DEFAULT_LIFETIME_S = 300.0


# RFC 6749 §5.2 errors about how the token was asked for, not who asked
_REQUEST_ERRORS = frozenset({"invalid_request", "invalid_grant", "unsupported_grant_type"})

# Names of this box; the loopback addresses themselves are told by ipaddress. Not "localhost." (fully
# qualified): glibc asks the site's DNS for it, whose answer may be any host.
_LOOPBACK_NAMES = frozenset({"localhost"})
# What a warning about credentials over plain http advises; allow_insecure_http = true silences it.
CLEARTEXT_ADVICE = (
    "anyone on the network between can read and reuse them; use https://, or set allow_insecure_http = true if "
    "this network is closed"
)


class ClientAuth(enum.Enum):
    BASIC = "basic"  # client_secret_basic: HTTP Basic with client id and secret (RFC 6749's recommendation)
    POST = "post"  # client_secret_post: client id and secret in the form body (some API gateways want this)


class TokenHeader(enum.Enum):
    AUTHORIZATION = "authorization"  # `Authorization: Bearer <token>` (API gateways, Kong, Keycloak-fronted)
    X_AUTH_TOKEN = "x-auth-token"  # `X-Auth-Token: <token>` (FIWARE Keyrock + Wilma PEP proxy)


def off_box_http_host(url: str) -> str | None:
    """The host of a plain `http://` URL whose host is not this box's loopback (127.0.0.0/8, ::1, localhost);
    None for https:// and for loopback, where what is sent never leaves the box (a local IoT Agent)."""
    if not url.startswith("http://"):
        return None
    try:
        host = urlsplit(url).hostname or ""  # lower case, an IPv6 address without its brackets
    except ValueError:  # "http://[::1": refused as off the box, the safe side
        return url.removeprefix("http://").partition("/")[0]
    if host in _LOOPBACK_NAMES:
        return None
    try:
        return None if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host


class OAuth2Config(Section):
    """`oauth2` sub-table of an HTTP uplink."""

    token_url: HttpUrl
    client_id: str = Field(min_length=1, max_length=256)
    client_secret: SecretRef
    scope: str | None = None
    audience: str | None = None
    client_auth: ClientAuth = ClientAuth.BASIC
    header: TokenHeader = TokenHeader.AUTHORIZATION

    def cleartext_warning(self, advice: str = CLEARTEXT_ADVICE) -> str | None:
        """What to tell of `token_url` (after its key path) when it is plain http off this box; None if nothing.
        The owner asks only without its `allow_insecure_http`."""
        host = off_box_http_host(self.token_url)
        if host is None:
            return None
        return (
            f'the client secret and the access tokens go over plain http to host "{host}" (RFC 6749 §3.2 requires '
            f"TLS): {advice}"
        )


def credentials_sent(oauth2: OAuth2Config | None, x_auth_token: str | None, headers: Mapping[str, str]) -> list[str]:
    """The keys whose credentials go with every request of an Orion-style client (never their values): the oauth2
    access token, x_auth_token, and headers taken from the secret store or the environment."""
    sent = ["the oauth2 access token"] if oauth2 is not None else []
    if x_auth_token is not None:
        sent.append("x_auth_token")
    sent.extend(f"header {name!r}" for name, value in headers.items() if is_ref(value))
    return sent


def cleartext_hosts(url: str, sent: Sequence[str], oauth2: OAuth2Config | None = None) -> list[str]:
    """The hosts off this box that credentials go to over plain http: `url`'s when `sent` names any that go with
    every request to it, and an `oauth2` token endpoint's."""
    hosts = [off_box_http_host(url) if sent else None]
    if oauth2 is not None:
        hosts.append(off_box_http_host(oauth2.token_url))
    return [host for host in dict.fromkeys(hosts) if host is not None]


def say_cleartext(
    log: logging.Logger | logging.LoggerAdapter[Any],
    hosts: Sequence[str],
    accepted: bool,
    *,
    what: str = "",
    key: str = "allow_insecure_http",
    advice: str = CLEARTEXT_ADVICE,
) -> None:
    """Once, at a client's start: the `hosts` its credentials go to over plain http (`cleartext_hosts`), at INFO
    when the admin accepted it (`key` = true), else the one WARNING of it with `advice` (gateway.app leaves these
    to the clients, which name themselves). `what` begins the line ("confirmation: ")."""
    if not hosts:
        return
    insecure = ", ".join(hosts)
    if accepted:  # said, not warned of at every start
        log.info("%scredentials go over plain http to %s (%s = true)", what, insecure, key)
    else:
        log.warning("%scredentials go over plain http to %s: %s", what, insecure, advice)


def cleartext_warnings(
    url: str, sent: Sequence[str], oauth2: OAuth2Config | None = None, *, advice: str = CLEARTEXT_ADVICE
) -> list[tuple[str, str]]:
    """(key, text) for each of `cleartext_hosts`, for a section's `config_warnings` (gateway.config) when it does
    not set `allow_insecure_http`: `sent` names the credentials going with every request to `url` (never their
    values), `advice` how to fix or silence it in that section."""
    warnings = []
    host = off_box_http_host(url) if sent else None
    if host is not None:
        warnings.append(("url", f'credentials ({", ".join(sent)}) go over plain http to host "{host}": {advice}'))
    token_url = oauth2.cleartext_warning(advice) if oauth2 is not None else None
    if token_url is not None:
        warnings.append(("oauth2.token_url", token_url))
    return warnings


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
            raise self._refused(resp)
        try:
            doc = orjson.loads(resp.body)
            value = doc["access_token"]
            lifetime = float(doc.get("expires_in", DEFAULT_LIFETIME_S))
            if not isinstance(value, str) or not value:
                raise ValueError("empty access_token")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise self._unusable(resp) from None
        redact.register(value, ephemeral=True)  # a far side may echo it in an error body
        margin = min(REFRESH_MARGIN_S, lifetime * REFRESH_MARGIN_FRACTION)
        return Token(value=value, refresh_at=started + lifetime - margin)

    def _refused(self, resp: HttpResponse) -> UplinkTransient:
        """The error for anything but a 200, worded by its status (table in the module docstring)."""
        cfg, status, where = self._config, resp.status, self._where
        error = _error_code(resp.body)
        got = f"HTTP {status} {_error_text(resp.body)}"
        if 300 <= status < 400:
            return UplinkTransient(
                f"{where}: token endpoint answered with a redirect, got HTTP {status} to "
                f"{redirect_target(resp, cfg.token_url)}; redirects are not followed (the client credentials would "
                "go to another address): set oauth2.token_url to the identity server's token endpoint",
                status=status,
                configuration=True,
            )
        if status < 300:
            return self._unusable(resp)
        if status >= 500 or status in (408, 429):
            trouble = "busy" if status == 429 else "unavailable"
            # not the credentials: whoever reads this must not go and rotate a working secret
            return UplinkTransient(
                f"{where}: the identity server at {cfg.token_url} is {trouble}, got {got}", status=status
            )
        if status in (401, 403) or error in ("invalid_client", "unauthorized_client"):
            return UplinkTransient(
                f"{where}: token endpoint refused the client credentials, got {got}; "
                f"check oauth2.client_id and the secret {cfg.client_secret}",
                status=status,
                configuration=True,
            )
        if error == "invalid_scope":
            return UplinkTransient(
                f"{where}: token endpoint refused the scope, got {got}; check oauth2.scope and oauth2.audience",
                status=status,
                configuration=True,
            )
        if status == 400 and error in _REQUEST_ERRORS:
            return UplinkTransient(
                f"{where}: token endpoint refused the token request, got {got}; check oauth2.client_auth "
                '("basic" or "post", as the identity server wants) and oauth2.token_url',
                status=status,
                configuration=True,
            )
        # 404, 405, 415, a 400 that is no OAuth2 answer (Orion's "Service not found"): not a token endpoint
        return UplinkTransient(
            f"{where}: {cfg.token_url} is not a token endpoint, got {got}; check oauth2.token_url",
            status=status,
            configuration=True,
        )

    def _unusable(self, resp: HttpResponse) -> UplinkTransient:
        """A 2xx without a token: a portal, a proxy's page, a server half up; passes, probably."""
        what = f"{resp.content_type} {_excerpt(resp.body)}" if resp.body else "(no body)"
        return UplinkTransient(
            f"{self._where}: token endpoint answered without a usable access_token, got HTTP {resp.status} {what}",
            status=resp.status,
        )


def _error_code(body: bytes) -> str:
    """RFC 6749 §5.2 `error`, or "" if the body is no such answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, str) else ""


def _error_text(body: bytes, limit: int = 200) -> str:
    """RFC 6749 §5.2 error fields (redacted: a server may quote what it was sent), or the start of whatever came back."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _excerpt(body)
    if isinstance(doc, dict) and "error" in doc:
        desc = doc.get("error_description")
        return redact.text(f"{doc['error']}" + (f" ({desc})" if desc else ""))[:limit]
    return _excerpt(body)


def _excerpt(body: bytes, limit: int = 200) -> str:
    """The start of an answer, redacted before it is cut: a cut must not leave half a secret unrecognised."""
    return repr(redact.text(body.decode("utf-8", "replace"))[:limit])

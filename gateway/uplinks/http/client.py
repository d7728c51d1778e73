"""The HTTP(S) transport of the HTTP uplinks: TLS/mTLS settings, extra headers, one aiohttp session, errors translated.

Every foreign exception (aiohttp, ssl, OS, timeouts) leaving `post` becomes an `UplinkTransient`,
so the uplinks see either an HTTP status or a transient failure, never a library error. The failure
says whether the request went out (`sent=True`): before that (refused, DNS, a connect timeout, the TLS
handshake) nothing was asked of the far side and it is "unreachable"; after it (no answer within
`timeout_s`, a dropped connection) the far side may well have applied the request. aiohttp cannot say
which on its own: the session's total timeout raises the same TimeoutError in either phase (a firewall
dropping SYNs and a loaded broker look alike), so `make_session` traces when the headers go out.

Redirects are never followed: the caller gets the 3xx itself (`HttpResponse.location`). Followed,
a 301/302/303 turns a POST into a body-less GET whose 200 (a login page, a captive portal) would
pass for a delivery, and a redirect to another host takes our credential headers along (aiohttp
drops only `Authorization`; 307/308 resend the body, a client secret in a token request too).

aiohttp (~20 MB resident) is imported when a session is made, not with this module: the `mqtt`
uplink's config imports the header and session types for its optional `[uplinks.confirm]` table,
and a gateway that speaks no HTTP must not carry it (issue 18: ≤ 70 MB while draining).
`_describe` and `send` only ever run on a session's failures, when it is loaded already.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator

from gateway import redact, secrets
from gateway.errors import UplinkTransient
from gateway.tls import TlsSection, client_context

if TYPE_CHECKING:
    import aiohttp

# Headers the uplinks set themselves; a `headers` table may not override them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "fiware-service",
        "fiware-servicepath",
        "fiware-correlator",
        "ngsild-tenant",
        "link",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


def _check_headers(v: dict[str, str]) -> dict[str, str]:
    for name, value in v.items():
        if not _TOKEN.match(name):
            raise ValueError(f"header name must be an HTTP token (letters, digits, - _ .), got {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"must not set a header the uplink sets itself, got {name!r}")
        if "\r" in value or "\n" in value or len(value) > 8192:
            raise ValueError(
                f"header values must be one line of at most 8192 characters, got another value for {name!r}"
            )
        # the same rule as every section's headers: a credential is a reference, never clear text
        secrets.check_ref_or_text("header", name, value)
    return v


# Values of the form `secret:<name>` / `env:<VAR>` are resolved at start (API keys stay out of the config).
Headers = Annotated[dict[str, str], AfterValidator(_check_headers)]


def resolve_headers(headers: Mapping[str, str], data_dir: str | Path) -> dict[str, str]:
    """Extra headers with `secret:`/`env:` references replaced by their clear values."""
    return {k: secrets.resolve(v, data_dir) if secrets.is_ref(v) else v for k, v in headers.items()}


def make_session(*, tls: TlsSection, timeout_s: float, where: str) -> aiohttp.ClientSession:
    """One pooled session per uplink; call from inside the running loop (start())."""
    import aiohttp  # here, not at the top: see the module docstring

    connector = aiohttp.TCPConnector(ssl=client_context(tls, where), limit=4, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    # No cookies: a platform's load balancer cookies must not pin or leak state between uplinks.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
        trace_configs=[trace],
    )


class _Progress:
    """How far one request got: `sent` once its headers go out on a connection (see the module docstring)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


async def _headers_sent(session: object, context: SimpleNamespace, params: object) -> None:
    progress = context.trace_request_ctx
    if isinstance(progress, _Progress):
        progress.sent = True


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str
    location: str = ""  # the Location header of a redirect, as sent: see `redirect_target`
    retry_after_s: float = 0.0  # a 429's or 503's Retry-After, in seconds from now: see `retry_after`


# A Retry-After is honoured up to this: a proxy's "come back tomorrow" must not hold a day's readings.
RETRY_AFTER_MAX_S = 600.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def retry_after(value: str | None, now: float) -> float:
    """Seconds to wait from a Retry-After header (RFC 9110 10.2.3: delay-seconds or an HTTP-date), at
    most RETRY_AFTER_MAX_S; 0.0 when absent, unreadable or already past (the backoff decides alone)."""
    if not value:
        return 0.0
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when.tzinfo is None:  # HTTP-dates are GMT; email.utils reads "-0000" as zone-less
        return 0.0
    return min(max(0.0, when.timestamp() - now), RETRY_AFTER_MAX_S)


def waits_for(resp: HttpResponse) -> str:
    """`; it asks to wait N s (Retry-After)` for a message, or nothing."""
    return f"; it asks to wait {resp.retry_after_s:g} s (Retry-After)" if resp.retry_after_s > 0 else ""


def redirect_target(resp: HttpResponse, url: str) -> str:
    """Where a redirect from `url` points, fit for a message (gateway.redact.redirect_target)."""
    return redact.redirect_target(resp.location, url)


def _describe(exc: BaseException, url: str) -> str:
    import aiohttp  # loaded already: the failure came from a session

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer within the timeout"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({exc.certificate_error}); set tls.ca_file to the platform's CA"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({exc}); check tls.cert_file/key_file if the server wants a client certificate"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection (a TLS server that wants a client certificate does this too)"
    text = str(exc) or type(exc).__name__
    if url.startswith("https:") and isinstance(exc, (aiohttp.ClientOSError, ConnectionResetError)):
        # TLS 1.3 servers check the client certificate after the handshake and just drop the connection
        text += "; if the server wants a client certificate, set tls.cert_file and tls.key_file"
    return text


async def post(
    session: aiohttp.ClientSession, url: str, *, body: bytes, headers: Mapping[str, str], where: str
) -> HttpResponse:
    """POST and read the answer; transport failures raise UplinkTransient with a technician's message."""
    return await send(session, "POST", url, body=body, headers=headers, where=where)


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    where: str,
) -> HttpResponse:
    """Any method (kintone also wants GET and PUT); the same translation of transport failures as `post`."""
    import aiohttp  # loaded already with the session: a dictionary lookup

    progress = _Progress()
    try:
        # allow_redirects=False: see the module docstring
        async with session.request(
            method, url, data=body, headers=dict(headers), allow_redirects=False, trace_request_ctx=progress
        ) as resp:
            data = await resp.read()
            location = resp.headers.get("Location", "") if 300 <= resp.status < 400 else ""
            wait = retry_after(resp.headers.get("Retry-After"), time.time()) if resp.status in (429, 503) else 0.0
            return HttpResponse(
                status=resp.status, body=data, content_type=resp.content_type, location=location, retry_after_s=wait
            )
    except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
        connecting = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        # Once the request is out, no answer in time, a close without one or a cut answer may follow a request
        # the far side applied. A reset or a TLS error then is how a TLS 1.3 server refuses a client certificate
        # (after the handshake, as the request comes in): the HTTP server never got it, so "cannot reach" stays.
        after_arrival = isinstance(exc, (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError))
        if connecting or not progress.sent or not after_arrival:
            raise UplinkTransient(f"{where}: cannot reach {url}, got {_describe(exc, url)}", url=url) from exc
        if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError (a read timeout) is one too
            total = session.timeout.total
            within = f" within timeout_s = {total:g} s" if total else ""
            raise UplinkTransient(
                f"{where}: no answer from {url}{within} after sending the request",
                url=url,
                sent=True,
                timed_out=True,
            ) from exc
        raise UplinkTransient(
            f"{where}: the connection to {url} failed after sending the request, got {_describe(exc, url)}",
            url=url,
            sent=True,
        ) from exc

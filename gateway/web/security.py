"""Browser security headers on every response, errors included: CSP, no framing, HSTS, no sniffing, no caching."""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping

from aiohttp import web
from multidict import MultiDictProxy

log = logging.getLogger(__name__)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# No inline script or style anywhere (app.js and app.css are files), so the policy can stay this strict.
CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # a setup link's token never leaves in a Referer
}


_SECRET_PATH = re.compile(r"^/setup/[^/?]*")


def loggable_path(path: str) -> str:
    """A request path fit for the journal: the one-time setup token replaced."""
    return _SECRET_PATH.sub("/setup/…", path)


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """`request.post()`, or 400 for a body that is not text in its declared charset: aiohttp raises
    UnicodeDecodeError or LookupError from `post()`, which every form handler would turn into a 500."""
    try:
        return await request.post()
    except (UnicodeDecodeError, LookupError) as exc:
        log.warning("web: %s %s refused, form data unreadable (%s)", request.method, loggable_path(request.path), exc)
        raise web.HTTPBadRequest(reason="form data is not UTF-8 text") from None


def apply(headers: MutableMapping[str, str], path: str) -> None:
    for name, value in HEADERS.items():
        headers[name] = value
    # Pages carry live values and personal data: never kept by the browser or a proxy. Static files may be.
    headers["Cache-Control"] = "no-cache" if path.startswith("/static/") else "no-store"


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """On every response just before its headers go out: pages, static files, errors and streams alike."""
    apply(response.headers, request.path)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(on_response_prepare)

"""Browser security headers on every response, errors included: CSP, no framing, HSTS, no sniffing, no caching;
the request size limit of the forms that need one of their own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDictProxy

from gateway.accounts.store import Role
from gateway.web.auth import Handler, maybe_user

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
        # told once per spell of the address (the app's store), as a flood of them would fill the journal;
        # imported here, as gateway.web.refusals imports this module
        from gateway.web import refusals

        address = request.remote or ""
        spells = await refusals.refuse(request, refusals.UNREADABLE_FORMS, address)
        if spells is not None:
            log.warning(
                "%s: %s from %s refused, form data unreadable (%s); more within a minute are counted",
                spells.source,
                refusals.request_line(request),
                address,
                exc,
            )
        raise web.HTTPBadRequest(reason="form data is not UTF-8 text") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class LargeForm:
    """A POST route with a request size limit of its own instead of the app's `client_max_size`, for a user
    with `role` (anyone else keeps the app's).

    `too_large` is the page's own answer to a body over `max_bytes`; it reads nothing of the body and checks
    the role itself. A form refused for its size is never parsed, so its CSRF token is not checked either:
    that answer must change nothing but the session's flash messages.
    """

    max_bytes: int
    role: Role
    too_large: Handler


LARGE_FORMS = web.AppKey("large_forms", dict[str, LargeForm])


@web.middleware
async def large_forms(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The route's own limit for the users it is meant for; everyone else keeps the app's, so that a
    stranger's post is buffered no further than any other request. Over the limit the page answers, not
    aiohttp's bare 413 (raised inside the csrf middleware, which is what reads the form)."""
    form = request.app[LARGE_FORMS].get(request.path) if request.method == "POST" else None
    user = maybe_user(request)
    if form is None or user is None or not user.role.allows(form.role):
        return await handler(request)
    declared = request.content_length
    if declared is not None and declared > form.max_bytes:
        # answered before a byte of the body is read: a browser always says the length of a form
        log.warning("web: POST %s refused, %d bytes, over the limit of %d", request.path, declared, form.max_bytes)
        return await form.too_large(request)
    try:
        return await handler(request.clone(client_max_size=form.max_bytes))
    except web.HTTPRequestEntityTooLarge:
        # a body without a length (chunked): aiohttp stopped reading at the limit
        log.warning("web: POST %s refused, body over the limit of %d bytes", request.path, form.max_bytes)
        return await form.too_large(request)


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

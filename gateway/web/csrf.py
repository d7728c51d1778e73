"""CSRF: every state-changing request carries the session's token (form field `csrf_token` or `X-CSRF-Token`).

A synchronizer token kept server-side with the session, compared in constant time. SameSite=Strict cookies
already stop most cross-site posts; the token also covers browsers and paths where SameSite does not apply.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from gateway.web.auth import STATIC_PREFIX, Handler, session_of
from gateway.web.security import FORM_TYPES, loggable_path, read_form

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


async def submitted_token(request: web.Request) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.content_type in FORM_TYPES:
        form = await read_form(request)  # cached by aiohttp: the handler reads the same form again for free
        value = form.get(FIELD)
        if isinstance(value, str):
            return value
    return ""


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in SAFE_METHODS and not request.path.startswith(STATIC_PREFIX):
        if request.content_type in FORM_TYPES:
            await read_form(request)  # a body that is not text is a 400 here, not a 500 in the handler
        expected = session_of(request).csrf_token
        given = await submitted_token(request)
        if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii")):
            log.warning("web: %s %s refused, missing or wrong CSRF token", request.method, loggable_path(request.path))
            session = session_of(request)
            if session.fresh and not request.path.startswith("/api/"):
                # No live session sent the form (this process restarted, or the page was left open past the
                # session's lifetime): nothing was done; say so on the login page instead of a bare 403.
                session.form_expired = True
                raise web.HTTPFound("/login")
            raise web.HTTPForbidden(reason="CSRF token missing or wrong")
    return await handler(request)

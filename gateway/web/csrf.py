"""CSRF: every state-changing request carries the session's token (form field `csrf_token` or `X-CSRF-Token`).

A synchronizer token kept server-side with the session, compared in constant time. SameSite=Strict cookies
already stop most cross-site posts; the token also covers browsers and paths where SameSite does not apply.

A refused form is never processed. How it is refused depends on why, so that a user who did nothing wrong
is not sent to the "ask the admin" page: no live session (restart, page left open) → the login page; a
token this process issued to an earlier session of a live one (the user logged in again in another tab) →
back to the form's page with a notice; anything else (no token, a token never issued, a script's header)
→ 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import OrderedDict
from urllib.parse import urlsplit

from aiohttp import web

from gateway.web.auth import STATIC_PREFIX, Handler, session_of
from gateway.web.render import flash, translator
from gateway.web.security import FORM_TYPES, loggable_path, read_form

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
# about as many as the session table keeps anonymous sessions: a form is rarely older than that many logins
MAX_ISSUED = 10_000


class IssuedTokens:
    """Digests of the sessions' tokens this process has handed out, newest last, bounded."""

    def __init__(self, limit: int = MAX_ISSUED) -> None:
        self._limit = limit
        self._seen: OrderedDict[str, None] = OrderedDict()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def note(self, token: str) -> None:
        key = self._digest(token)
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._digest(token) in self._seen


# One web UI per process; a token is 256 random bits, so apps sharing this (the tests) cannot mistake each
# other's tokens.
ISSUED = IssuedTokens()


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


def form_page(request: web.Request) -> str:
    """The page a form was posted from: the Referer when it is this site, else the section of the form's action."""
    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.netloc == request.host and referer.path.startswith("/") and not referer.path.startswith("//"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/" + request.path.lstrip("/").split("/", 1)[0]


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(STATIC_PREFIX):
        return await handler(request)
    expected = session_of(request).csrf_token
    if request.method in SAFE_METHODS:
        if not request.path.startswith("/api/"):  # pages carry forms; the dashboard's polls every 3 s do not
            ISSUED.note(expected)
        return await handler(request)
    if request.content_type in FORM_TYPES:
        await read_form(request)  # a body that is not text is a 400 here, not a 500 in the handler
    given = await submitted_token(request)
    if given and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii")):
        return await handler(request)
    log.warning("web: %s %s refused, missing or wrong CSRF token", request.method, loggable_path(request.path))
    session = session_of(request)
    is_form = not request.path.startswith("/api/") and HEADER not in request.headers
    if session.fresh and is_form:
        # No live session sent the form (this process restarted, or the page was left open past the
        # session's lifetime): nothing was done; say so on the login page instead of a bare 403.
        session.form_expired = True
        raise web.HTTPFound("/login")
    if is_form and given in ISSUED:
        t = translator(request)
        flash(request, t("session.form_stale"), "warning")
        raise web.HTTPSeeOther(form_page(request))
    raise web.HTTPForbidden(reason="CSRF token missing or wrong")

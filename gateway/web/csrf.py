"""CSRF: every state-changing request carries the session's token (form field `csrf_token` or `X-CSRF-Token`).

A synchronizer token kept server-side with the session, compared in constant time. SameSite=Strict cookies
already stop most cross-site posts; the token also covers browsers and paths where SameSite does not apply.

A refused form is never processed. What the user sees depends on why, so that a user who did nothing wrong
is neither sent to the "ask the admin" page nor made to type everything again:

| the form's token                                   | logged in            | not logged in                    |
|----------------------------------------------------|----------------------|----------------------------------|
| signed for this browser (formtoken), form kept     | page: send it again  | login page carrying it           |
| anything else (none, forged, a password form …)    | page: open it again  | login page (a new session), else |
|                                                    |                      | page: open it again              |

"Signed for this browser" is a token this UI gave this very browser within a week, in this process or one
before a restart (its key is at rest: gateway.web.formkey): the page that a restart, the idle timeout or a
login in another tab left behind. What it carried is offered back as a form to press (gateway.web.keptform),
never sent on by itself. The pages answer 403: nothing was done. A script's `X-CSRF-Token` and /api get the
bare 403.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlsplit

from aiohttp import web

from gateway.web import formtoken, keptform
from gateway.web.auth import STATIC_PREFIX, Handler, browser_id, maybe_user, services, session_of
from gateway.web.keptform import KeptForm
from gateway.web.render import render
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


def form_page(request: web.Request) -> str:
    """The page a form was posted from: the Referer when it is this site, else the section of the form's action."""
    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.netloc == request.host and referer.path.startswith("/") and not referer.path.startswith("//"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/" + request.path.lstrip("/").split("/", 1)[0]


async def _kept(request: web.Request, given: str) -> KeptForm | None:
    """The refused form, kept, if its token is this browser's and the form may be kept."""
    svc = services(request)
    if not formtoken.verify(svc.form_key, browser_id(request), given, svc.clock()):
        return None
    if request.content_type not in FORM_TYPES:
        return None
    form = await read_form(request)
    return keptform.keep(request.path, request.content_type, form.items())


async def refused_form(request: web.Request, given: str) -> web.StreamResponse:
    """The answer to a form whose token is not its session's: see the module's table."""
    session = session_of(request)
    user = maybe_user(request)
    kept = await _kept(request, given)
    back = form_page(request)
    log.warning(
        "web: %s %s refused, missing or wrong CSRF token (%s)",
        request.method,
        loggable_path(request.path),
        "a form this browser was given before, offered to send again" if kept else "not one this browser was given",
    )
    if user is None:
        if kept is not None and kept.fits_login():
            context = {"error": "", "name": "", "next": back, "resend": kept}
            return render(request, "login.html", context, status=403)
        if session.fresh:
            # No live session sent the form (this process restarted, or the page was left open past the
            # session's lifetime), and nothing can be kept: the login page says so.
            session.form_expired = True
            raise web.HTTPFound("/login")
        kept = None
    return render(request, "form_expired.html", {"kept": kept, "back": back}, status=403)


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(STATIC_PREFIX) or request.method in SAFE_METHODS:
        return await handler(request)
    expected = session_of(request).csrf_token
    if request.content_type in FORM_TYPES:
        await read_form(request)  # a body that is not text is a 400 here, not a 500 in the handler
    given = await submitted_token(request)
    if given and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii")):
        return await handler(request)
    if request.path.startswith("/api/") or HEADER in request.headers:
        log.warning("web: %s %s refused, missing or wrong CSRF token", request.method, loggable_path(request.path))
        raise web.HTTPForbidden(reason="CSRF token missing or wrong")
    return await refused_form(request, given)

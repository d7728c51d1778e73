"""CSRF: every state-changing request carries the session's token (form field `csrf_token` or `X-CSRF-Token`).

A synchronizer token kept server-side with the session, compared in constant time. SameSite=Strict cookies
already stop most cross-site posts; the token also covers browsers and paths where SameSite does not apply.

A refused form is never processed. What the user sees depends on why, so that a user who did nothing wrong
is neither sent to the "ask the admin" page nor made to type everything again, and so that on a shared PC no
one is offered a form another user left open:

| the form's token (formtoken)                   | logged in                   | not logged in                         |
|------------------------------------------------|-----------------------------|---------------------------------------|
| this browser's, this account's ("" before      | page: send it again         | page: send it again                   |
| login)                                         |                             |                                       |
| this browser's, another login's (another user, | page: another user's, open  | login page carrying its token and a   |
| or an account of that name since removed)      | the page again (no data)    | reference, the values kept here       |
|                                                |                             | (offered after the login only to the  |
|                                                |                             | account it was given to: auth)        |
| anything else (none, forged, too old …)        | page: open it again         | login page (a new session), else      |
|                                                |                             | page: open it again                   |

A form that may not be kept (a password, a file, the logout: gateway.web.keptform) gets its row's page without
the data. "This browser's" is a token this UI gave this very browser within a week, in this process or one
before a restart (its key is at rest: gateway.web.formkey): the page that a restart, the idle timeout or a login
in another tab left behind. What it carried is offered back as a form to press, never sent on by itself. The
pages answer 403: nothing was done. A script's `X-CSRF-Token` and /api get the bare 403.

Each refusal is logged at WARNING once per spell of its client address, the others counted (their access log
line at DEBUG) and told at the spell's end with their number and the forms they were (gateway.web.refusals): a
flood of posts stays a few lines.
"""

from __future__ import annotations

import enum
import hmac
import logging
from urllib.parse import urlsplit

from aiohttp import web

from gateway.accounts.store import User
from gateway.web import formtoken, keptform, refusals
from gateway.web.auth import (
    SESSIONS,
    STATIC_PREFIX,
    Handler,
    account_of,
    browser_id,
    client_address,
    maybe_user,
    services,
    session_of,
)
from gateway.web.keptform import KeptForm
from gateway.web.refusals import CSRF_REFUSALS
from gateway.web.render import render
from gateway.web.security import FORM_TYPES, read_form

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


class Origin(enum.Enum):
    """Whom a refused form's token was given to, as far as the signatures tell (the module's table's rows)."""

    THIS_USER = "this_user"  # this browser, and the account logged in now ("" for none, then and now)
    # this browser, under another login: another user's or account's, or before or after one
    OTHER_LOGIN = "other_login"
    UNKNOWN = "unknown"  # none, forged, another browser's, older than a week, or signed with a key since lost


def _origin(request: web.Request, given: str, user: User | None) -> Origin:
    svc = services(request)
    browser, now = browser_id(request), svc.clock()
    name = user.name if user is not None else ""
    if formtoken.verify(svc.form_key, browser, given, now, user=name, account=account_of(request, user)):
        return Origin.THIS_USER
    if formtoken.given_to_browser(svc.form_key, browser, given, now):
        return Origin.OTHER_LOGIN
    return Origin.UNKNOWN


async def _kept(request: web.Request, given: str) -> KeptForm | None:
    """The refused form, kept, if it may be kept (never a password, a file, the logout)."""
    if request.content_type not in FORM_TYPES:
        return None
    form = await read_form(request)
    return keptform.keep(request.path, request.content_type, form.items(), token=given)


async def _refused(request: web.Request, said: str) -> None:
    address = client_address(request)
    if await refusals.refuse(request, CSRF_REFUSALS, address) is None:
        return
    log.warning(
        "web: %s from %s refused, missing or wrong CSRF token (%s); more within a minute are counted",
        refusals.request_line(request),
        address,
        said,
    )


async def refused_form(request: web.Request, given: str) -> web.StreamResponse:
    """The answer to a form whose token is not its session's: see the module's table."""
    session = session_of(request)
    user = maybe_user(request)
    origin = _origin(request, given, user)
    back = form_page(request)
    kept = await _kept(request, given) if origin is not Origin.UNKNOWN else None
    if origin is Origin.THIS_USER and kept is not None:
        await _refused(request, "a form this browser and user were given before, offered to send again")
        return _expired_page(request, origin, user, kept, back)
    if user is None and origin is Origin.OTHER_LOGIN and kept is not None and kept.fits_login():
        await _refused(
            request, "a form this browser was given under a login since ended, carried through the login page"
        )
        # the page holds only a reference: what was typed stays here, off a shared PC's page source
        carried = request.app[SESSIONS].kept.put(kept, browser=browser_id(request), now=services(request).clock())
        context = {"error": "", "name": "", "next": back, "resend": carried}
        return render(request, "login.html", context, status=403)
    await _refused(
        request,
        {
            Origin.THIS_USER: "a form this browser and user were given before, not one that may be kept",
            Origin.OTHER_LOGIN: "a form this browser was given under another login, not offered",
            Origin.UNKNOWN: "not one this browser was given",
        }[origin],
    )
    if user is None and session.fresh:
        # No live session sent the form (this process restarted, or the page was left open past the
        # session's lifetime), and nothing can be kept: the login page says so.
        session.form_expired = True
        raise web.HTTPFound("/login")
    return _expired_page(request, origin, user, None, back)


def _expired_page(
    request: web.Request, origin: Origin, user: User | None, kept: KeptForm | None, back: str
) -> web.Response:
    # the sentence says what happened only as far as it is known: "you logged in again" only to that user
    if origin is Origin.OTHER_LOGIN and user is not None:
        reason = "other_user"
    elif origin is Origin.UNKNOWN:
        reason = "unknown"
    else:
        reason = "logged_in_again" if user is not None else "login_ended"
    return render(request, "form_expired.html", {"kept": kept, "back": back, "reason": reason}, status=403)


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
        await _refused(request, "a script's header or an /api request")
        raise web.HTTPForbidden(reason="CSRF token missing or wrong")
    return await refused_form(request, given)

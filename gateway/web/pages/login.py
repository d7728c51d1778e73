"""Login and logout: lockout per name and client address, throttle per address, the previous login shown afterwards.

Every attempt is audited; an audit store that cannot record one (a damaged audit.db) never keeps anyone out,
an admin least of all, who must log in to see and mend it: the entry is logged at ERROR (pages.audit.audit_done)
and a logged-in user is told. A stranger is not: their answer is the same as ever. A failed attempt is audited
with the account it named, or "-" for a name that is none: that may be a password typed into the wrong box, and
the audit log is kept for years and shown on /audit.

Tries the throttle refuses are the exception: a flood of them must not fill the audit log and the journal. The
first of an address's spell is audited and logged as before; the others are counted, and the spell's end is
told once with the count (gateway.web.refusals): a `login.failed` entry of actor "-" whose detail
says `reason=throttled` with `refused` (the tries, the first included), `first`, `last` and `requests`
(`POST /login`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from gateway.accounts.store import DAY_S, PRIVILEGED, AuthResult
from gateway.web import formtoken, keptform, refusals
from gateway.web.auth import (
    THROTTLE,
    USER,
    browser_id,
    client_address,
    hashing_call,
    login_session,
    logout_session,
    maybe_user,
    must_change_password,
    requires,
    safe_next,
    services,
    session_of,
)
from gateway.web.keptform import KeptForm
from gateway.web.pages.audit import audit_done
from gateway.web.refusals import THROTTLED_LOGINS
from gateway.web.render import flash, jst, render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# Privileged users are told this long before their password expires, so the change is not a surprise.
EXPIRY_WARNING_DAYS = 14
# Longest name or password read from the form: Argon2 of a megabyte would be a denial of service.
MAX_FIELD = 1024
# Where a login that carried a refused form goes (gateway.web.csrf): the page that offers to send it again.
RESEND_PAGE = "/form/resend"


def _given_to(request: web.Request, resend: KeptForm | None, user: str) -> KeptForm | None:
    """The form the login carried if its token was given to this browser for `user`, the one whose password was
    just checked (never a name the browser sent): on a shared PC one user's form never rides another's login."""
    if resend is None:
        return None
    svc = services(request)
    if not formtoken.verify(svc.form_key, browser_id(request), resend.token, svc.clock(), user=user):
        log.info("web: a login carried a refused form given to another login of this browser, or unknown; dropped")
        t = translator(request)
        flash(request, t("form_expired.not_offered"), "warning")
        return None
    return resend


async def _audit_actor(request: web.Request, name: str) -> str:
    """The account a failed attempt named, as stored, or "-". Asked after the answer is decided, and the same
    query either way: the reply must not depend on whether the name exists."""
    if not name:
        return "-"
    return await asyncio.to_thread(services(request).accounts.account_name, name) or "-"


def _login_page(
    request: web.Request, *, error: str = "", name: str = "", status: int = 200, resend: KeptForm | None = None
) -> web.Response:
    context: dict[str, Any] = {
        "error": error,
        "name": name,
        "next": safe_next(request.query.get("next")),
        "resend": resend,  # a refused form the login carries, kept through a failed try
    }
    return render(request, "login.html", context, status=status)


@routes.get("/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    if maybe_user(request) is not None:
        raise web.HTTPFound("/")
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    t = translator(request)
    form = await request.post()
    name = str(form.get("name", ""))[:MAX_FIELD].strip()
    password = str(form.get("password", ""))[:MAX_FIELD]
    target = safe_next(str(form.get("next", "")))
    resend = keptform.from_login(form.items())
    address = client_address(request)
    now = svc.clock()
    if not request.app[THROTTLE].allow(address, now):
        if await refusals.refuse(request, THROTTLED_LOGINS, address) is not None:
            log.warning(
                "web: login attempts from %s throttled; more within a minute are counted, told at the end", address
            )
            actor = await _audit_actor(request, name)
            await audit_done(request, "login.failed", detail={"reason": "throttled"}, actor=actor)
        return _login_page(request, error=t("login.throttled"), name=name, status=429, resend=resend)
    await refusals.let_through(request, THROTTLED_LOGINS, address)
    if not name or not password:
        return _login_page(request, error=t("login.bad_credentials"), name=name, status=401, resend=resend)
    result: AuthResult = await hashing_call(
        request, svc.accounts.authenticate, name, password, address=address, now=now
    )
    if not result.ok or result.user is None:
        actor = await _audit_actor(request, name)
        await audit_done(request, "login.failed", detail={"reason": result.reason}, actor=actor)
        if result.locked_now:
            log.warning(
                "web: an account locked for %s after %d failed logins from there", address, svc.config.lockout_failures
            )
            await audit_done(request, "lockout", target=actor, detail={"until": result.locked_until}, actor=actor)
        # an unknown name is locked after as many failures as an account, with the same words: no name oracle
        if result.reason == "locked":
            error = t("login.locked", until=jst(result.locked_until))
        else:  # a disabled account gets the same answer as a wrong password: it tells a guesser nothing
            error = t("login.bad_credentials")
        return _login_page(request, error=error, name=name, status=401, resend=resend)
    user = result.user
    response = web.HTTPFound(target)
    session = login_session(request, response, user.name)
    resend = _given_to(request, resend, user.name)
    request[USER] = user
    session.last_login = {
        "at": result.previous_login[0] if result.previous_login else None,
        "address": result.previous_login[1] if result.previous_login else "",
        "failures": result.failures_since_last_login,
    }
    unaudited = await audit_done(
        request, "login", detail={"failures_since_last_login": result.failures_since_last_login}
    )
    if unaudited:
        flash(request, t("login.unaudited", reason=unaudited), "error")
    if result.password_expired or must_change_password(request, user):
        flash(request, t("password.must_change"), "warning")
        response.headers["Location"] = "/password"
    else:
        if user.role in PRIVILEGED:
            expires = user.password_changed_at + svc.config.password_max_age_days * DAY_S
            if expires - now <= EXPIRY_WARNING_DAYS * DAY_S:
                flash(request, t("password.expires_soon", date=jst(expires)), "warning")
        if resend is not None:
            session.resend = resend
            response.headers["Location"] = RESEND_PAGE
    raise response


@routes.get(RESEND_PAGE)
@requires(None)
async def resend_page(request: web.Request) -> web.StreamResponse:
    """Once, after a login that carried a refused form: the form again, to be pressed (or left)."""
    session = session_of(request)
    kept, session.resend = session.resend, None
    if kept is None:
        raise web.HTTPFound("/")
    return render(request, "form_expired.html", {"kept": kept, "back": kept.section, "reason": "logged_in_again"})


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    unaudited = await audit_done(request, "logout") if maybe_user(request) is not None else ""
    response = web.HTTPFound("/login")
    logout_session(request, response)
    t = translator(request)
    flash(request, t("logout.done"))
    if unaudited:
        flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise response

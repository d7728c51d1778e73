"""The user's own account: password change (forced when set by an admin or expired), language, first-admin setup."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from gateway.accounts.store import AccountError, PasswordRejected, Role, SetupRefused
from gateway.web.auth import (
    SESSIONS,
    current_user,
    hashing_call,
    login_session,
    maybe_user,
    requires,
    safe_next,
    services,
    session_of,
)
from gateway.web.i18n import LANGUAGES
from gateway.web.pages.audit import audit_done
from gateway.web.render import flash, render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_FIELD = 1024


def account_errors(request: web.Request, exc: AccountError) -> list[str]:
    """The sentences for a refused account change, in the user's language (every broken rule at once)."""
    t = translator(request)
    min_length = services(request).config.password_min_length
    if isinstance(exc, PasswordRejected):
        return [t(key, min_length=min_length) for key in exc.reasons]
    return [t(exc.key, min_length=min_length)]


def _field(form: Any, name: str) -> str:
    return str(form.get(name, ""))[:MAX_FIELD]


@routes.get("/password")
@requires(None, password_change_page=True)
async def password_form(request: web.Request) -> web.StreamResponse:
    return render(request, "password.html", {"errors": []})


@routes.post("/password")
@requires(None, password_change_page=True)
async def change_password(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    t = translator(request)
    user = current_user(request)
    form = await request.post()
    current, new, confirm = _field(form, "current"), _field(form, "new"), _field(form, "confirm")
    errors: list[str] = []
    if new != confirm:
        errors.append(t("password.mismatch"))
    else:
        # The current password proves it is the user at the keyboard, not someone at a left-open session;
        # wrong guesses count towards the lockout like failed logins.
        check = await hashing_call(request, svc.accounts.confirm_password, user.name, current, now=svc.clock())
        if not check.ok:
            unaudited = await audit_done(
                request, "login.failed", target=user.name, detail={"reason": "password_change"}
            )
            if check.locked_now:
                until = check.locked_until
                unaudited = await audit_done(request, "lockout", target=user.name, detail={"until": until}) or unaudited
            if unaudited:
                flash(request, t("audit.not_recorded", reason=unaudited), "error")
            errors.append(t("password.current_wrong"))
        else:
            try:
                await hashing_call(request, svc.accounts.set_password, user.name, new, now=svc.clock())
            except AccountError as exc:
                errors.extend(account_errors(request, exc))
    if errors:
        return render(request, "password.html", {"errors": errors}, status=400)
    unaudited = await audit_done(request, "user.password", target=user.name, detail={"by": "self"})
    # Other browsers logged in as this user (perhaps someone who knew the old password) are logged out.
    request.app[SESSIONS].drop_user(user.name)
    response = web.HTTPFound("/")
    login_session(request, response, user.name)
    flash(request, t("password.changed"), "success")
    if unaudited:
        flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise response


@routes.post("/lang")
async def set_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = str(form.get("lang", ""))
    if lang not in LANGUAGES:
        raise web.HTTPBadRequest(text=f"lang: must be one of {', '.join(LANGUAGES)}, got {lang[:20]!r}")
    session_of(request).language = lang
    user = maybe_user(request)
    if user is not None:
        await asyncio.to_thread(services(request).accounts.set_language, user.name, lang)
    raise web.HTTPFound(safe_next(str(form.get("next", ""))))


def _setup_page(
    request: web.Request, token: str, *, errors: list[str] | None = None, name: str = "", status: int = 200
) -> web.Response:
    return render(request, "setup.html", {"token": token, "errors": errors or [], "name": name}, status=status)


def _setup_invalid(request: web.Request, key: str = "setup.invalid") -> web.Response:
    return render(request, "setup_invalid.html", {"message": translator(request)(key)}, status=404)


@routes.get("/setup/{token}")
async def setup_form(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    token = request.match_info["token"][:MAX_FIELD]
    if not await asyncio.to_thread(svc.accounts.setup_token_valid, token, now=svc.clock()):
        return _setup_invalid(request)
    return _setup_page(request, token)


@routes.post("/setup/{token}")
async def setup(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    t = translator(request)
    token = request.match_info["token"][:MAX_FIELD]
    form = await request.post()
    name = _field(form, "name").strip()
    password, confirm = _field(form, "password"), _field(form, "confirm")
    if password != confirm:
        return _setup_page(request, token, errors=[t("password.mismatch")], name=name, status=400)
    try:
        user = await hashing_call(request, svc.accounts.use_setup_token, token, name, password, now=svc.clock())
    except SetupRefused as exc:
        return _setup_invalid(request, exc.key)
    except AccountError as exc:
        return _setup_page(request, token, errors=account_errors(request, exc), name=name, status=400)
    log.info("web: first admin created through the setup link")
    detail = {"role": Role.ADMIN.value, "via": "setup"}
    unaudited = await audit_done(request, "user.add", target=user.name, detail=detail, actor="setup")
    flash(request, t("setup.done", name=user.name), "success")
    if unaudited:
        flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise web.HTTPFound("/login")

"""Users (admins only): list, add with a role, reset a password, change a role, unlock, remove; each audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.accounts.store import AccountError, Role, User
from gateway.web.auth import SESSIONS, current_user, hashing_call, requires, services
from gateway.web.pages.account import account_errors
from gateway.web.pages.audit import audit_done
from gateway.web.render import flash, render, translator

routes = web.RouteTableDef()

MAX_FIELD = 1024
ROLES = tuple(role.value for role in Role)


def _field(form: Any, name: str) -> str:
    return str(form.get(name, ""))[:MAX_FIELD].strip()


def _role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


@routes.get("/users")
@requires(Role.ADMIN)
async def users(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    listed = await asyncio.to_thread(svc.accounts.list_users)
    now = svc.clock()
    rows = [{"user": u, "locked": u.locked(now), "expired": svc.accounts.password_expired(u, now=now)} for u in listed]
    return render(request, "users.html", {"rows": rows, "roles": ROLES})


async def _change(
    request: web.Request,
    change: Callable[[str, dict[str, Any]], Any],
    *,
    action: str,
    message: str,
    detail: Callable[[dict[str, Any]], dict[str, Any]] = lambda form: {},
    logout: bool = False,
) -> web.StreamResponse:
    """Runs one account change from a form, audits it, and goes back to the list with what happened."""
    t = translator(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    name = _field(form, "name")
    try:
        await hashing_call(request, change, name, form)
    except AccountError as exc:
        for line in account_errors(request, exc):
            flash(request, line, "error")
    else:
        if logout:  # whoever is logged in as them logs in again (new password) or not at all (removed)
            request.app[SESSIONS].drop_user(name)
        unaudited = await audit_done(request, action, target=name, detail=detail(form))
        flash(request, t(message, name=name), "success")
        if unaudited:
            flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise web.HTTPFound("/users")


@routes.post("/users/add")
@requires(Role.ADMIN)
async def add(request: web.Request) -> web.StreamResponse:
    svc = services(request)

    def change(name: str, form: dict[str, Any]) -> None:
        role = _role(_field(form, "role"))
        if role is None:
            raise _BadRole(f"user {name}: role must be one of {', '.join(ROLES)}", name=name)
        # The admin typed this password: the user must choose their own at first login.
        svc.accounts.add_user(name, role, str(form.get("password", ""))[:MAX_FIELD], now=svc.clock(), must_change=True)

    return await _change(
        request, change, action="user.add", message="users.added", detail=lambda f: {"role": _field(f, "role")}
    )


@routes.post("/users/role")
@requires(Role.ADMIN)
async def set_role(request: web.Request) -> web.StreamResponse:
    svc = services(request)

    def change(name: str, form: dict[str, Any]) -> None:
        role = _role(_field(form, "role"))
        if role is None:
            raise _BadRole(f"user {name}: role must be one of {', '.join(ROLES)}", name=name)
        svc.accounts.set_role(name, role)

    return await _change(
        request, change, action="user.role", message="users.role_changed", detail=lambda f: {"role": _field(f, "role")}
    )


@routes.post("/users/password")
@requires(Role.ADMIN)
async def reset_password(request: web.Request) -> web.StreamResponse:
    svc = services(request)

    def change(name: str, form: dict[str, Any]) -> None:
        svc.accounts.set_password(name, str(form.get("password", ""))[:MAX_FIELD], now=svc.clock(), must_change=True)

    return await _change(
        request,
        change,
        action="user.password",
        message="users.password_reset",
        detail=lambda f: {"by": "admin"},
        logout=True,
    )


@routes.post("/users/unlock")
@requires(Role.ADMIN)
async def unlock(request: web.Request) -> web.StreamResponse:
    svc = services(request)

    def change(name: str, form: dict[str, Any]) -> None:
        svc.accounts.unlock(name)

    return await _change(request, change, action="user.unlock", message="users.unlocked")


@routes.post("/users/remove")
@requires(Role.ADMIN)
async def remove(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    me: User = current_user(request)

    def change(name: str, form: dict[str, Any]) -> None:
        if name == me.name:
            raise _RemoveSelf(f"user {name}: cannot remove the account you are logged in with", name=name)
        svc.accounts.remove_user(name)

    return await _change(request, change, action="user.remove", message="users.removed", logout=True)


class _RemoveSelf(AccountError):
    key = "users.remove_self"


class _BadRole(AccountError):
    key = "users.role_invalid"

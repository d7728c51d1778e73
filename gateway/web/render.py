"""Server-side rendering: Jinja2 through aiohttp-jinja2, autoescaped, with translation, user, CSRF token and nav.

Every template gets `t(key, **kw)`, `lang`, `user`, `csrf_token`, `nav`, `flashes`, `last_login` and the
`jst` filter. Values from devices and users are untrusted text: autoescaping is on for every template and
nothing is marked safe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.accounts.store import Role
from gateway.web.auth import SESSION, maybe_user, services, session_of
from gateway.web.i18n import Catalogs, choose

TEMPLATE_DIR = Path(__file__).parent / "templates"
JST = dt.timezone(dt.timedelta(hours=9), "JST")
CATALOGS = web.AppKey("catalogs", Catalogs)


@dataclass(frozen=True, kw_only=True)
class NavItem:
    page: str  # the element id is nav-<page>, the label the message nav.<page>
    href: str
    role: Role


# The pages of the menu, in order, with the least role that sees them (the handlers check again).
NAV: tuple[NavItem, ...] = (
    NavItem(page="dashboard", href="/", role=Role.VIEWER),
    NavItem(page="live", href="/live", role=Role.VIEWER),
    NavItem(page="buffer", href="/buffer", role=Role.VIEWER),
    NavItem(page="config", href="/config", role=Role.TECHNICIAN),
    NavItem(page="devices", href="/devices", role=Role.VIEWER),
    NavItem(page="logs", href="/logs", role=Role.VIEWER),
    NavItem(page="stations", href="/stations", role=Role.LIBRARIAN),
    NavItem(page="lockers", href="/lockers", role=Role.LIBRARIAN),
    NavItem(page="users", href="/users", role=Role.ADMIN),
    NavItem(page="audit", href="/audit", role=Role.ADMIN),
    NavItem(page="wifi", href="/wifi", role=Role.WIFI_AUDITOR),
)


def home_page(role: Role) -> str:
    """The first page of the menu `role` sees: "/" on the viewer's ladder, /stations for a librarian, /wifi for a
    Wi-Fi auditor (where "/" sends them: the dashboard is not theirs to see)."""
    return next((item.href for item in NAV if role.allows(item.role)), "/password")


def jst(value: float | int | str | None) -> str:
    """Epoch seconds or an ISO-8601 UTC string as "2026-12-04 19:05:03 JST"; empty for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(float(value), dt.UTC)
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")


def setup(app: web.Application, catalogs: Catalogs) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt variable is an error, not an empty cell
    )
    env.filters["jst"] = jst
    app[CATALOGS] = catalogs


def language(request: web.Request) -> str:
    user = maybe_user(request)
    session = request.get(SESSION)
    return choose(
        user_language=user.language if user is not None else None,
        session_language=session.language if session is not None else None,
        accept=request.headers.get("Accept-Language", ""),
        default=services(request).config.language.value,
    )


def translator(request: web.Request) -> Any:
    catalogs = request.app[CATALOGS]
    lang = language(request)

    def t(key: str, /, **kw: Any) -> str:
        return catalogs.translate(lang, key, **kw)

    return t


def flash(request: web.Request, message: str, category: str = "info") -> None:
    """A message shown once on the next page (after a redirect); `message` already translated."""
    session_of(request).flashes.append((category, message))


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200, notices: bool = True
) -> web.Response:
    """`notices=False` leaves flashes and the last-login notice for the next page (error pages: a stray request
    for a missing file must not swallow the message meant for the page the user is looking at)."""
    user = maybe_user(request)
    session = session_of(request)
    nav = [item for item in NAV if user is not None and user.role.allows(item.role)]
    flashes: list[tuple[str, str]] = []
    last_login = None
    if notices:
        flashes, session.flashes = session.flashes, []
        last_login, session.last_login = session.last_login, None
    if notices and session.timed_out:
        session.timed_out = False
        flashes.insert(0, ("warning", translator(request)("session.expired")))
    if notices and session.form_expired:
        session.form_expired = False
        flashes.insert(0, ("warning", translator(request)("session.form_expired")))
    base: dict[str, Any] = {
        "t": translator(request),
        "lang": language(request),
        "user": user,
        "csrf_token": session.csrf_token,
        "nav": nav,
        "flashes": flashes,
        "last_login": last_login,
        "path": request.path,
        "password_min_length": services(request).config.password_min_length,
    }
    base.update(context)
    return aiohttp_jinja2.render_template(template, request, base, status=status)

"""The web UI's aiohttp application: middlewares, templates, catalogs, static files and the page modules.

Pages are modules `gateway/web/pages/<name>.py`, each with `routes = web.RouteTableDef()`; a new page adds
its module's name to `PAGES`, one line.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path

from aiohttp import web

from gateway.accounts.throttle import AddressThrottle
from gateway.web import refusals, security
from gateway.web.auth import (
    HASHING,
    MAX_CONCURRENT_HASHES,
    SESSIONS,
    THROTTLE,
    Handler,
    SessionTable,
    session_middleware,
)
from gateway.web.csrf import csrf_middleware
from gateway.web.i18n import Catalogs
from gateway.web.render import render, setup
from gateway.web.services import SERVICES, WebServices

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# Every request but those to the routes a page gives a limit of their own (its `large_forms`, see
# security.LargeForm).
MAX_REQUEST_BYTES = 4 * 1024 * 1024

PAGES: tuple[str, ...] = (
    "login",
    "account",
    "users",
    "audit",
    "dashboard",
    "live",
    "buffer",
    "config",
    "devices",
    "logs",
    "stations",
    "wifi",
    "lockers",
)


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 and 404 as pages in the user's language, with the menu (JSON for /api)."""
    try:
        return await handler(request)
    except (web.HTTPForbidden, web.HTTPNotFound) as exc:
        if request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        if request.path.startswith("/static/"):
            raise
        status = exc.status
        return render(request, f"{status}.html", {}, status=status, notices=status != 404)


def build_app(services: WebServices, *, strict_i18n: bool = False) -> web.Application:
    """`strict_i18n`: a missing message raises (the tests); in production it falls back to Japanese."""
    app = web.Application(
        # large_forms inside error_pages (a page's answer to a form too large may be a 403) and around the
        # csrf middleware, which reads the form
        middlewares=[session_middleware, error_pages, security.large_forms, csrf_middleware],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app[security.LARGE_FORMS] = {}
    app[SERVICES] = services
    app[SESSIONS] = SessionTable(
        idle_s=services.config.idle_timeout_minutes * 60,
        lifetime_s=services.config.session_lifetime_hours * 3600,
    )
    app[THROTTLE] = AddressThrottle(services.config.address_attempts_per_minute)
    app[HASHING] = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
    setup(app, Catalogs(strict=strict_i18n))
    security.install(app)
    refusals.install(app)
    for name in PAGES:
        module = importlib.import_module(f"gateway.web.pages.{name}")
        app.router.add_routes(module.routes)
        app[security.LARGE_FORMS].update(getattr(module, "large_forms", {}))
    # follow_symlinks=False (the default) and aiohttp's own check keep requests inside the directory.
    app.router.add_static("/static/", STATIC_DIR, name="static")
    return app

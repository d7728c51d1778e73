"""The dashboard `/` and its refresh `/api/status`: the gateway's status document as rows, or "not reachable"."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web.auth import current_user, requires, services
from gateway.web.render import home_page, jst, language, render, translator
from gateway.web.viewmodels.dashboard import Dashboard, alarm_items, alert_items, cells, dashboard, problem_texts

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


async def _status(request: web.Request) -> tuple[Dashboard | None, str]:
    """The view, or None and the reason in the user's language when the gateway does not answer."""
    t = translator(request)
    try:
        doc = await services(request).control.call("status")
    except ControlUnavailable as exc:
        log.debug("web: dashboard without the gateway: %s", exc.message)
        return None, t("gateway.unreachable")
    except ControlError as exc:
        log.warning("web: status op failed: %s %s", exc.code, exc.message)
        return None, t("gateway.error", code=exc.code)
    return dashboard(doc if isinstance(doc, dict) else {}), ""


@routes.get("/")
@requires(None)
async def page(request: web.Request) -> web.StreamResponse:
    role = current_user(request).role
    if not role.allows(Role.VIEWER):
        # a librarian's or a Wi-Fi auditor's login lands here too (its default next, the brand link): their own
        # first page rather than a 403 for a page they were never meant to see
        raise web.HTTPFound(home_page(role))
    view, error = await _status(request)
    t = translator(request)
    context: dict[str, Any] = {"view": view, "error": error, "cells": {}, "alerts": [], "alarms": [], "problems": []}
    if view is not None:
        context.update(
            cells=cells(view, t, jst),
            alerts=alert_items(view, t, jst),
            alarms=alarm_items(view, language(request), jst),
            problems=problem_texts(view, t),
        )
    return render(request, "dashboard.html", context)


@routes.get("/api/status")
@requires(Role.VIEWER)
async def api_status(request: web.Request) -> web.StreamResponse:
    view, error = await _status(request)
    if view is None:
        return web.json_response({"reachable": False, "error": error})
    t = translator(request)
    return web.json_response(
        {
            "reachable": True,
            "cells": cells(view, t, jst),
            "meters": {f"cap.{c.name}": c.percent for c in view.caps},
            "alerts": alert_items(view, t, jst),
            "alarms": alarm_items(view, language(request), jst),
            "problems": problem_texts(view, t),
        }
    )

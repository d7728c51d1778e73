"""Logs `/logs` and `/api/logs`: the gateway's recent log lines (its in-memory ring), by level and component."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web.auth import requires, services
from gateway.web.render import jst, render, translator
from gateway.web.viewmodels.logs import LEVELS, LogLine, components, filter_lines, parse_level

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

LIMIT = 500
MAX_COMPONENT = 100


def _query(request: web.Request) -> tuple[str, str]:
    return parse_level(request.query.get("level", "info")), request.query.get("component", "")[:MAX_COMPONENT].strip()


async def _lines(request: web.Request, level: str, component: str) -> tuple[list[LogLine], str]:
    t = translator(request)
    try:
        lines = await services(request).control.call("logs", level=level, component=component, limit=LIMIT)
    except ControlUnavailable:
        return [], t("gateway.unreachable")
    except ControlError as exc:
        log.warning("web: logs op failed: %s %s", exc.code, exc.message)
        return [], t("gateway.error", code=exc.code)
    docs = [line for line in lines if isinstance(line, dict)] if isinstance(lines, list) else []
    # the gateway filters already (components are adapter and uplink names, matched exactly); filtering
    # again keeps the page right with a gateway of another version
    return filter_lines(docs, level=level, component=component), ""


def _time(value: Any) -> str:
    try:
        return jst(value)
    except (ValueError, TypeError, OverflowError):
        return str(value)


@routes.get("/logs")
@requires(Role.VIEWER)
async def page(request: web.Request) -> web.StreamResponse:
    level, component = _query(request)
    lines, error = await _lines(request, level, component)
    context = {
        "lines": lines,
        "level": level,
        "component": component,
        "components": components(lines),  # the choices offered while typing: those in the lines shown
        "levels": LEVELS,
        "error": error,
        "time": _time,
    }
    return render(request, "logs.html", context)


@routes.get("/api/logs")
@requires(Role.VIEWER)
async def api_logs(request: web.Request) -> web.StreamResponse:
    level, component = _query(request)
    lines, error = await _lines(request, level, component)
    if error:
        return web.json_response({"reachable": False, "error": error})
    return web.json_response(
        {
            "reachable": True,
            "lines": [
                {"time": _time(x.time), "level": x.level, "component": x.component, "message": x.message} for x in lines
            ],
        }
    )

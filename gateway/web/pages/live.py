"""Live values `/live` and `/api/latest`: the latest reading of every entity, filtered on the gateway's side.

The filter goes to the control socket's `latest` op (the gateway filters its in-memory table, so a
narrow filter moves little data); the page's script narrows the rows already shown while the user
types, and polls /api/latest for fresh values without reloading the page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web.auth import requires, services
from gateway.web.render import jst, render, translator
from gateway.web.viewmodels.latest import EntityRow, entity_rows, parse_sort, to_json

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_FILTER = 200  # characters; an entity id is at most 256 in Orion, a filter is a fragment of one
LIMIT = 10_000  # rows on one page: beyond that a filter is the way


def _query(request: web.Request) -> tuple[str, str]:
    return request.query.get("filter", "")[:MAX_FILTER].strip(), request.query.get("sort", "entity")


async def _latest(request: web.Request, needle: str) -> tuple[list[Mapping[str, Any]], int, str]:
    """(entities, total known to the gateway, error text) — error text empty when the gateway answered."""
    t = translator(request)
    try:
        doc = await services(request).control.call("latest", filter=needle, limit=LIMIT)
    except ControlUnavailable as exc:
        log.debug("web: live values without the gateway: %s", exc.message)
        return [], 0, t("gateway.unreachable")
    except ControlError as exc:
        log.warning("web: latest op failed: %s %s", exc.code, exc.message)
        return [], 0, t("gateway.error", code=exc.code)
    if not isinstance(doc, Mapping):
        return [], 0, t("gateway.error", code="malformed")
    entities = doc.get("entities")
    total = doc.get("total")
    return (
        [e for e in entities if isinstance(e, Mapping)] if isinstance(entities, list) else [],
        total if isinstance(total, int) else 0,
        "",
    )


class _JstCache:
    """Many entities share an observation second: format each distinct time once per request."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, iso: str) -> str:
        text = self._seen.get(iso)
        if text is None:
            try:
                text = jst(iso) if iso else ""
            except ValueError:
                text = iso  # not a time: shown as the gateway sent it
            self._seen[iso] = text
        return text


@routes.get("/live")
@requires(Role.VIEWER)
async def page(request: web.Request) -> web.StreamResponse:
    needle, sort_value = _query(request)
    sort = parse_sort(sort_value)
    entities, total, error = await _latest(request, needle)
    rows: list[EntityRow] = entity_rows(entities, needle=needle, sort=sort)
    context = {
        "rows": rows,
        "total": total,
        "needle": needle,
        "sort": sort.value,
        "error": error,
        "when": _JstCache(),
    }
    return render(request, "live.html", context)


@routes.get("/api/latest")
@requires(Role.VIEWER)
async def api_latest(request: web.Request) -> web.StreamResponse:
    needle, sort_value = _query(request)
    entities, total, error = await _latest(request, needle)
    if error:
        return web.json_response({"reachable": False, "error": error})
    rows = entity_rows(entities, needle=needle, sort=parse_sort(sort_value))
    when = _JstCache()
    payload = to_json(rows)
    for item, row in zip(payload, rows, strict=True):
        item["observed"] = when(row.observed_at)
    t = translator(request)
    return web.json_response(
        {
            "reachable": True,
            "total": total,
            "shown": len(rows),
            "count": t("live.count", shown=len(rows), total=total),
            "entities": payload,
        }
    )

"""Live values `/live` and `/api/latest`: the latest reading of every entity, filtered on the gateway's side.

The filter goes to the control socket's `latest` op (the gateway filters its in-memory table, so a
narrow filter moves little data); the page's script narrows the rows already shown while the user
types, and polls /api/latest for fresh values without reloading the page. A page shows `PAGE_ROWS`
rows (sorted, with links to the others): 5,000 rows of HTML are 3 MB that nobody scrolls through, and
the filter reaches every entity anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web.auth import requires, services
from gateway.web.render import render, translator
from gateway.web.viewmodels.formats import Translate
from gateway.web.viewmodels.latest import JstCache, Page, SortKey, entity_rows, parse_sort, to_json

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_FILTER = 200  # characters; an entity id is at most 256 in Orion, a filter is a fragment of one
LIMIT = 100_000  # entities asked of the gateway: all it keeps
PAGE_ROWS = 500


def _offset(request: web.Request) -> int:
    try:
        return max(0, int(request.query.get("offset", "0")))
    except ValueError:
        return 0


def _query(request: web.Request) -> tuple[str, str]:
    return request.query.get("filter", "")[:MAX_FILTER].strip(), request.query.get("sort", "entity")


async def _latest(request: web.Request, needle: str, limit: int = LIMIT) -> tuple[list[Mapping[str, Any]], int, str]:
    """(entities, how many match the filter, error text) — error text empty when the gateway answered."""
    t = translator(request)
    try:
        doc = await services(request).control.call("latest", filter=needle, limit=limit)
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


async def _page(request: web.Request) -> tuple[Page, int, str, str, SortKey]:
    """(page, total matching, error, filter, sort) for the request's filter, sort and offset.

    The gateway sends its entities sorted by id: in that order the page asks for the rows up to its
    end only (the first page of 5,000 entities moves 500), in any other it needs them all.
    """
    needle, sort_value = _query(request)
    sort = parse_sort(sort_value)
    offset = _offset(request)
    limit = min(LIMIT, offset + PAGE_ROWS) if sort is SortKey.ENTITY else LIMIT
    entities, total, error = await _latest(request, needle, limit)
    shown = entity_rows(entities, needle=needle, sort=sort, offset=offset, limit=PAGE_ROWS)
    if sort is SortKey.ENTITY:
        shown = replace(shown, matched=total)
    return shown, total, error, needle, sort


@routes.get("/live")
@requires(Role.VIEWER)
async def page(request: web.Request) -> web.StreamResponse:
    shown, total, error, needle, sort = await _page(request)
    context = {
        "page": shown,
        "page_rows": PAGE_ROWS,
        "total": total,
        "needle": needle,
        "sort": sort.value,
        "error": error,
        "when": JstCache(),
    }
    return render(request, "live.html", context)


@routes.get("/api/latest")
@requires(Role.VIEWER)
async def api_latest(request: web.Request) -> web.StreamResponse:
    shown, total, error, _, _ = await _page(request)
    if error:
        return web.json_response({"reachable": False, "error": error})
    when = JstCache()
    payload = to_json(shown.rows)
    for item, row in zip(payload, shown.rows, strict=True):
        item["observed"] = when(row.observed_at)
    t = translator(request)
    return web.json_response(
        {
            "reachable": True,
            "total": total,
            "matched": shown.matched,
            "count": _count(t, shown),
            "entities": payload,
        }
    )


def _count(t: Translate, shown: Page) -> str:
    if not shown.rows:
        return t("live.count_none")
    return t("live.count", first=shown.offset + 1, last=shown.end, matched=shown.matched)

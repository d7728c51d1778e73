"""The audit log (admins only): filterable by actor and action, with the chain's verification at the top."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.accounts.store import Role
from gateway.web.auth import requires, services
from gateway.web.render import render

routes = web.RouteTableDef()

PAGE_SIZE = 100


@routes.get("/audit")
@requires(Role.ADMIN)
async def audit_page(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    actor = request.query.get("actor", "").strip()[:200]
    action = request.query.get("action", "").strip()[:200]
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    entries = await asyncio.to_thread(
        svc.audit.entries, limit=PAGE_SIZE + 1, offset=offset, actor=actor or None, action=action or None
    )
    verdict = await asyncio.to_thread(svc.audit.verify)
    context = {
        "entries": entries[:PAGE_SIZE],
        "more": len(entries) > PAGE_SIZE,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "actor": actor,
        "action": action,
        "verdict": verdict,
    }
    return render(request, "audit.html", context)

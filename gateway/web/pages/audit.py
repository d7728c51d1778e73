"""The audit log (admins only): filterable by actor and action, with the chain's verification at the top.

`audit_done` records an action that is already done. A damaged or unreadable audit store must not turn a done
action (a config written and reloaded, a login) into a 500: the entry is lost, so it is said on the result page
and logged at ERROR, and the UI stays usable to see and repair the problem. /audit says what is wrong with the
store (503), as /buffer and /wifi do for theirs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.errors import GatewayError
from gateway.storage.files import StoreUnreadable
from gateway.web.auth import audit, requires, services
from gateway.web.render import render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PAGE_SIZE = 100
# what the store raises when its file is damaged, locked, unreadable or on a full disk
STORE_ERRORS = (GatewayError, sqlite3.Error, OSError)


async def audit_done(
    request: web.Request,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
) -> str:
    """`audit` for an action already done: "" once recorded, else why the audit log could not record it."""
    try:
        await audit(request, action, target, detail, actor=actor)
    except STORE_ERRORS as exc:
        log.error("web: %s was not audited: %s", action, exc)  # no name: as the audit log's own lines
        return str(exc)
    return ""


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
    context: dict[str, Any] = {
        "entries": [],
        "more": False,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "actor": actor,
        "action": action,
        "verdict": None,
        "error": "",
    }
    try:
        entries = await asyncio.to_thread(
            svc.audit.entries, limit=PAGE_SIZE + 1, offset=offset, actor=actor or None, action=action or None
        )
        verdict = await asyncio.to_thread(svc.audit.verify)
    except STORE_ERRORS as exc:
        if not isinstance(exc, StoreUnreadable):  # a damaged file: the store's opener logged it
            log.warning("web: audit log not read: %s", exc)
        context["error"] = translator(request)("audit.unreadable", reason=str(exc))
        return render(request, "audit.html", context, status=503)
    context.update(entries=entries[:PAGE_SIZE], more=len(entries) > PAGE_SIZE, verdict=verdict)
    return render(request, "audit.html", context)

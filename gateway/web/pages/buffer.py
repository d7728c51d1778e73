"""Buffer `/buffer`: the dead letters with the far side's reason; technicians retry or discard a selection.

The list is read from the buffer file read-only (BufferReader); retry and discard are writes, so they
go through the gateway's control socket, and each is audited with the uplink, the ids and the count.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.errors import BufferUnavailable
from gateway.web.auth import current_user, requires, services
from gateway.web.pages.audit import audit_done
from gateway.web.render import flash, render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PAGE_SIZE = 100
MAX_SELECTED = 1000  # ids in one retry or discard


def _int(value: str, default: int) -> int:
    try:
        return max(0, int(value))
    except ValueError:
        return default


@routes.get("/buffer")
@requires(Role.VIEWER)
async def page(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    uplink = request.query.get("uplink", "").strip() or None
    offset = _int(request.query.get("offset", "0"), 0)
    error = ""
    letters: list[Any] = []
    total = 0
    try:
        letters = await svc.buffer.dead_letters(uplink, PAGE_SIZE, offset)
        total = await svc.buffer.dead_letter_count(uplink)
    except (BufferUnavailable, sqlite3.Error) as exc:  # a locked or damaged file: said on the page, never a 500
        log.warning("web: dead letters not read: %s", exc)
        error = translator(request)("buffer.unreadable")
    user = current_user(request)
    context = {
        "letters": letters,
        "total": total,
        "uplink": uplink or "",
        "offset": offset,
        "page_size": PAGE_SIZE,
        "error": error,
        "can_act": user.role.allows(Role.TECHNICIAN),
    }
    return render(request, "buffer.html", context)


def selected(values: list[str]) -> dict[str, list[int]]:
    """Checkbox values `<uplink>:<id>` grouped by uplink; malformed ones are ignored (a page of another version)."""
    out: dict[str, list[int]] = defaultdict(list)
    for value in values[:MAX_SELECTED]:
        name, _, number = value.rpartition(":")
        if name and number.isdigit():
            out[name].append(int(number))
    return dict(out)


async def _act(request: web.Request, op: str, action: str) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    groups = selected([str(v) for v in form.getall("ids", [])])
    if not groups:
        flash(request, t("buffer.none_selected"), "error")
        raise web.HTTPSeeOther("/buffer")
    user = current_user(request)
    done = 0
    unaudited = ""
    for uplink, ids in sorted(groups.items()):
        try:
            result = await services(request).control.call(op, uplink=uplink, ids=ids)
        except ControlUnavailable:
            flash(request, t("gateway.unreachable"), "error")
            break
        except ControlError as exc:
            log.warning("web: %s for %s failed: %s %s", op, uplink, exc.code, exc.message)
            flash(request, t("buffer.failed", uplink=uplink, message=exc.message), "error")
            continue
        count = result.get("count", 0) if isinstance(result, dict) else 0
        done += count
        unaudited = await audit_done(request, action, target=uplink, detail={"ids": ids, "count": count}) or unaudited
        log.info("web: %s of %d dead letter(s) of %s by %s", action, count, uplink, user.name)
    flash(request, t(f"{action}.done", count=done), "success")
    if unaudited:
        flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise web.HTTPSeeOther("/buffer")


@routes.post("/buffer/retry")
@requires(Role.TECHNICIAN)
async def retry(request: web.Request) -> web.StreamResponse:
    return await _act(request, "retry_dead_letters", "dead_letter.retry")


@routes.post("/buffer/discard")
@requires(Role.TECHNICIAN)
async def discard(request: web.Request) -> web.StreamResponse:
    return await _act(request, "discard_dead_letters", "dead_letter.discard")

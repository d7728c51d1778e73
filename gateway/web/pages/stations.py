"""Stations `/stations`: each scanner station's last scans and errors, and an outreach station's offline backlog.

For librarians (admins too). The stations come from any adapter whose diagnostics carry `stations`
(the scanner family's do), read through the control socket's `status`; no family is imported here.
A lending station's backlog is read from the buffer file read-only: its loans an uplink has not
delivered yet. Zero everywhere means the backlog has gone out, which the page says in words.
Nothing shown is personal: reasons, scan numbers and times only, never a card number.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.errors import BufferUnavailable
from gateway.web.auth import requires, services
from gateway.web.render import render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

ERROR_REASONS = frozenset(
    {
        "bad_check",
        "unknown",
        "visit_refused",
        "wrong_kind",
        "no_patron",
        "no_shelf",
        "already_left",
        # RFID tags whose type of usage makes them no item to lend or return here (adapters/rfid/danish.py)
        "not_for_loan",
        "discarded",
        "not_an_item",
        "unknown_usage",
        # refused by the adapter itself (adapters/scanner/adapter.py CALLER_REFUSALS)
        "not_storable",
        "ambiguous_patron",
    }
)


@dataclass
class StationView:
    adapter: str
    station: str
    purpose: str
    mode: str
    recent: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    backlog: dict[str, int] = field(default_factory=dict)  # uplink -> loans not yet delivered
    backlog_known: bool = False
    present: int | None = None  # attendance: children in now


def _views(doc: dict[str, Any]) -> list[tuple[StationView, str]]:
    out = []
    for a in doc.get("adapters", []):
        stations = (a.get("diagnostics") or {}).get("stations")
        if not isinstance(stations, dict):
            continue
        for sid, s in sorted(stations.items()):
            recent = [r for r in s.get("recent", []) if isinstance(r, dict)]
            view = StationView(
                adapter=str(a.get("name", "")),
                station=str(sid),
                purpose=str(s.get("purpose", "")),
                mode=str(s.get("mode", "")),
                recent=recent,
                errors=[r for r in recent if r.get("reason") in ERROR_REASONS],
                present=s["present"] if isinstance(s.get("present"), int) else None,
            )
            out.append((view, str(s.get("loan_prefix", ""))))
    return out


@routes.get("/stations")
@requires(Role.LIBRARIAN)
async def page(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    svc = services(request)
    error = ""
    views: list[StationView] = []
    try:
        doc = await svc.control.call("status")
    except ControlUnavailable as exc:
        log.debug("web: stations without the gateway: %s", exc.message)
        error = t("gateway.unreachable")
    except ControlError as exc:
        log.warning("web: status op failed: %s %s", exc.code, exc.message)
        error = t("gateway.error", code=exc.code)
    else:
        for view, prefix in _views(doc if isinstance(doc, dict) else {}):
            if view.purpose == "lending" and prefix:
                try:
                    view.backlog = await svc.buffer.pending_entities(prefix)
                    view.backlog_known = True
                except (BufferUnavailable, sqlite3.Error) as exc:
                    log.warning("web: station backlog not read: %s", exc)
            views.append(view)
    return render(request, "stations.html", {"stations": views, "error": error})

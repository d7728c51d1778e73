"""The librarian's locker page `/lockers`: the compartments' grid, assigning one to a reservation, opening, cancelling.

Everything goes to the gateway through the control socket: the compartments are found in its
latest values (entity type `LockerCompartment`), each locker adapter's grid comes from its `grid`
command, and assign / unlock / cancel / reset are commands on a compartment's entity. The patron's
e-mail address goes to the gateway and is never shown again, logged or written to the audit log.

A form's entity id is resolved against the locker adapters' own grids, the ones the page shows, before
anything is sent: the gateway does not audit commands from its control socket, so the web's audit entry is
the only record of who opened which door, and it names the compartment's own label and site (the adapter),
its entity id in the detail, never the form's `label`. The grids and not the latest values: those are the
processed readings, which a valid `[[processing]]` rename or drop of `compartmentLabel` leaves without a
label. An entity id that is no compartment's is refused with a 400 and nothing is sent; the refusal is shown
on the page from the grids already read, and when the gateway did not answer it is not asked again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.locker.grids import LATEST_COMPARTMENTS, grid_targets
from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web.auth import maybe_user, requires, services
from gateway.web.pages.audit import audit_done
from gateway.web.render import flash, render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAIL_PURPOSE = "locker.pickup"
ACTIONS = ("unlock", "cancel", "reset")
_FIELD_MAX = 254


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A control call's result, or None with the error to show and whether the gateway did not answer at all."""

    result: Any = None
    error: str = ""
    unreachable: bool = False


async def _call(request: web.Request, op: str, **args: Any) -> Reply:
    t = translator(request)
    try:
        return Reply(result=await services(request).control.call(op, **args))
    except ControlUnavailable:
        return Reply(error=t("gateway.unreachable"), unreachable=True)
    except ControlError as exc:
        log.warning("web: %s op failed: %s %s", op, exc.code, exc.message)
        return Reply(error=t("gateway.error", code=exc.code))


async def compartment_entities(request: web.Request) -> tuple[dict[str, str], Reply]:
    """adapter name → one of its compartments' entity ids (where its `grid` command goes); and the reply, for its
    error."""
    reply = await _call(request, "latest", **LATEST_COMPARTMENTS)
    return grid_targets(reply.result), reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Sites:
    """The locker adapters' grids as the page shows them, and what kept any of them from being read."""

    sites: list[dict[str, Any]] = field(default_factory=list)  # {"adapter": name, "cells": [grid cell, …]}
    error: str = ""
    unreachable: bool = False  # the gateway did not answer: ask it nothing more while answering this request

    def compartment(self, entity_id: str) -> tuple[str, Mapping[str, Any]] | None:
        """(site, grid cell) of the compartment whose entity is `entity_id`, or None."""
        for site in self.sites:
            for cell in site["cells"]:
                if cell.get("entity_id") == entity_id:
                    return site["adapter"], cell
        return None


async def grids(request: web.Request) -> Sites:
    firsts, reply = await compartment_entities(request)
    sites = []
    error, unreachable = reply.error, reply.unreachable
    actor = _actor(request)
    for adapter, entity_id in sorted(firsts.items()):
        answer = await _call(request, "command", entity_id=entity_id, name="grid", value=None, actor=actor)
        result = answer.result
        if isinstance(result, Mapping) and result.get("ok"):
            try:
                loaded = json.loads(str(result.get("info")))
            except ValueError:
                loaded = []
            cells = [c for c in loaded if isinstance(c, Mapping)] if isinstance(loaded, list) else []
            sites.append({"adapter": adapter, "cells": cells})
        error = error or answer.error
        if answer.unreachable:  # each further site would wait out its own timeout too
            unreachable = True
            break
    return Sites(sites=sites, error=error, unreachable=unreachable)


@routes.get("/lockers")
@requires(Role.LIBRARIAN)
async def lockers(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def _page(request: web.Request, *, status: int = 200, read: Sites | None = None) -> web.Response:
    """The page; `read`: the grids this request has read already, not asked for again."""
    sites = read if read is not None else await grids(request)
    failures: list[Any] | None = None  # not known: the section is left out
    if not sites.unreachable:
        try:
            answer = await services(request).control.call("mail.failures", purpose=MAIL_PURPOSE)
        except ControlError:  # no [mail] (assigning says so), or the gateway's error (said above): no list to show
            answer = []
        failures = answer if isinstance(answer, list) else []
    return render(
        request,
        "lockers.html",
        {"sites": sites.sites, "error": sites.error, "failures": failures},
        status=status,
    )


def _actor(request: web.Request) -> str:
    user = maybe_user(request)
    return user.name if user is not None else "-"


REASONS = frozenset(
    {
        "unknown",
        "refused",
        "offline",
        "open",
        "stuck",
        "invalid_email",
        "invalid_reference",
        "no_mail",
        "mail_failed",
        "free",
        "unreachable",
    }
)


def _reason(info: str) -> str:
    """The stable reason word before the first colon of a refusal (`busy: …` → `busy`)."""
    word = info.split(":", 1)[0].strip()
    return word if word in REASONS else "failed"


# What became of the code mail, as the word the adapter's answer to `cancel` carries at a fixed place, the second
# "; " field (adapters/locker/code_mail.py, MailFate): `cancelled: assignment 7; mail=sent; its code mail 12 had
# been sent already; …`; the English after it is for people and may change. Each word has its own sentence,
# since staff decide from it whether to call the patron; a word missing or not known here says the patron may
# have the code (the safe side).
MAIL_OUTCOMES = frozenset({"withdrawn", "sending", "sent", "failed", "not_queued", "none", "no_queue", "not_withdrawn"})
_MAIL_WORD = "mail="


# outcomes after which the patron may hold the code (or may yet get it): staff are to act, so a warning
_PATRON_MAY_HAVE_CODE = frozenset({"sending", "sent", "not_queued", "no_queue", "not_withdrawn", "unknown"})


def mail_outcome(info: str) -> str:
    """The code mail's fate in a cancel's answer, as a word of MAIL_OUTCOMES, or `unknown`."""
    fields = info.split("; ", 2)
    word = fields[1].removeprefix(_MAIL_WORD) if len(fields) > 1 and fields[1].startswith(_MAIL_WORD) else ""
    return word if word in MAIL_OUTCOMES else "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The compartment a form acts on, as its site's grid has it."""

    entity_id: str
    label: str
    site: str  # its locker adapter's name, as the page heads its grid


async def _target(request: web.Request, what: str) -> Target | web.Response:
    """The form's compartment, from the grids the page shows; else the page, with a 400 and why for an entity id
    that is no compartment's (or one without a label), a 503 when the gateway does not answer (a `label` the form
    may carry is never used: a stale or edited form must not put another door's label on the record)."""
    t = translator(request)
    form = await request.post()
    entity_id = str(form.get("entity_id", ""))[:300]
    read = await grids(request)
    found = read.compartment(entity_id)
    if found is not None:
        site, cell = found
        label = str(cell.get("label") or "")[:40]
        if label:
            return Target(entity_id=entity_id, label=label, site=site)
        log.warning(
            "web: %s by %s refused: compartment %r of locker adapter %s has no label in its grid",
            what,
            _actor(request),
            entity_id,
            site,
        )
        flash(request, t("lockers.refused.no_label", entity_id=entity_id, site=site), "error")
        return await _page(request, status=400, read=read)
    if read.error:  # the gateway did not answer (or not for every site): nothing can be sent either
        flash(request, read.error, "error")
        return await _page(request, status=503, read=read)
    log.warning(
        "web: %s by %s refused: entity id %r is no compartment in the locker adapters' grids",
        what,
        _actor(request),
        entity_id,
    )
    flash(request, t("lockers.refused.not_compartment", entity_id=entity_id), "error")
    return await _page(request, status=400, read=read)


async def _command(request: web.Request, entity_id: str, name: str, value: Any) -> tuple[bool, str]:
    reply = await _call(request, "command", entity_id=entity_id, name=name, value=value, actor=_actor(request))
    if not isinstance(reply.result, Mapping):
        return False, "unreachable: the gateway did not answer"
    return bool(reply.result.get("ok")), str(reply.result.get("info", ""))


@routes.post("/lockers/assign")
@requires(Role.LIBRARIAN)
async def assign(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    target = await _target(request, "assign")
    if isinstance(target, web.Response):
        return target
    email = str(form.get("email", "")).strip()[:_FIELD_MAX]
    reference = str(form.get("reference", "")).strip()[:_FIELD_MAX]
    ok, info = await _command(request, target.entity_id, "assign", {"email": email, "reference": reference})
    names = {"label": target.label, "site": target.site}
    if ok:
        detail = json.loads(info)
        unaudited = await audit_done(
            request,
            "locker.assign",
            target.label,
            {
                "reference": reference,
                "mail_id": detail.get("mail_id"),
                "entity_id": target.entity_id,
                "site": target.site,
            },
        )
        flash(request, t("lockers.assigned", **names), "success")
        if unaudited:
            flash(request, t("audit.not_recorded", reason=unaudited), "error")
    else:
        flash(request, t(f"lockers.refused.{_reason(info)}", **names), "error")
    raise web.HTTPFound("/lockers")


@routes.post("/lockers/action")
@requires(Role.LIBRARIAN)
async def action(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    name = str(form.get("action", ""))
    if name not in ACTIONS:
        raise web.HTTPBadRequest(reason="unknown action")
    target = await _target(request, name)
    if isinstance(target, web.Response):
        return target
    ok, info = await _command(request, target.entity_id, name, None)
    unaudited = await audit_done(
        request,
        f"locker.{name}",
        target.label,
        {"ok": ok, "result": info[:200], "entity_id": target.entity_id, "site": target.site},
    )
    names = {"label": target.label, "site": target.site}
    if ok and name == "cancel":
        outcome = mail_outcome(info)
        category = "warning" if outcome in _PATRON_MAY_HAVE_CODE else "success"
        flash(request, t(f"lockers.done.cancel.{outcome}", **names), category)
    elif ok:
        flash(request, t(f"lockers.done.{name}", **names), "success")
    else:
        flash(request, t(f"lockers.refused.{_reason(info)}", **names), "error")
    if unaudited:
        flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise web.HTTPFound("/lockers")

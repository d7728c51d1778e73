"""The librarian's locker page `/lockers`: the compartments' grid, assigning one to a reservation, opening, cancelling.

Everything goes to the gateway through the control socket: the compartments are found in its
latest values (entity type `LockerCompartment`), each locker adapter's grid comes from its `grid`
command, and assign / unlock / cancel / reset are commands on a compartment's entity. The patron's
e-mail address goes to the gateway and is never shown again, logged or written to the audit log.

A form's entity id is resolved against those same latest values before anything is sent: the gateway does
not audit commands from its control socket, so the web's audit entry is the only record of who opened which
door, and it names the compartment's own label (its entity id in the detail), never the form's `label`. An
entity id that is no compartment's is refused with a 400 and nothing is sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web.auth import maybe_user, requires, services
from gateway.web.pages.audit import audit_done
from gateway.web.render import flash, render, translator

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

COMPARTMENT_TYPE = "LockerCompartment"
MAIL_PURPOSE = "locker.pickup"
ACTIONS = ("unlock", "cancel", "reset")
_FIELD_MAX = 254


async def _call(request: web.Request, op: str, **args: Any) -> tuple[Any, str]:
    t = translator(request)
    try:
        return await services(request).control.call(op, **args), ""
    except ControlUnavailable:
        return None, t("gateway.unreachable")
    except ControlError as exc:
        log.warning("web: %s op failed: %s %s", op, exc.code, exc.message)
        return None, t("gateway.error", code=exc.code)


async def _compartments(request: web.Request) -> tuple[list[tuple[str, str, str]], str]:
    """(adapter, entity id, label) of every compartment in the gateway's latest values; label "" if it has none."""
    doc, error = await _call(request, "latest", filter="", limit=100_000)
    found: list[tuple[str, str, str]] = []
    if isinstance(doc, Mapping):
        for e in doc.get("entities") or []:
            if not isinstance(e, Mapping) or e.get("entity_type") != COMPARTMENT_TYPE:
                continue
            labels = [
                str(a.get("value"))
                for a in e.get("attributes") or []
                if isinstance(a, Mapping) and a.get("name") == "compartmentLabel"
            ]
            found.append((str(e.get("adapter")), str(e.get("entity_id")), labels[0] if labels else ""))
    return found, error


async def compartment_entities(request: web.Request) -> tuple[dict[str, str], str]:
    """adapter name → one of its compartments' entity ids (where its `grid` command goes)."""
    found, error = await _compartments(request)
    firsts: dict[str, str] = {}
    for adapter, entity_id, _ in found:
        firsts.setdefault(adapter, entity_id)
    return firsts, error


async def compartment_label(request: web.Request, entity_id: str) -> tuple[str | None, str]:
    """The label of the compartment whose entity is `entity_id`, or None when no compartment has that entity id
    (or it has no label); and the gateway's error, if it did not answer."""
    found, error = await _compartments(request)
    for _, eid, label in found:
        if eid == entity_id and label:
            return label, error
    return None, error


async def grids(request: web.Request) -> tuple[list[dict[str, Any]], str]:
    firsts, error = await compartment_entities(request)
    sites = []
    actor = _actor(request)
    for adapter, entity_id in sorted(firsts.items()):
        result, err = await _call(request, "command", entity_id=entity_id, name="grid", value=None, actor=actor)
        if isinstance(result, Mapping) and result.get("ok"):
            try:
                cells = json.loads(str(result.get("info")))
            except ValueError:
                cells = []
            sites.append({"adapter": adapter, "cells": cells})
        error = error or err
    return sites, error


@routes.get("/lockers")
@requires(Role.LIBRARIAN)
async def lockers(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def _page(request: web.Request, *, status: int = 200) -> web.Response:
    sites, error = await grids(request)
    try:
        failures = await services(request).control.call("mail.failures", purpose=MAIL_PURPOSE)
    except ControlError:  # no [mail] (assigning says so), or no gateway (said above): no list to show
        failures = []
    return render(
        request,
        "lockers.html",
        {
            "sites": sites,
            "error": error,
            "failures": failures if isinstance(failures, list) else [],
        },
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


async def _target(request: web.Request, what: str) -> tuple[str, str] | web.Response:
    """The form's entity id and its compartment's label; else the page, with a 400 and why for an entity id that
    is no compartment's, a 503 when the gateway does not answer (a `label` the form may carry is never used: a
    stale or edited form must not put another door's label on the record)."""
    t = translator(request)
    form = await request.post()
    entity_id = str(form.get("entity_id", ""))[:300]
    label, error = await compartment_label(request, entity_id)
    if label is not None:
        return entity_id, label[:40]
    if error:  # the gateway did not answer: nothing can be sent either
        flash(request, error, "error")
        return await _page(request, status=503)
    log.warning(
        "web: %s by %s refused: entity id %r is no locker compartment in the gateway's latest values",
        what,
        _actor(request),
        entity_id,
    )
    flash(request, t("lockers.refused.not_compartment", entity_id=entity_id), "error")
    return await _page(request, status=400)


async def _command(request: web.Request, entity_id: str, name: str, value: Any) -> tuple[bool, str]:
    result, _ = await _call(request, "command", entity_id=entity_id, name=name, value=value, actor=_actor(request))
    if not isinstance(result, Mapping):
        return False, "unreachable: the gateway did not answer"
    return bool(result.get("ok")), str(result.get("info", ""))


@routes.post("/lockers/assign")
@requires(Role.LIBRARIAN)
async def assign(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    target = await _target(request, "assign")
    if isinstance(target, web.Response):
        return target
    entity_id, label = target
    email = str(form.get("email", "")).strip()[:_FIELD_MAX]
    reference = str(form.get("reference", "")).strip()[:_FIELD_MAX]
    ok, info = await _command(request, entity_id, "assign", {"email": email, "reference": reference})
    if ok:
        detail = json.loads(info)
        unaudited = await audit_done(
            request,
            "locker.assign",
            label,
            {"reference": reference, "mail_id": detail.get("mail_id"), "entity_id": entity_id},
        )
        flash(request, t("lockers.assigned", label=label), "success")
        if unaudited:
            flash(request, t("audit.not_recorded", reason=unaudited), "error")
    else:
        flash(request, t(f"lockers.refused.{_reason(info)}", label=label), "error")
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
    entity_id, label = target
    ok, info = await _command(request, entity_id, name, None)
    unaudited = await audit_done(
        request, f"locker.{name}", label, {"ok": ok, "result": info[:200], "entity_id": entity_id}
    )
    if ok and name == "cancel":
        outcome = mail_outcome(info)
        category = "warning" if outcome in _PATRON_MAY_HAVE_CODE else "success"
        flash(request, t(f"lockers.done.cancel.{outcome}", label=label), category)
    elif ok:
        flash(request, t(f"lockers.done.{name}", label=label), "success")
    else:
        flash(request, t(f"lockers.refused.{_reason(info)}", label=label), "error")
    if unaudited:
        flash(request, t("audit.not_recorded", reason=unaudited), "error")
    raise web.HTTPFound("/lockers")

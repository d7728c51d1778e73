"""Devices `/devices`: the firmware profiles (list, show), and for technicians the families' tools with progress.

Profiles are read through gateway.profiles' loader (the same search path and validation as
`edgegw profile`). Tools run in the gateway process (it holds the serial ports): the form is built
from the `tools` op's params, `tool.start` starts a job, and the page polls `/api/tools/<job>`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.errors import ConfigError
from gateway.profiles.cli import format_profile
from gateway.profiles.loader import ProfileRef, find_profiles, load_profile
from gateway.web.auth import current_user, requires, services
from gateway.web.render import CATALOGS, flash, language, render, translator
from gateway.web.viewmodels.formats import Translate

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_ARG = 200  # characters of one tool argument
# `after` for a poll that wants only the job's tool, no lines: past any job's end (a job keeps at most
# control.tools.MAX_LINES lines and a closing one), within what the control socket takes
PAST_THE_LINES = 2**31
# what a tool's id keeps of its family's and tool's names: plain names keep the ids bookmarks were made with
_PLAIN = re.compile(r"[^A-Za-z0-9_-]")
TOOLS_ANCHOR = "tools"


def tool_anchor(family: str, tool: str) -> str:
    """The id of a tool's form on /devices, for a link `/devices#<id>`: the names come from the families (a third
    party's may hold spaces or Japanese), so any other character is written as `_<hex>_`, which keeps the id a
    plain word in a URL and two tools' ids apart."""

    def plain(name: str) -> str:
        return _PLAIN.sub(lambda m: f"_{ord(m.group()):x}_", name)

    return f"tool-{plain(family)}-{plain(tool)}"


def back_link(job: Mapping[str, Any] | None) -> str:
    """Where a job's page leads back to: its tool's form, or the tools part for a job whose tool is not known."""
    family, tool = (job.get("family"), job.get("tool")) if job else (None, None)
    if isinstance(family, str) and family and isinstance(tool, str) and tool:
        return f"/devices#{tool_anchor(family, tool)}"
    return f"/devices#{TOOLS_ANCHOR}"


def job_heading(job: Mapping[str, Any] | None, messages: Mapping[str, str], t: Translate) -> str:
    """The job page's heading in the user's language: the tool's title as the tools form shows it, from the
    gateway's `tool.poll` answer `job`; a plain "tool run" for a job the gateway does not know (it restarted, or
    an address typed in) or an answer that names no tool."""
    family, tool, title = (job.get("family"), job.get("tool"), job.get("title")) if job else (None, None, None)
    if not (isinstance(family, str) and family and isinstance(tool, str) and tool):
        return t("devices.job_title_unknown")
    english = title if isinstance(title, str) and title else f"{family} {tool}"
    return t("devices.job_title", title=messages.get(f"tools.{family}.{tool}.title", english))


async def _job_tool(request: web.Request, job: str) -> Mapping[str, Any] | None:
    """The gateway's `tool.poll` answer for `job` without its lines; None where there is none to have."""
    try:
        answer = await services(request).control.call("tool.poll", job=job, after=PAST_THE_LINES)
    except ControlUnavailable:
        return None  # the page still opens: its poll shows the gateway unreachable
    except ControlError as exc:
        if exc.code != "not_found":
            log.warning("web: tool.poll of job %s failed: %s %s", job, exc.code, exc.message)
        return None
    return answer if isinstance(answer, Mapping) else None


def _profiles() -> list[dict[str, Any]]:
    rows = []
    refs: list[ProfileRef] = find_profiles()
    for ref in refs:
        try:
            p = load_profile(ref.name)
        except ConfigError as exc:
            rows.append({"name": ref.name, "ok": False, "errors": len(exc.errors)})
            continue
        rows.append(
            {
                "name": ref.name,
                "ok": True,
                "vendor": p.vendor,
                "model": p.model,
                "entity_type": p.entity_type,
                "points": len(p.points),
            }
        )
    return rows


async def _tools(request: web.Request) -> tuple[list[dict[str, Any]], str]:
    try:
        tools = await services(request).control.call("tools")
    except ControlUnavailable:
        return [], translator(request)("gateway.unreachable")
    except ControlError as exc:
        log.warning("web: tools op failed: %s %s", exc.code, exc.message)
        return [], translator(request)("gateway.error", code=exc.code)
    return [tool for tool in tools if isinstance(tool, dict)] if isinstance(tools, list) else [], ""


def tool_texts(tool: Mapping[str, Any], messages: Mapping[str, str]) -> dict[str, Any]:
    """`tool` as the form shows it: title, field labels and help from the catalog
    (`tools.<family>.<tool>.title`, `.<param>`, `.<param>.help`), the family's own English where the catalog has
    none yet (a family added after the catalog, or a third party's)."""
    prefix = f"tools.{tool.get('family')}.{tool.get('tool')}"
    params = []
    for p in tool.get("params") or []:
        if not isinstance(p, Mapping):
            continue
        name = str(p.get("name", ""))
        label = messages.get(f"{prefix}.{name}", name)
        params.append({**p, "label": label, "help": messages.get(f"{prefix}.{name}.help", str(p.get("help") or ""))})
    return {
        **tool,
        "title": messages.get(f"{prefix}.title", str(tool.get("title", ""))),
        "params": params,
        "anchor": tool_anchor(str(tool.get("family", "")), str(tool.get("tool", ""))),
    }


@routes.get("/devices")
@requires(Role.VIEWER)
async def page(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    technician = user.role.allows(Role.TECHNICIAN)
    tools, tools_error = await _tools(request) if technician else ([], "")
    messages = request.app[CATALOGS].messages.get(language(request), {})
    context = {
        "profiles": await asyncio.to_thread(_profiles),
        "tools": [tool_texts(tool, messages) for tool in tools],
        "tools_error": tools_error,
        "technician": technician,
    }
    return render(request, "devices.html", context)


@routes.get(r"/devices/profiles/{vendor:[a-z0-9][a-z0-9_-]*}/{model:[a-z0-9][a-z0-9_.-]*}")
@requires(Role.VIEWER)
async def profile(request: web.Request) -> web.StreamResponse:
    name = f"{request.match_info['vendor']}/{request.match_info['model']}"
    try:
        p = await asyncio.to_thread(load_profile, name)
    except ConfigError as exc:
        if getattr(exc, "code", "") == "profile_not_found":
            raise web.HTTPNotFound() from None
        return render(request, "profile.html", {"name": name, "text": "", "errors": exc.errors})
    return render(request, "profile.html", {"name": name, "text": format_profile(name, p), "errors": []})


def tool_args(params: list[Mapping[str, Any]], form: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The form's fields typed by the tool's params; (args, problems). Empty optional fields are left out."""
    args: dict[str, Any] = {}
    problems: list[str] = []
    for p in params:
        name, kind = str(p.get("name", "")), str(p.get("type", "str"))
        if kind == "bool":
            args[name] = form.get(name) == "on"
            continue
        raw = str(form.get(name, ""))[:MAX_ARG].strip()
        if raw == "":
            if p.get("required"):
                problems.append(name)
            continue
        try:
            value = int(raw, 0) if kind == "int" else float(raw) if kind == "float" else raw
        except ValueError:
            problems.append(name)
            continue
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            problems.append(name)  # the control socket's JSON carries 64-bit integers (orjson)
            continue
        args[name] = value
    return args, problems


@routes.post("/devices/tools/start")
@requires(Role.TECHNICIAN)
async def start(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    family, tool = str(form.get("family", "")), str(form.get("tool", ""))
    tools, error = await _tools(request)
    match = next((x for x in tools if x.get("family") == family and x.get("tool") == tool), None)
    if error or match is None:
        flash(request, error or t("devices.no_such_tool"), "error")
        raise web.HTTPSeeOther("/devices")
    params = [p for p in match.get("params", []) if isinstance(p, Mapping)]
    args, problems = tool_args(params, {k: v for k, v in form.items() if isinstance(v, str)})
    if problems:
        flash(request, t("devices.bad_args", names=", ".join(problems)), "error")
        raise web.HTTPSeeOther("/devices")
    try:
        result = await services(request).control.call("tool.start", family=family, tool=tool, args=args)
    except ControlUnavailable:
        flash(request, t("gateway.unreachable"), "error")
        raise web.HTTPSeeOther("/devices") from None
    except ControlError as exc:
        flash(request, t("devices.start_failed", message="; ".join(exc.errors) or exc.message), "error")
        raise web.HTTPSeeOther("/devices") from None
    job = str(result.get("job", "")) if isinstance(result, dict) else ""
    log.info("web: tool %s %s started by %s as job %s", family, tool, current_user(request).name, job)
    raise web.HTTPSeeOther(f"/devices/tools/{job}")


@routes.get(r"/devices/tools/{job:[A-Za-z0-9_.-]+}")
@requires(Role.TECHNICIAN)
async def job_page(request: web.Request) -> web.StreamResponse:
    job = request.match_info["job"]
    messages = request.app[CATALOGS].messages.get(language(request), {})
    known = await _job_tool(request, job)
    heading = job_heading(known, messages, translator(request))
    return render(request, "tool_job.html", {"job": job, "heading": heading, "back": back_link(known)})


@routes.get(r"/api/tools/{job:[A-Za-z0-9_.-]+}")
@requires(Role.TECHNICIAN)
async def poll(request: web.Request) -> web.StreamResponse:
    try:
        after = max(0, int(request.query.get("after", "0")))
    except ValueError:
        after = 0
    try:
        result = await services(request).control.call("tool.poll", job=request.match_info["job"], after=after)
    except ControlUnavailable:
        # as the other polls say it (live.js keeps asking, less often, until the gateway answers)
        return web.json_response({"reachable": False, "error": translator(request)("gateway.unreachable")}, status=503)
    except ControlError as exc:
        status = 404 if exc.code == "not_found" else 400
        return web.json_response({"error": exc.message}, status=status)
    if not isinstance(result, Mapping):
        return web.json_response(result)
    # the page may have been rendered before the gateway knew the job, or while it did not answer: its
    # refresh names the tool as the page would now, in the user's language
    messages = request.app[CATALOGS].messages.get(language(request), {})
    heading = job_heading(result, messages, translator(request))
    return web.json_response({**result, "heading": heading, "back": back_link(result)})

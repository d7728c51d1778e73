"""Configuration `/config`: the running file with secrets masked, edit, check, diff, apply, versions, rollback.

Theory of operation. The editor shows the running file masked (`configtext.mask`); whatever text comes
back (typed, or uploaded from a downloaded copy) has the running values put back (`configtext.restore`) before
the gateway sees it, each into the element it was masked in, so masked secrets keep their values and a secret
typed anew replaces one. A placeholder with nothing to put back (its element renamed and changed, or gone)
refuses the check or apply, naming the keys to type again: guessing would send one uplink's credentials to
another's server. Check,
apply and rollback are the control socket's ops: the gateway validates with its own loader, writes
the file and reloads; this process never writes the config. The form carries the SHA-256 of the
running file the edit started from: an apply over a file someone else changed meanwhile is refused.
A text over MAX_TEXT is refused whole (413), never cut: a cut text could apply without its tail. The forms'
request limits (`large_forms`) let every text within MAX_TEXT reach that check, and answer a body over them
with the page's own message.
An upload counts characters too, as the editor and the control protocol do: it is read up to the bytes
MAX_TEXT characters can be (4 each in UTF-8), decoded, then counted.
The text work (mask, restore, diff, errors at their lines) takes about a second for a 1 MiB text, so it
runs in a worker thread: the other users' pages must not wait for it.
An action done (apply, rollback) whose audit entry cannot be written says so on its page, never a 500
(pages.audit.audit_done); a download is recorded before it leaves, so it is refused instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.accounts.store import Role
from gateway.control.protocol import MAX_TEXT, ControlError, ControlUnavailable
from gateway.web.auth import current_user, requires, services
from gateway.web.pages.audit import audit_done
from gateway.web.render import flash, render, translator
from gateway.web.security import LargeForm
from gateway.web.viewmodels.configtext import ConfigProblem, DiffView, diff, mask, masked_diff, problems, restore

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# A textarea travels URL-encoded: up to 12 bytes a character (4 UTF-8 bytes as %XX each, outside the BMP),
# 9 for Japanese, 6 a line end (CRLF). The room holds the other fields (token, base, a 200-character comment).
FORM_BYTES = MAX_TEXT * 12 + 64 * 1024
# A file travels as it is: MAX_TEXT characters of 4 UTF-8 bytes at most, a byte order mark, the multipart framing.
BOM = b"\xef\xbb\xbf"
UPLOAD_TEXT_BYTES = MAX_TEXT * 4 + len(BOM)
UPLOAD_BYTES = UPLOAD_TEXT_BYTES + 64 * 1024
MAX_PROBLEMS_SHOWN = 100  # a thousand errors are one mistake repeated: the first ones say what it is
MAX_LOST_NAMED = 20  # keys named in the message; the problems list marks them all at their lines


class _Unavailable(Exception):
    """The gateway did not answer: the page says so instead of an editor."""


async def _call(request: web.Request, op: str, **args: Any) -> Any:
    try:
        return await services(request).control.call(op, **args)
    except ControlUnavailable as exc:
        log.debug("web: config page without the gateway: %s", exc.message)
        raise _Unavailable from None


async def _running(request: web.Request) -> dict[str, Any]:
    doc = await _call(request, "config.get")
    return doc if isinstance(doc, dict) else {}


async def _versions(request: web.Request) -> list[dict[str, Any]]:
    try:
        versions = await _call(request, "config.versions")
    except ControlError as exc:
        log.warning("web: config.versions failed: %s %s", exc.code, exc.message)
        return []
    return [v for v in versions if isinstance(v, dict)] if isinstance(versions, list) else []


def _unreachable(request: web.Request) -> web.Response:
    return render(request, "config.html", {"error": translator(request)("gateway.unreachable")}, status=503)


@dataclass(frozen=True, slots=True, kw_only=True)
class _TextView:
    text: str  # in the editor
    problems: list[ConfigProblem]
    diff: DiffView


def _text_view(running: dict[str, Any], text: str | None, errors: list[str]) -> _TextView:
    """The editor's text, the first errors at their lines and the diff; in a worker thread (see the module)."""
    running_text = str(running.get("text", ""))
    shown = mask(running_text)
    edited = shown if text is None else text
    # the diff compares masked texts: it is shown, and a secret must not appear in it
    changes = masked_diff(running_text, edited, running_name=str(running.get("path", "running")))
    return _TextView(text=edited, problems=problems(errors[:MAX_PROBLEMS_SHOWN], edited), diff=changes)


async def _editor(
    request: web.Request,
    *,
    text: str | None = None,
    errors: list[str] | None = None,
    checked: bool = False,
    status: int = 200,
    running: dict[str, Any] | None = None,
) -> web.Response:
    if running is None:
        running = await _running(request)
    errors = errors or []
    view = await asyncio.to_thread(_text_view, running, text, errors)
    if len(errors) > MAX_PROBLEMS_SHOWN:
        t = translator(request)
        more = len(errors) - MAX_PROBLEMS_SHOWN
        flash(request, t("config.more_problems", total=len(errors), shown=MAX_PROBLEMS_SHOWN, more=more), "warning")
    context = {
        "error": "",
        "path": running.get("path", ""),
        "version": running.get("version"),
        "base": running.get("sha256", ""),
        "text": view.text,
        "problems": view.problems,
        "checked": checked and not errors,
        "diff": view.diff,
        "versions": await _versions(request),
    }
    return render(request, "config.html", context, status=status)


def _form_text(value: Any) -> str:
    # a browser sends a textarea's line ends as CRLF: the limit counts the text as the file will have it
    return str(value or "").replace("\r\n", "\n")


async def _too_long(request: web.Request, text: str) -> web.Response:
    """Refused whole, as an upload over the limit is: the running file in the editor, nothing checked or written."""
    t = translator(request)
    flash(request, t("config.text_too_large", length=len(text), limit=MAX_TEXT), "error")
    return await _editor(request, status=413)


async def _lost(
    request: web.Request, text: str, lost: tuple[str, ...], running: dict[str, Any], *, status: int
) -> web.Response:
    """Masked values with nothing to put back: refused, the keys named at their lines, the text kept in the editor."""
    t = translator(request)
    named = ", ".join(lost[:MAX_LOST_NAMED]) + (" …" if len(lost) > MAX_LOST_NAMED else "")
    flash(request, t("config.masked_lost", paths=named), "error")
    errors = [f"{path}: {t('config.masked_lost_here')}" for path in lost]
    return await _editor(request, text=text, errors=errors, status=status, running=running)


def _too_large(message: str, limit: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The answer to a form or an upload over its byte limit, unread: its text is over MAX_TEXT for certain,
    though by how much is unknown. The editor again with the running file, 413."""

    @requires(Role.TECHNICIAN)
    async def answer(request: web.Request) -> web.StreamResponse:
        flash(request, translator(request)(message, limit=limit), "error")
        try:
            return await _editor(request, status=413)
        except _Unavailable:
            return _unreachable(request)

    return answer


_form_too_large = _too_large("config.form_too_large", MAX_TEXT)


large_forms = {
    "/config/check": LargeForm(max_bytes=FORM_BYTES, role=Role.TECHNICIAN, too_large=_form_too_large),
    "/config/apply": LargeForm(max_bytes=FORM_BYTES, role=Role.TECHNICIAN, too_large=_form_too_large),
    "/config/upload": LargeForm(
        max_bytes=UPLOAD_BYTES, role=Role.TECHNICIAN, too_large=_too_large("config.upload_too_large", MAX_TEXT)
    ),
}


@routes.get("/config")
@requires(Role.TECHNICIAN)
async def page(request: web.Request) -> web.StreamResponse:
    try:
        return await _editor(request)
    except _Unavailable:
        return _unreachable(request)


@routes.post("/config/check")
@requires(Role.TECHNICIAN)
async def check(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    text = _form_text(form.get("text"))
    try:
        if len(text) > MAX_TEXT:
            return await _too_long(request, text)
        running = await _running(request)
        restored = await asyncio.to_thread(restore, text, str(running.get("text", "")))
        if restored.lost:
            return await _lost(request, text, restored.lost, running, status=200)
        try:
            result = await _call(request, "config.check", text=restored.text)
        except ControlError as exc:
            if exc.code == "config_invalid" and exc.errors:
                return await _editor(request, text=text, errors=exc.errors, checked=True, running=running)
            log.warning("web: config.check failed: %s %s", exc.code, exc.message)
            flash(request, translator(request)("config.check_failed", message=exc.message), "error")
            return await _editor(request, text=text, status=502, running=running)
        errors = [str(e) for e in result.get("errors", [])] if isinstance(result, dict) else []
        # 200 either way: errors are the check's answer; a refused apply is the one that says 422
        return await _editor(request, text=text, errors=errors, checked=True, running=running)
    except _Unavailable:
        return _unreachable(request)


@routes.post("/config/apply")
@requires(Role.TECHNICIAN)
async def apply(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    text = _form_text(form.get("text"))
    comment = str(form.get("comment", ""))[:200]
    user = current_user(request)
    try:
        if len(text) > MAX_TEXT:
            return await _too_long(request, text)
        running = await _running(request)
        running_text = str(running.get("text", ""))
        if str(form.get("base", "")) != str(running.get("sha256", "")):
            flash(request, t("config.changed_meanwhile"), "error")
            return await _editor(request, text=text, status=409, running=running)
        restored = await asyncio.to_thread(restore, text, running_text)
        if restored.lost:
            return await _lost(request, text, restored.lost, running, status=422)
        full = restored.text
        size = await asyncio.to_thread(diff, running_text, full)
        try:
            result = await _call(request, "config.apply", text=full, actor=user.name, comment=comment)
        except ControlError as exc:
            if exc.code == "config_invalid" and exc.errors:
                return await _editor(request, text=text, errors=exc.errors, checked=True, status=422, running=running)
            flash(request, t("config.apply_failed", message=exc.message), "error")
            return await _editor(request, text=text, status=502, running=running)
    except _Unavailable:
        return _unreachable(request)
    version = result.get("version") if isinstance(result, dict) else None
    unaudited = await audit_done(
        request,
        "config.apply",
        target=str(running.get("path", "")),
        detail={"version": version, "added": size.added, "removed": size.removed, "comment": comment},
    )
    log.info("web: config version %s applied by %s (+%d -%d lines)", version, user.name, size.added, size.removed)
    if unaudited:
        flash(request, t("config.applied_unaudited", version=version, reason=unaudited), "error")
    else:
        flash(request, t("config.applied", version=version), "success")
    raise web.HTTPSeeOther("/config")


@routes.post("/config/rollback")
@requires(Role.TECHNICIAN)
async def rollback(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    form = await request.post()
    try:
        target = int(str(form.get("version", "")))
    except ValueError:
        raise web.HTTPBadRequest(text="version: must be a number") from None
    user = current_user(request)
    try:
        result = await _call(request, "config.rollback", version=target, actor=user.name)
    except _Unavailable:
        return _unreachable(request)
    except ControlError as exc:
        log.warning("web: rollback to %d failed: %s %s", target, exc.code, exc.message)
        flash(request, t("config.rollback_failed", version=target, message=exc.message), "error")
        raise web.HTTPSeeOther("/config") from None
    version = result.get("version") if isinstance(result, dict) else None
    unaudited = await audit_done(
        request, "config.rollback", target=str(target), detail={"to": target, "version": version}
    )
    log.info("web: config rolled back to version %d by %s (now version %s)", target, user.name, version)
    if unaudited:
        flash(request, t("config.rolled_back_unaudited", target=target, version=version, reason=unaudited), "error")
    else:
        flash(request, t("config.rolled_back", target=target, version=version), "success")
    raise web.HTTPSeeOther("/config")


@routes.get("/config/versions")
@requires(Role.TECHNICIAN)
async def versions(request: web.Request) -> web.StreamResponse:
    try:
        listed = await _versions(request)
        running = await _running(request)
    except _Unavailable:
        return _unreachable(request)
    return render(request, "config_versions.html", {"versions": listed, "current": running.get("version")})


@routes.get("/config/versions/{version:\\d+}")
@requires(Role.TECHNICIAN)
async def version(request: web.Request) -> web.StreamResponse:
    number = int(request.match_info["version"])
    try:
        running = await _running(request)
        try:
            doc = await _call(request, "config.version", version=number)
        except ControlError as exc:
            raise web.HTTPNotFound() from exc
    except _Unavailable:
        return _unreachable(request)
    text, changes = await asyncio.to_thread(_version_view, running, doc, number)
    context = {"number": number, "doc": doc, "text": text, "diff": changes}
    return render(request, "config_version.html", context)


def _version_view(running: dict[str, Any], doc: Any, number: int) -> tuple[str, DiffView]:
    text = mask(str(doc.get("text", ""))) if isinstance(doc, dict) else ""
    return text, diff(mask(str(running.get("text", ""))), text, edited_name=f"version {number}")


@routes.get("/config/download")
@requires(Role.TECHNICIAN)
async def download(request: web.Request) -> web.StreamResponse:
    try:
        running = await _running(request)
        unaudited = await audit_done(
            request, "export", target="config", detail={"version": running.get("version"), "masked": True}
        )
        if unaudited:
            flash(request, translator(request)("config.download_unaudited", reason=unaudited), "error")
            return await _editor(request, status=503, running=running)
    except _Unavailable:
        return _unreachable(request)
    return web.Response(
        text=await asyncio.to_thread(mask, str(running.get("text", ""))),
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="gateway.toml"'},
    )


@routes.post("/config/upload")
@requires(Role.TECHNICIAN)
async def upload(request: web.Request) -> web.StreamResponse:
    """A file from the technician's laptop, shown in the editor: checking and applying stay separate steps."""
    t = translator(request)
    form = await request.post()
    field = form.get("config_file")
    data = b""
    if isinstance(field, web.FileField):
        with field.file:  # aiohttp spools a large file to disk and leaves it open: closed now, not at collection
            data = field.file.read(UPLOAD_TEXT_BYTES + 1)
    try:
        if not data:
            flash(request, t("config.upload_empty"), "error")
            return await _editor(request, status=400)
        if len(data) > UPLOAD_TEXT_BYTES:  # more than MAX_TEXT characters whatever they are: not decoded
            flash(request, t("config.upload_too_large", limit=MAX_TEXT), "error")
            return await _editor(request, status=413)
        try:
            text = data.removeprefix(BOM).decode("utf-8").replace("\r\n", "\n")
        except UnicodeDecodeError:
            flash(request, t("config.upload_not_utf8"), "error")
            return await _editor(request, status=400)
        if len(text) > MAX_TEXT:
            flash(request, t("config.upload_too_long", length=len(text), limit=MAX_TEXT), "error")
            return await _editor(request, status=413)
        flash(request, t("config.uploaded"), "success")
        return await _editor(request, text=text)
    except _Unavailable:
        return _unreachable(request)

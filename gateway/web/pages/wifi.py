"""Wi-Fi log inquiries (role wifi-auditor only): search, signed export, erasure certificates.

Every search and export needs the inquiry's reference number and is written to the audit log before
any row is shown or sent (gateway.wifilog.cli.audit_detail: the terms used and a keyed digest, never
their values). The store is opened as a reader (Access.READ_ONLY): the web process runs as the gateway's
user with the data directory read-only (ReadOnlyPaths=), and writes nothing there; what keeps it from
reading (no gateway holding the log open, a damaged file) is said on the page (503), never a 500.

The store's SQLite runs in worker threads, its close too: close() waits for a search still running in its
thread (the store serialises its connection), which a handler cancelled mid-search (its client went away)
leaves behind; waiting for it on the event loop stalled every other user's page.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.radius.errors import MacAddressError
from adapters.radius.mac import normalize_mac
from gateway.accounts.store import Role
from gateway.errors import GatewayError
from gateway.storage.files import Access, StoreUnavailable, StoreUnreadable
from gateway.web.auth import current_user, requires, services
from gateway.web.pages.audit import audit_done
from gateway.web.render import render, translator
from gateway.wifilog.cli import audit_detail, inquiry_key
from gateway.wifilog.export import write_export
from gateway.wifilog.sessions import Session
from gateway.wifilog.signing import public_pem
from gateway.wifilog.store import JST, RETENTION_MONTHS, Query, WifiLogError, WifiLogStore, normalize_ip

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

RESULT_LIMIT = 1000
_FIELDS = ("reference", "mac", "ip", "user", "time_from", "time_to")


def _data_dir(request: web.Request) -> Path:
    return services(request).buffer.path.parent  # the buffer lives in [gateway] data_dir


def _time(text: str) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo is not None else t.replace(tzinfo=JST)


class _BadTerm(ValueError):
    """A search term the store would refuse, as the catalog key (and field) of the sentence saying so: the
    store's own messages are English, for the CLI."""

    def __init__(self, key: str, field: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.field = field


def _query(form: dict[str, str]) -> Query:
    if not (form["mac"] or form["ip"] or form["user"] or form["time_from"]):
        raise _BadTerm("wifi.need_term")
    times: dict[str, datetime | None] = {}
    for name in ("time_from", "time_to"):
        try:
            times[name] = _time(form[name])
        except ValueError:
            raise _BadTerm("wifi.bad_time", name) from None
    if form["mac"]:
        try:
            normalize_mac(form["mac"], where="wifi search mac")
        except MacAddressError:
            raise _BadTerm("wifi.bad_mac") from None
    if form["ip"]:
        try:
            normalize_ip(form["ip"])
        except WifiLogError:
            raise _BadTerm("wifi.bad_ip") from None
    try:
        return Query(
            mac=form["mac"] or None,
            ip=form["ip"] or None,
            user=form["user"] or None,
            time_from=times["time_from"],
            time_to=times["time_to"],
            limit=RESULT_LIMIT,
        )
    except WifiLogError as exc:  # a rule of the store's that the checks above do not know yet
        log.warning("web: Wi-Fi search refused by the store (%s)", exc.code)
        raise _BadTerm("wifi.bad_query") from None


async def _form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: str(data.get(k, "")).strip()[:200] for k in _FIELDS}


def _overview(store: WifiLogStore) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return store.certificates(), store.stats()


async def _page(request: web.Request, store: WifiLogStore, extra: dict[str, Any], status: int = 200) -> web.Response:
    certificates, stats = await asyncio.to_thread(_overview, store)
    context = {
        "form": dict.fromkeys(_FIELDS, ""),
        "sessions": None,
        "error": None,
        "error_text": None,
        "certificates": certificates,
        "stats": stats,
        "limit": RESULT_LIMIT,
        **extra,
    }
    return render(request, "wifi.html", context, status=status)


@asynccontextmanager
async def _opened(request: web.Request) -> AsyncIterator[WifiLogStore | web.Response]:
    """The log opened as a reader, or the page saying why it cannot be read (503); closed in a worker thread
    however the handler ends, cancelled too (the close is shielded: it goes on while the handler is cancelled)."""
    store = await _open(request)
    if isinstance(store, web.Response):
        yield store
        return
    try:
        yield store
    finally:
        await asyncio.shield(asyncio.to_thread(store.close))


async def _open(request: web.Request) -> WifiLogStore | web.Response:
    # shielded: a handler cancelled while its thread opens the store leaves the store to _close_unused
    opening = asyncio.ensure_future(asyncio.to_thread(WifiLogStore, _data_dir(request), access=Access.READ_ONLY))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_unused)
        raise
    except (StoreUnavailable, StoreUnreadable) as exc:  # logged by the store's opener
        return _unreadable(request, exc)
    except (GatewayError, sqlite3.Error, OSError) as exc:
        log.warning("web: Wi-Fi log not read: %s", exc)
        return _unreadable(request, exc)


def _close_unused(opening: asyncio.Future[WifiLogStore]) -> None:
    if not opening.cancelled() and opening.exception() is None:  # a failed open has nothing to close
        asyncio.get_running_loop().run_in_executor(None, opening.result().close)


def _unreadable(request: web.Request, exc: Exception) -> web.Response:
    """The page without the log, saying why (503): the search form stays, for when it can be read again."""
    context: dict[str, Any] = {
        "form": dict.fromkeys(_FIELDS, ""),
        "sessions": None,
        "error": None,
        "error_text": str(exc),
        "certificates": [],
        "stats": {"sessions_per_period": {}, "erased_periods": [], "retention_months": RETENTION_MONTHS},
        "limit": RESULT_LIMIT,
    }
    return render(request, "wifi.html", context, status=503)


@routes.get("/wifi")
@requires(Role.WIFI_AUDITOR)
async def wifi_page(request: web.Request) -> web.StreamResponse:
    async with _opened(request) as store:
        if isinstance(store, web.Response):
            return store
        return await _page(request, store, {})


async def _search(
    request: web.Request, store: WifiLogStore, form: dict[str, str], action: str
) -> web.Response | tuple[Query, list[Session]]:
    """The form's query run and audited as `action`, or the page again with what is wrong (400):
    an inquiry needs its reference (the request that justifies it) and a valid query."""
    if not form["reference"]:
        return await _page(request, store, {"form": form, "error": "wifi.reference_required"}, status=400)
    try:
        query = _query(form)
    except _BadTerm as bad:
        t = translator(request)
        text = t(bad.key, field=t(f"wifi.{bad.field}")) if bad.field else t(bad.key)
        return await _page(request, store, {"form": form, "error_text": text}, status=400)
    try:
        key = await asyncio.to_thread(inquiry_key, store.secrets)
    except GatewayError as exc:  # no signing key yet: the gateway's Wi-Fi log makes it at its start
        log.warning("web: Wi-Fi log not searched: %s", exc)
        return _unreadable(request, exc)
    sessions = await asyncio.to_thread(store.search, query)
    detail = audit_detail(query, form["reference"], len(sessions), key=key)
    unaudited = await audit_done(request, action, form["reference"], detail)
    if unaudited:  # an inquiry nobody can account for: nothing of it is shown or sent
        error = translator(request)("wifi.unaudited", reason=unaudited)
        return await _page(request, store, {"form": form, "error_text": error}, status=503)
    return query, sessions


@routes.post("/wifi/search")
@requires(Role.WIFI_AUDITOR)
async def wifi_search(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    async with _opened(request) as store:
        if isinstance(store, web.Response):
            return store
        found = await _search(request, store, form, "wifi.search")
        if isinstance(found, web.Response):
            return found
        return await _page(request, store, {"form": form, "sessions": found[1]})


@routes.post("/wifi/export")
@requires(Role.WIFI_AUDITOR)
async def wifi_export(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    async with _opened(request) as store:
        if isinstance(store, web.Response):
            return store
        found = await _search(request, store, form, "wifi.export")
        if isinstance(found, web.Response):
            return found
        query, sessions = found
        now = datetime.fromtimestamp(services(request).clock(), JST)
        stem = f"wifi-{now.strftime('%Y%m%d-%H%M%S')}"
        gateway_id = await asyncio.to_thread(_gateway_id, services(request).gateway_config_path, form["reference"])
        body = await asyncio.to_thread(
            _zip, store, sessions, query, form["reference"], current_user(request).name, now, stem, gateway_id
        )
    return web.Response(
        body=body,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{stem}.zip"', "Cache-Control": "no-store"},
    )


def _gateway_id(config_path: Path, reference: str) -> str:
    """[gateway] id of the configuration `edgegw web` runs with, for the export's manifest; "" when it cannot be
    read now. The inquiry is answered all the same: the manifest's signature already proves which box made it."""
    from gateway.config import load_config

    try:
        return load_config(config_path).gateway.id
    except (GatewayError, OSError) as exc:  # ConfigError says the file and why
        log.warning("web: Wi-Fi export %r made without the gateway's id: %s", reference, exc)
        return ""


def _zip(
    store: WifiLogStore,
    sessions: list[Any],
    query: Query,
    reference: str,
    who: str,
    now: datetime,
    stem: str,
    gateway_id: str,
) -> bytes:
    """The CSV, its signed manifest and the public key to verify both, in one download."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / f"{stem}.csv"
        manifest = write_export(
            sessions,
            query,
            signer=store.signer,
            reference=reference,
            who=who,
            now=now,
            csv_path=csv_path,
            gateway_id=gateway_id,
        )
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(csv_path.name, csv_path.read_bytes())
            z.writestr(f"{csv_path.name}.manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
            # the key that signed, not the file beside the store: a reader does not publish it
            z.writestr("signing-public.pem", public_pem(store.signer.public_key))
    return buf.getvalue()


@routes.get("/wifi/certificates/{period:[0-9]{4}-[0-9]{2}}.json")
@requires(Role.WIFI_AUDITOR)
async def wifi_certificate(request: web.Request) -> web.StreamResponse:
    async with _opened(request) as store:
        if isinstance(store, web.Response):
            return store
        certs = {c["period"]: c for c in await asyncio.to_thread(store.certificates)}
    cert = certs.get(request.match_info["period"])
    if cert is None:
        raise web.HTTPNotFound()
    return web.Response(
        text=json.dumps(cert, ensure_ascii=False, indent=2),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="erasure-{cert["period"]}.json"'},
    )

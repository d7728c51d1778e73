"""The pickup kiosk: the touchscreen page beside the lockers, no login, only that page (its own aiohttp app).

It is an application of its own, not routes of the admin UI, so that nothing of the admin UI (its
sessions, menus, other pages) is reachable from the kiosk's browser: it answers `/` (the form),
`POST /open` and its static files, and 404 to everything else. Without sessions, CSRF is a
double-submit token: an HMAC-signed, time-limited nonce set as a SameSite=Strict cookie and
repeated in the form; both must match and verify. Every try is throttled per client address (a
sliding minute) on top of the gateway's per-compartment lockout after N wrong codes. Refused posts (throttled,
without their token, not text) are logged once per spell of their address, the others counted and told at its
end (gateway.web.refusals); they are not audited. A try is
written to the audit log (actor `kiosk`, the compartment, the outcome; never the code). What was typed as
the compartment is audited and shown back only when it is one of the kiosk's compartments: a patron who
swapped the two fields typed their code there (as the login page audits a name that is no account, `-`).

A kiosk serves one locker adapter (one site): its compartments only, so that a patron's A-01 is
never another site's A-01 (`edgegw locker kiosk --adapter NAME`, required when the gateway has
several). Without a name it serves the one there is, and refuses every try while it sees several. A typed
label is looked up in that adapter's `grid` (its own words), not in the gateway's processed latest values.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from adapters.locker.grids import LATEST_COMPARTMENTS, grid_targets
from gateway.accounts.throttle import AddressThrottle
from gateway.audit.log import AuditLog
from gateway.control.client import ControlClient
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.web import refusals, security
from gateway.web.i18n import Catalogs
from gateway.web.refusals import CSRF_REFUSALS, UNREADABLE_FORMS, RefusalSpells

__all__ = ["COOKIE", "build_kiosk_app", "csrf_token", "verify_token"]

log = logging.getLogger(__name__)

COOKIE = "edgegw_kiosk_csrf"
TOKEN_TTL_S = 3600.0
ENTITY_CACHE_S = 30.0
_LABEL_MAX = 32
_CODE_MAX = 12
STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
# the outcomes the adapter reports (`<reason>: …`) that the kiosk has a sentence for
OUTCOMES = frozenset(
    {
        "opened",
        "wrong_code",
        "locked",
        "no_code",
        "cancelled_code",
        "expired_code",
        "used_code",
        "offline",
        "open",
        "stuck",
        "unknown",
        "unconfirmed",
    }
)

CONTROL = web.AppKey("kiosk_control", ControlClient)
STATE = web.AppKey("kiosk_state", dict)
THROTTLED_TRIES = web.AppKey("kiosk_throttled_tries", RefusalSpells)


def csrf_token(key: bytes, now: float) -> str:
    nonce = secrets.token_urlsafe(16)
    issued = str(int(now))
    mac = hmac.new(key, f"{nonce}.{issued}".encode(), hashlib.sha256).hexdigest()
    return f"{nonce}.{issued}.{mac}"


def verify_token(key: bytes, token: str, now: float) -> bool:
    try:
        nonce, issued, mac = token.split(".")
        age = now - int(issued)
    except ValueError:
        return False
    expected = hmac.new(key, f"{nonce}.{issued}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    # bytes, not str: compare_digest raises TypeError for a str with non-ASCII characters, and the token
    # comes from an unauthenticated public form
    return hmac.compare_digest(mac.encode("utf-8", "replace"), expected.encode("ascii")) and 0 <= age <= TOKEN_TTL_S


def build_kiosk_app(
    control: ControlClient,
    *,
    audit: AuditLog | None = None,
    clock: Callable[[], float] = time.time,
    attempts_per_minute: int = 10,
    lang: str = "ja",
    key: bytes | None = None,
    secure_cookie: bool = True,
    adapter: str | None = None,
) -> web.Application:
    """The kiosk's application; `lang` is the touchscreen's language (ja, or en for a visitor's kiosk);
    `adapter` the locker adapter whose compartments it opens (None: the only one)."""
    app = web.Application(client_max_size=4096)
    state: dict[str, Any] = {
        "key": key or secrets.token_bytes(32),
        "throttle": AddressThrottle(attempts_per_minute),
        "clock": clock,
        "audit": audit,
        "catalogs": Catalogs(),
        "lang": lang,
        "adapter": adapter,
        "entities": {},
        "entities_at": -1e18,
        "ambiguous": "",  # said once: the locker adapters seen while none was named
        "no_grid": "",  # said once: what the adapter answered instead of its grid
        "secure": secure_cookie,
        "env": jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        ),
    }
    app[CONTROL] = control
    app[STATE] = state
    app.router.add_get("/", page)
    app.router.add_post("/open", open_door)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    security.install(app)
    # a flood of refused posts is told per spell of its address; a refused try is not audited (only tries that
    # reach a compartment are), so the kiosk's spells are journal lines only
    app[CSRF_REFUSALS] = RefusalSpells("forms with a missing or wrong CSRF token", source="kiosk")
    app[UNREADABLE_FORMS] = RefusalSpells("forms whose data is not text", source="kiosk")
    app[THROTTLED_TRIES] = RefusalSpells("tries", source="kiosk")
    refusals.watch(app, clock, CSRF_REFUSALS, UNREADABLE_FORMS, THROTTLED_TRIES)
    return app


def _render(request: web.Request, *, status: int = 200, outcome: str = "", label: str = "") -> web.Response:
    st = request.app[STATE]
    now = st["clock"]()
    token = csrf_token(st["key"], now)
    catalogs: Catalogs = st["catalogs"]

    def t(message: str, **kw: Any) -> str:
        return catalogs.translate(st["lang"], message, **kw)

    html = (
        st["env"]
        .get_template("kiosk.html")
        .render(t=t, lang=st["lang"], csrf_token=token, outcome=outcome, label=label)
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    response.set_cookie(
        COOKIE, token, max_age=int(TOKEN_TTL_S), httponly=True, secure=st["secure"], samesite="Strict", path="/"
    )
    return response


async def page(request: web.Request) -> web.StreamResponse:
    return _render(request)


class _Ambiguous(Exception):
    """Compartments of several locker adapters and no adapter named: a label would not say which site."""


class _NoGrid(Exception):
    """The kiosk's locker adapter did not give its grid: which compartments it has is not known."""


async def _entities(app: web.Application) -> dict[str, str]:
    """Compartment label of the kiosk's adapter (upper case: patrons type a-03 as often as A-03, and an adapter's
    labels never differ only in case) → entity id, from that adapter's `grid` (kept for a few seconds).

    The grid and not the latest values: those are the processed readings, which a valid `[[processing]]` rename
    or drop of `compartmentLabel` leaves without a label. `latest` is asked for the compartments only, to know
    where the grid command goes (adapters.locker.grids)."""
    st = app[STATE]
    now = time.monotonic()
    if now - st["entities_at"] < ENTITY_CACHE_S and st["entities"]:
        return dict(st["entities"])
    control = app[CONTROL]
    wanted: str | None = st["adapter"]
    targets = grid_targets(await control.call("latest", **LATEST_COMPARTMENTS))
    firsts = {owner: e for owner, e in targets.items() if wanted is None or owner == wanted}
    if len(firsts) > 1:
        names = ", ".join(sorted(firsts))
        if st["ambiguous"] != names:
            st["ambiguous"] = names
            log.error(
                "kiosk: compartments of several locker adapters, got %s and no adapter named; every try is refused "
                "until the kiosk is started with --adapter NAME",
                names,
            )
        raise _Ambiguous(names)
    if not firsts:  # no compartment seen yet (or none of the named adapter's): every label is unknown
        return {}
    ((owner, entity_id),) = firsts.items()
    result = await control.call("command", entity_id=entity_id, name="grid", value=None, actor="kiosk")
    found = _labels(result)
    if isinstance(found, str):
        if st["no_grid"] != found:
            st["no_grid"] = found
            log.warning(
                "kiosk: locker adapter %s gave no grid of its compartments, got %r; every try is refused until it "
                "does (`edgegw locker status` reads the same grid)",
                owner,
                found,
            )
        raise _NoGrid(found)
    if st["no_grid"]:
        st["no_grid"] = ""
        log.info("kiosk: locker adapter %s gives the grid of its compartments again", owner)
    st["entities"], st["entities_at"] = found, now
    return dict(found)


def _labels(result: Any) -> dict[str, str] | str:
    """Upper-cased label → entity id of a `grid` command's cells; or, when the answer is no grid, what it was (to
    be logged: a refusal's own words, never an answer that may carry assignments, with patrons' references)."""
    if not isinstance(result, Mapping):
        return f"an answer that is no command result ({type(result).__name__})"
    info = str(result.get("info", ""))
    if not result.get("ok"):
        return info[:200]
    try:
        cells = json.loads(info)
    except ValueError:
        cells = None
    if not isinstance(cells, list):
        return f"a grid that is no JSON list ({len(info)} characters)"
    found: dict[str, str] = {}
    for cell in cells:
        # a cell without a label cannot be typed at the kiosk
        if isinstance(cell, Mapping) and cell.get("label") and cell.get("entity_id"):
            found.setdefault(str(cell["label"]).upper(), str(cell["entity_id"]))
    return found


async def open_door(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    now = st["clock"]()
    form = await security.read_form(request)
    given = str(form.get("csrf_token", ""))
    cookie = request.cookies.get(COOKIE, "")
    same = hmac.compare_digest(given.encode("utf-8", "replace"), cookie.encode("utf-8", "replace"))
    address = request.remote or ""
    if not given or not same or not verify_token(st["key"], given, now):
        if await refusals.refuse(request, CSRF_REFUSALS, address) is not None:
            log.warning(
                "kiosk: POST /open from %s refused, missing or wrong CSRF token; more within a minute are counted",
                address,
            )
        return _render(request, status=403, outcome="expired")
    if not st["throttle"].allow(address, now):
        if await refusals.refuse(request, THROTTLED_TRIES, address) is not None:
            log.warning("kiosk: tries from %s throttled; more within a minute are counted, told at the end", address)
        return _render(request, status=429, outcome="throttled")
    await refusals.let_through(request, THROTTLED_TRIES, address)
    label = str(form.get("label", "")).strip().upper()[:_LABEL_MAX]
    code = str(form.get("code", "")).strip()[:_CODE_MAX]
    if not label or not code:
        return _render(request, status=400, outcome="missing")
    entity_id: str | None = None
    try:
        entity_id = (await _entities(request.app)).get(label)
        if entity_id is None:
            outcome = "unknown"
        else:
            result = await request.app[CONTROL].call(
                "command", entity_id=entity_id, name="pickup", value={"code": code}, actor="kiosk"
            )
            info = str(result.get("info", "")) if isinstance(result, Mapping) else ""
            word = info.split(":", 1)[0].strip()
            outcome = word if word in OUTCOMES else "failed"
    except (ControlUnavailable, ControlError) as exc:
        log.warning("kiosk: the gateway did not answer: %s", exc)
        outcome = "failed"
    except (_Ambiguous, _NoGrid):  # said in the log once; the patron is asked to try later, no compartment counts a try
        outcome = "failed"
    # a label that is none of the kiosk's compartments (or not known to be one) may be a code typed in the
    # wrong field: it is neither kept nor shown back
    known = label if entity_id is not None else ""
    audit: AuditLog | None = st["audit"]
    if audit is not None:
        await asyncio.to_thread(
            audit.append,
            actor="kiosk",
            action="locker.pickup",
            target=known or "-",
            detail={"outcome": outcome},
            address=address,
            at=now,
        )
    status = 200 if outcome == "opened" else 404 if outcome == "unknown" else 400 if outcome != "failed" else 503
    return _render(request, status=status, outcome=outcome, label=known)

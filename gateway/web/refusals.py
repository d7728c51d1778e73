"""Refusals told once per spell of their client address, with a count (throttled logins and kiosk tries, forms
without their CSRF token, forms that are not text).

A flood of refused requests from one address must not fill the journal and the audit log on the box's SD card,
nor bury the real entries. The first refusal of an address opens a spell and is told when it comes; later ones
within a window of that first are only counted, and their access log line goes to DEBUG (`COUNTED`). A spell
ends when the address is let through again (`passed`), when a refusal comes a window or more after its first
(that one opens the next spell), when the wall clock went back behind its last refusal (a stepped clock must
neither keep it open nor make its last come before its first), when the store is full (the oldest goes), on
the app's sweep (`watch`: a background task, once a window, so a spell is told within two windows of its first
even when nothing else comes, and a kill -9 loses at most that) or when the app stops. It is then told once,
with the time of its first and last refusal, the address, the count and the requests refused (the first few
kinds, the rest counted) (`tell_ended`), so a forensic reader loses nothing. A spell of one refusal ends
without a word: the line of its first said everything.

Each app keeps a store per kind of refusal under its own key (the admin UI: `install`; the kiosk its own).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.accounts.throttle import WINDOW_S
from gateway.cancellation import cancel_and_wait
from gateway.web.pages.audit import STORE_ERRORS
from gateway.web.security import loggable_path
from gateway.web.services import SERVICES

log = logging.getLogger(__name__)

# the login throttle's: a spell lasts at most one of its windows
SPELL_WINDOW_S = WINDOW_S
# open spells kept at most (a scan rotating IPv6 addresses): beyond it the oldest is told and forgotten
MAX_SPELLS = 10_000
# the kinds of request (method and path) a spell names; refusals of others are only counted
MAX_REQUESTS_NAMED = 5
# a request as named in the journal: a path is the client's to choose, the line's length is not
MAX_REQUEST_CHARS = 100


@dataclass(slots=True, kw_only=True)
class Spell:
    """Refusals from one address: the first told when it came, the others counted."""

    address: str
    first_at: float
    last_at: float
    refused: int = 1  # the first included
    requests: list[str] = field(default_factory=list)  # the first MAX_REQUESTS_NAMED kinds, in their order
    elsewhere: int = 0  # refusals of requests not among them

    def count(self, request: str) -> None:
        if not request or request in self.requests:
            return
        if len(self.requests) < MAX_REQUESTS_NAMED:
            self.requests.append(request)
        else:
            self.elsewhere += 1

    def named(self) -> str:
        """The requests refused, for the journal and the audit detail: "POST /lang, POST /users/add and 3 more"."""
        named = ", ".join(self.requests)
        return f"{named} and {self.elsewhere} more" if self.elsewhere else named


class RefusalSpells:
    """Refusals per client address, told once per spell (see the module's docstring); time is a parameter.

    `refused`, `passed` and `sweep` return the spells that ended, to be given to `tell_ended`."""

    def __init__(
        self,
        what: str,
        *,
        source: str = "web",
        audit: tuple[str, Mapping[str, Any]] | None = None,
        window_s: float = SPELL_WINDOW_S,
    ) -> None:
        self.what = what  # the journal's words for a refusal, e.g. "login attempts"
        self.source = source  # the journal line's first word: which app refused
        # the action and detail of the audit entry that tells an ended spell, its count added; None: journal only
        self.audit = (audit[0], dict(audit[1])) if audit is not None else None
        self.window_s = window_s
        self._open: dict[str, Spell] = {}  # in the order they opened: the first is the oldest
        self._swept_at = float("-inf")

    def __len__(self) -> int:
        return len(self._open)

    def refused(self, address: str, now: float, request: str = "") -> tuple[Spell | None, list[Spell]]:
        """Counts a refusal of `request` ("POST /path", journal-safe): (the spell it opens, to be told now, or None
        when an open one counts it; spells ended)."""
        ended = self._sweep(now)
        spell = self._open.get(address)
        if spell is not None and spell.last_at <= now < spell.first_at + self.window_s:
            spell.refused += 1
            spell.last_at = now
            spell.count(request)
            return None, _told(ended)
        if spell is not None:  # a window old, or the clock went back
            ended.append(self._open.pop(address))
        elif len(self._open) >= MAX_SPELLS:
            ended.append(self._open.pop(next(iter(self._open))))
        spell = self._open[address] = Spell(address=address, first_at=now, last_at=now)
        spell.count(request)
        return spell, _told(ended)

    def passed(self, address: str, now: float) -> list[Spell]:
        """The address was let through: its spell, if any, has ended."""
        ended = self._sweep(now)
        spell = self._open.pop(address, None)
        if spell is not None:
            ended.append(spell)
        return _told(ended)

    def sweep(self, now: float) -> list[Spell]:
        """Every spell a window old, or whose last refusal is after `now` (the clock went back), ended now."""
        self._swept_at = now
        old = [a for a, s in self._open.items() if now >= s.first_at + self.window_s or now < s.last_at]
        return _told([self._open.pop(a) for a in old])

    def drain(self) -> list[Spell]:
        """Every open spell, ended now (the app stops)."""
        ended, self._open = list(self._open.values()), {}
        return _told(ended)

    def _sweep(self, now: float) -> list[Spell]:
        # between the app's sweeps too, on any call; a clock gone back behind the last sweep sweeps at once
        if self._swept_at <= now < self._swept_at + self.window_s:
            return []
        return self.sweep(now)


def _told(ended: list[Spell]) -> list[Spell]:
    return [s for s in ended if s.refused > 1]  # one refusal: its own line said everything


def _utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_line(request: web.BaseRequest) -> str:
    """The method and path of a refused request as the journal may show them: percent-encoded as sent (no line
    break a path decodes to), a setup token replaced, bounded."""
    line = f"{request.method} {loggable_path(request.rel_url.raw_path)}"
    return line if len(line) <= MAX_REQUEST_CHARS else line[: MAX_REQUEST_CHARS - 1] + "…"


async def tell_ended(app: web.Application, spells: RefusalSpells, ended: list[Spell]) -> None:
    """One journal line (and audit entry, if the spells are audited) per ended spell, with its count."""
    for spell in ended:
        log.warning(
            "%s: %d %s from %s refused from %s to %s (%s; the first told then, the others counted)",
            spells.source,
            spell.refused,
            spells.what,
            spell.address,
            _utc(spell.first_at),
            _utc(spell.last_at),
            spell.named() or "requests not recorded",
        )
        if spells.audit is None:
            continue
        action, base = spells.audit
        svc = app[SERVICES]
        detail = {**base, "refused": spell.refused, "first": _utc(spell.first_at), "last": _utc(spell.last_at)}
        if spell.requests:
            detail["requests"] = spell.named()
        try:
            # the spell's address, not the request's: a sweep or a full store ends other addresses' spells
            await asyncio.to_thread(
                svc.audit.append, actor="-", action=action, detail=detail, address=spell.address, at=svc.clock()
            )
        except STORE_ERRORS as exc:
            log.error("web: %s was not audited: %s", action, exc)  # as pages.audit.audit_done


@dataclass(slots=True, kw_only=True)
class Watched:
    """An app's stores of spells, its clock, and how often its sweep runs (`watch`)."""

    keys: tuple[web.AppKey[RefusalSpells], ...]
    clock: Callable[[], float]
    every_s: float = SPELL_WINDOW_S


THROTTLED_LOGINS = web.AppKey("throttled_logins", RefusalSpells)
CSRF_REFUSALS = web.AppKey("csrf_refusals", RefusalSpells)
UNREADABLE_FORMS = web.AppKey("unreadable_forms", RefusalSpells)
WATCHED = web.AppKey("refusal_spells", Watched)
# set on a request whose refusal an open spell counted: its access log line goes to DEBUG (gateway.web.cli)
COUNTED = web.RequestKey("refusal_counted", bool)


async def refuse(request: web.Request, key: web.AppKey[RefusalSpells], address: str) -> RefusalSpells | None:
    """Counts the refusal of `request` from `address` in the app's store `key`: the store when the refusal opens
    a spell (the caller tells it now, in its own words), None when an open spell counted it."""
    app = request.app
    spells = app[key]
    opened, ended = spells.refused(address, app[WATCHED].clock(), request_line(request))
    await tell_ended(app, spells, ended)
    if opened is None:
        request[COUNTED] = True
        return None
    return spells


async def let_through(request: web.Request, key: web.AppKey[RefusalSpells], address: str) -> None:
    """`address` was let through: its spell in the store `key`, if any, is told."""
    spells = request.app[key]
    await tell_ended(request.app, spells, spells.passed(address, request.app[WATCHED].clock()))


async def _sweep_every_window(app: web.Application) -> None:
    watched = app[WATCHED]
    while True:
        await asyncio.sleep(watched.every_s)
        now = watched.clock()
        for key in watched.keys:
            try:
                await tell_ended(app, app[key], app[key].sweep(now))
            except Exception:  # a sweep that stopped would keep every later spell untold until the app stops
                log.exception("%s: telling the ended spells of %s failed", app[key].source, app[key].what)


async def _sweeping(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_sweep_every_window(app), name="refusal spells")
    yield
    await cancel_and_wait(task)
    for key in app[WATCHED].keys:
        await tell_ended(app, app[key], app[key].drain())


def watch(app: web.Application, clock: Callable[[], float], *keys: web.AppKey[RefusalSpells]) -> None:
    """The app's stores `keys` are swept once a window while it runs (`Watched.every_s`), and told when it stops."""
    app[WATCHED] = Watched(keys=keys, clock=clock)
    app.cleanup_ctx.append(_sweeping)


def install(app: web.Application) -> None:
    """The admin UI's stores (its services already in `app`)."""
    # a throttled login is audited as a failed one, as the first refusal of its spell is
    app[THROTTLED_LOGINS] = RefusalSpells("login attempts", audit=("login.failed", {"reason": "throttled"}))
    app[CSRF_REFUSALS] = RefusalSpells("forms with a missing or wrong CSRF token")
    app[UNREADABLE_FORMS] = RefusalSpells("forms whose data is not text")
    watch(app, app[SERVICES].clock, THROTTLED_LOGINS, CSRF_REFUSALS, UNREADABLE_FORMS)

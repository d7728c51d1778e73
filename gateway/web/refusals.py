"""Refusals told once per spell of their client address, with a count (throttled logins, forms without their
CSRF token).

A flood of refused requests from one address must not fill the journal and the audit log on the box's SD card,
nor bury the real entries. The first refusal of an address opens a spell and is told when it comes; later ones
within a window of that first are only counted. A spell ends when the address is let through again (`passed`),
when a refusal comes a window or more after its first (that one opens the next spell), when a sweep finds it a
window old (at most once a window, on any call), when the store is full (the oldest goes) or when the UI stops;
it is then told once, with the time of its first and last refusal, the address and the count (`tell_ended`), so
a forensic reader loses nothing. A spell of one refusal ends without a word: the line of its first said
everything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.accounts.throttle import WINDOW_S
from gateway.web.pages.audit import STORE_ERRORS
from gateway.web.services import SERVICES

log = logging.getLogger(__name__)

# the login throttle's: a spell lasts at most one of its windows
SPELL_WINDOW_S = WINDOW_S
# open spells kept at most (a scan rotating IPv6 addresses): beyond it the oldest is told and forgotten
MAX_SPELLS = 10_000


@dataclass(slots=True, kw_only=True)
class Spell:
    """Refusals from one address: the first told when it came, the others counted."""

    address: str
    first_at: float
    last_at: float
    refused: int = 1  # the first included


class RefusalSpells:
    """Refusals per client address, told once per spell (see the module's docstring); time is a parameter.

    `refused` and `passed` return the spells that ended, to be given to `tell_ended`."""

    def __init__(
        self,
        what: str,
        *,
        audit: tuple[str, Mapping[str, Any]] | None = None,
        window_s: float = SPELL_WINDOW_S,
    ) -> None:
        self.what = what  # the journal's words for a refusal, e.g. "login attempts"
        # the action and detail of the audit entry that tells an ended spell, its count added; None: journal only
        self.audit = (audit[0], dict(audit[1])) if audit is not None else None
        self.window_s = window_s
        self._open: dict[str, Spell] = {}  # in the order they opened: the first is the oldest
        self._swept_at = float("-inf")

    def __len__(self) -> int:
        return len(self._open)

    def refused(self, address: str, now: float) -> tuple[Spell | None, list[Spell]]:
        """Counts a refusal: (the spell it opens, to be told now, or None when an open one counts it; spells ended)."""
        ended = self._sweep(now)
        spell = self._open.get(address)
        if spell is not None and now < spell.first_at + self.window_s:
            spell.refused += 1
            spell.last_at = now
            return None, _told(ended)
        if spell is not None:
            ended.append(self._open.pop(address))
        elif len(self._open) >= MAX_SPELLS:
            ended.append(self._open.pop(next(iter(self._open))))
        spell = self._open[address] = Spell(address=address, first_at=now, last_at=now)
        return spell, _told(ended)

    def passed(self, address: str, now: float) -> list[Spell]:
        """The address was let through: its spell, if any, has ended."""
        ended = self._sweep(now)
        spell = self._open.pop(address, None)
        if spell is not None:
            ended.append(spell)
        return _told(ended)

    def drain(self) -> list[Spell]:
        """Every open spell, ended now (the UI stops)."""
        ended, self._open = list(self._open.values()), {}
        return _told(ended)

    def _sweep(self, now: float) -> list[Spell]:
        # an address that stopped is told within two windows as long as anyone posts, not only when it comes back
        if now < self._swept_at + self.window_s:
            return []
        self._swept_at = now
        old = [a for a, s in self._open.items() if now >= s.first_at + self.window_s]
        return [self._open.pop(a) for a in old]


def _told(ended: list[Spell]) -> list[Spell]:
    return [s for s in ended if s.refused > 1]  # one refusal: its own line said everything


def _utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def tell_ended(app: web.Application, spells: RefusalSpells, ended: list[Spell]) -> None:
    """One journal line (and audit entry, if the spells are audited) per ended spell, with its count."""
    for spell in ended:
        log.warning(
            "web: %d %s from %s refused from %s to %s (the first told then, the others counted)",
            spell.refused,
            spells.what,
            spell.address,
            _utc(spell.first_at),
            _utc(spell.last_at),
        )
        if spells.audit is None:
            continue
        action, base = spells.audit
        svc = app[SERVICES]
        detail = {**base, "refused": spell.refused, "first": _utc(spell.first_at)}
        detail["last"] = _utc(spell.last_at)
        try:
            # the spell's address, not the request's: a sweep or a full store ends other addresses' spells
            await asyncio.to_thread(
                svc.audit.append, actor="-", action=action, detail=detail, address=spell.address, at=svc.clock()
            )
        except STORE_ERRORS as exc:
            log.error("web: %s was not audited: %s", action, exc)  # as pages.audit.audit_done


THROTTLED_LOGINS = web.AppKey("throttled_logins", RefusalSpells)
CSRF_REFUSALS = web.AppKey("csrf_refusals", RefusalSpells)


async def _tell_open_spells(app: web.Application) -> None:
    for key in (THROTTLED_LOGINS, CSRF_REFUSALS):
        await tell_ended(app, app[key], app[key].drain())


def install(app: web.Application) -> None:
    # a throttled login is audited as a failed one, as the first refusal of its spell is
    app[THROTTLED_LOGINS] = RefusalSpells("login attempts", audit=("login.failed", {"reason": "throttled"}))
    app[CSRF_REFUSALS] = RefusalSpells("forms with a missing or wrong CSRF token")
    app.on_cleanup.append(_tell_open_spells)

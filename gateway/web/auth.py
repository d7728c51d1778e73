"""Sessions, roles and the audit helper of the web UI.

Theory of operation: a session is a random 256-bit token in the `edgegw_session` cookie (Secure, HttpOnly,
SameSite=Strict) naming an entry of an in-memory table; only the token's SHA-256 is kept, so a memory dump
does not hand out live cookies. A browser gets an anonymous session at its first page (it carries the CSRF
token of the login form and the language picked there); logging in always makes a new token, so a cookie
planted before login is worthless after it (session fixation). A logged-in session ends at logout, after
`idle_timeout_minutes` without a request from the user, or `session_lifetime_hours` after login whatever the
activity; an anonymous one only at that lifetime (a login page left open still works). Requests under /api/ are
the pages' own polls (static/live.js, every few seconds while a tab is open) and are no sign of anyone at the
keyboard: they do not keep a session alive, and one that comes after the idle timeout gets 401 JSON, on which
the page goes to the login page, which says the session ran out. A second cookie, `edgegw_browser` (random,
HttpOnly, SameSite=Strict, for as long as the browser runs), names the browser across logins and restarts of
this UI: the sessions' CSRF tokens are signed for it and for the session's user (gateway.web.formtoken), so that
a form refused after a restart can be told from a forged one, and one user's from the next's on a shared PC
(gateway.web.csrf). The user is read from the account
store on every request: a removed or disabled user, a changed role or an admin's password reset takes effect
at the next click, not at the next login. A password set by another process (`edgegw user passwd` on the box)
cannot call `drop_user` here, so a logged-in session also keeps the user's `password_changed_at` of its login
(taken as the login request ends) and ends at the first request that finds a different one in the store,
answered like an expired session: the login page, or 401 JSON for /api. A user removed and added again gets
a new stamp too, so the old browser is not logged in as the new account. A session's CSRF token is signed
for its account too (the tag of the account's creation stamp, `formtoken.account_tag`), minted again as its
login request ends (`_stamp_login`, where the account's row is at hand): a user removed and added again under
the same name is never offered the forms, kept or left open, of the account before.

A refused form carried through the login page is kept in this process (`SessionTable.kept`,
gateway.web.keptform), not in the page. The login request names it; as the login ends, its session claims it
for this browser, and keeps it for /form/resend only if its token was given to the account just logged in.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from gateway.accounts.store import Role, User
from gateway.accounts.throttle import AddressThrottle
from gateway.web import formtoken
from gateway.web.keptform import KeptForm, KeptForms, Unclaimed
from gateway.web.services import SERVICES, WebServices

log = logging.getLogger(__name__)
T = TypeVar("T")
COOKIE = "edgegw_session"
BROWSER_COOKIE = "edgegw_browser"
_BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
STATIC_PREFIX = "/static/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Anonymous sessions cost memory before anyone proved who they are: bound them, dropping the oldest.
MAX_ANONYMOUS = 10_000


@dataclass
class Session:
    """Server-side state of one browser (mutable: it lives only in the table below)."""

    key: str  # SHA-256 of the cookie's token
    csrf_token: str
    created_at: float
    last_seen: float
    user: str | None = None
    logged_in_at: float | None = None
    language: str | None = None
    flashes: list[tuple[str, str]] = field(default_factory=list)
    last_login: dict[str, Any] | None = None  # shown once after login (#last-login)
    timed_out: bool = False  # the browser's previous session ran out: the next page says so, once
    fresh: bool = False  # made for this very request (no cookie, or an expired one)
    form_expired: bool = False  # a form came without a live session: the login page says to try again
    # the user's password_changed_at at login; None until the login request ends, and a session whose
    # login never recorded it is not trusted
    password_changed_at: float | None = None
    resend: KeptForm | None = None  # a refused form carried through the login, offered once at /form/resend


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class SessionTable:
    """The in-memory sessions of this process (a restart logs everyone out, which is what we want)."""

    def __init__(self, *, idle_s: float, lifetime_s: float) -> None:
        self.idle_s = idle_s
        self.lifetime_s = lifetime_s
        self._sessions: dict[str, Session] = {}
        self._anonymous: OrderedDict[str, None] = OrderedDict()
        self.kept = KeptForms()  # the refused forms the login pages of this process carry (by reference)

    def __len__(self) -> int:
        return len(self._sessions)

    def new(self, now: float, *, language: str | None = None, csrf_token: str | None = None) -> tuple[str, Session]:
        """`csrf_token`: the web's signed one (auth.csrf_token_for, for no user); a random one without."""
        token = secrets.token_urlsafe(32)  # 256 bits
        csrf = csrf_token if csrf_token is not None else secrets.token_urlsafe(32)
        session = Session(key=_digest(token), csrf_token=csrf, created_at=now, last_seen=now)
        session.language = language
        self._sessions[session.key] = session
        self._anonymous[session.key] = None
        while len(self._anonymous) > MAX_ANONYMOUS:
            oldest, _ = self._anonymous.popitem(last=False)
            self._sessions.pop(oldest, None)
        return token, session

    def login(
        self, old: Session | None, user: str, now: float, *, csrf_token: str | None = None
    ) -> tuple[str, Session]:
        """A fresh token for a user who just proved their password; the old session is gone. `csrf_token`: one
        signed for `user` (auth.csrf_token_for), so that a form of theirs is offered back to them alone."""
        language = old.language if old is not None else None
        if old is not None:
            self.drop(old)
        token, session = self.new(now, language=language, csrf_token=csrf_token)
        self._anonymous.pop(session.key, None)
        session.user = user
        session.logged_in_at = now
        return token, session

    def get(self, token: str, now: float, *, activity: bool = True) -> tuple[Session | None, bool]:
        """The live session of a cookie, and whether a logged-in one just ran out (to tell the user why).

        `activity` is false for a request the page made by itself: it does not put off the idle timeout."""
        session = self._sessions.get(_digest(token))
        if session is None:
            return None, False
        if self.expired(session, now):
            self.drop(session)
            return None, session.user is not None
        if activity:
            session.last_seen = now
        return session, False

    def expired(self, session: Session, now: float) -> bool:
        if session.logged_in_at is None:
            # Anonymous (the login page left open over lunch): it guards nothing but a CSRF token and a
            # language, so only the absolute lifetime applies; the idle timeout is for logged-in sessions.
            return now - session.created_at > self.lifetime_s
        return now - session.last_seen > self.idle_s or now - session.logged_in_at > self.lifetime_s

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.key, None)
        self._anonymous.pop(session.key, None)

    def drop_user(self, name: str) -> int:
        """Log a user out everywhere (removed, or their password reset by an admin)."""
        keys = [k for k, s in self._sessions.items() if s.user == name]
        for key in keys:
            self._sessions.pop(key, None)
        return len(keys)


SESSIONS = web.AppKey("sessions", SessionTable)
SESSION = web.RequestKey("session", Session)
BROWSER = web.RequestKey("browser", str)
USER = web.RequestKey[User | None]("user")
THROTTLE = web.AppKey("login_throttle", AddressThrottle)
# Argon2id takes 64 MiB and a tenth of a second per check. The store bounds the checks itself; bounding them
# here too keeps a burst of logins queued on the event loop rather than parked in the default thread pool,
# which every page's sqlite reads share.
HASHING = web.AppKey("hashing", asyncio.Semaphore)
MAX_CONCURRENT_HASHES = 2


def services(request: web.Request) -> WebServices:
    return request.app[SERVICES]


def set_cookie(response: web.StreamResponse, token: str) -> None:
    response.set_cookie(COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/")


def browser_id(request: web.Request) -> str:
    """The id of the request's browser (its `edgegw_browser` cookie, or the one this answer gives it)."""
    return request[BROWSER]


def csrf_token_for(request: web.Request, now: float, *, user: str | None, account: str = "") -> str:
    """A new CSRF token signed for the request's browser and `user`, the user of the session it is for (None
    before a login), and their `account` (`account_of`): a form refused later is offered again only to them."""
    return formtoken.mint(services(request).form_key, browser_id(request), now, user=user or "", account=account)


def account_of(request: web.Request, user: User | None) -> str:
    """The tag of `user`'s account ("" for none): new when a removed name is added again, kept by a new password."""
    if user is None:
        return ""
    return formtoken.account_tag(services(request).form_key, user.name, user.created_at)


def session_of(request: web.Request) -> Session:
    session: Session = request[SESSION]
    return session


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Finds (or starts) the browser's session and the logged-in user before any handler runs."""
    if request.path.startswith(STATIC_PREFIX):  # public files: no session to look up, no cookie to hand out
        return await handler(request)
    table = request.app[SESSIONS]
    svc = services(request)
    now = svc.clock()
    browser = request.cookies.get(BROWSER_COOKIE, "")
    new_browser = not _BROWSER_ID.fullmatch(browser)
    if new_browser:
        browser = secrets.token_urlsafe(32)
    request[BROWSER] = browser
    token = request.cookies.get(COOKIE)
    session, timed_out = table.get(token, now, activity=not _is_api(request)) if token else (None, False)
    new_token: str | None = None
    if session is None:
        new_token, session = table.new(now, csrf_token=csrf_token_for(request, now, user=None))
        session.timed_out = timed_out
    user: User | None = None
    if session.user is not None:
        user = await asyncio.to_thread(svc.accounts.get_user, session.user)
        if user is None or user.disabled or user.password_changed_at != session.password_changed_at:
            log.info("web: a logged-in session ended: its user was removed or disabled, or got a new password")
            user = None
            table.drop(session)
            new_token, session = table.new(
                now, language=session.language, csrf_token=csrf_token_for(request, now, user=None)
            )
    session.fresh = new_token is not None
    request[SESSION] = session
    request[USER] = user
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        await _stamp_login(request, user)
        _set_cookies(request, exc, session, new_token, browser if new_browser else None)
        raise
    await _stamp_login(request, user)
    _set_cookies(request, response, session, new_token, browser if new_browser else None)
    return response


def _set_cookies(
    request: web.Request, response: web.StreamResponse, session: Session, token: str | None, browser: str | None
) -> None:
    if token is not None and request.get(SESSION) is session:
        set_cookie(response, token)
    if browser is not None:
        response.set_cookie(BROWSER_COOKIE, browser, secure=True, httponly=True, samesite="Strict", path="/")


async def _stamp_login(request: web.Request, read_before: User | None) -> None:
    """A session this request logged in keeps the password_changed_at of the password its user has now, a CSRF
    token for its account, and the form its login carried only if it is that account's."""
    session = request.get(SESSION)
    if session is None or session.user is None or session.password_changed_at is not None:
        return
    user: User | None = request.get(USER)
    if user is None or user is read_before or user.name != session.user:
        # Not the login page's account row (read as the proved password was recorded, so a change racing
        # the login cannot slip in): the password page set a new password after this request read the
        # user, so the store is asked again.
        user = await asyncio.to_thread(services(request).accounts.get_user, session.user)
    if user is None:
        return
    session.password_changed_at = user.password_changed_at
    # login_session knows only the name: the forms this session gives from now on are the account's
    now = services(request).clock()
    session.csrf_token = csrf_token_for(request, now, user=user.name, account=account_of(request, user))
    if session.resend is not None:
        session.resend = _claim(request, session, session.resend, user)


def _claim(request: web.Request, session: Session, carried: KeptForm, user: User) -> KeptForm | None:
    """The form a login carried, with its values, if this browser's login page carried it and its token was
    given to this very account (the login page checked the name only): else None, and the next page says why."""
    # render imports this module: its flash is imported when a login has something to say
    from gateway.web.render import flash, translator

    svc = services(request)
    now, browser = svc.clock(), browser_id(request)
    t = translator(request)
    store = request.app[SESSIONS].kept
    kept = store.claim(carried, browser=browser, now=now)
    if isinstance(kept, Unclaimed):
        log.info("web: a login carried a refused form no longer kept (%s); dropped", kept.value)
        # what became of it, as far as this process knows: never a restart guessed for a form pushed out
        if kept is Unclaimed.EXPIRED:
            said = t("form_expired.kept_expired", minutes=round(store.keep_s / 60))
        elif kept is Unclaimed.PUSHED_OUT:
            said = t("form_expired.kept_pushed_out", count=store.per_browser)
        elif kept is Unclaimed.CROWDED:
            said = t("form_expired.kept_crowded")
        else:
            said = t("form_expired.kept_gone")
        flash(request, said, "warning")
        return None
    if not formtoken.verify(svc.form_key, browser, kept.token, now, user=user.name, account=account_of(request, user)):
        log.info("web: a login carried a refused form given to an account of that name since removed; dropped")
        flash(request, t("form_expired.not_offered"), "warning")
        return None
    return kept


def login_session(request: web.Request, response: web.StreamResponse, user: str) -> Session:
    """Replaces the request's session by a new one for `user`, setting its cookie on `response`."""
    table = request.app[SESSIONS]
    now = services(request).clock()
    token, session = table.login(request.get(SESSION), user, now, csrf_token=csrf_token_for(request, now, user=user))
    request[SESSION] = session
    set_cookie(response, token)
    return session


def logout_session(request: web.Request, response: web.StreamResponse) -> None:
    table = request.app[SESSIONS]
    old = request.get(SESSION)
    language = old.language if old is not None else None
    if old is not None:
        table.drop(old)
    now = services(request).clock()
    token, session = table.new(now, language=language, csrf_token=csrf_token_for(request, now, user=None))
    request[SESSION] = session
    request[USER] = None
    set_cookie(response, token)


def current_user(request: web.Request) -> User:
    """The logged-in user of a handler behind `requires` (never None there)."""
    user: User | None = request.get(USER)
    if user is None:
        raise web.HTTPUnauthorized()
    return user


def maybe_user(request: web.Request) -> User | None:
    user: User | None = request.get(USER)
    return user


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def requires(role: Role | None, *, password_change_page: bool = False) -> Callable[[Handler], Handler]:
    """Handler decorator: logged in with at least `role`, and no password change pending.

    `role` None: any account, whatever its role: a page every user has for themselves (their own password, the
    form they left open), which the librarian and the Wi-Fi auditor, beside the viewer's ladder, need too.
    Not logged in: to /login (an /api call gets 401 JSON). Role too low: the 403 page (403 JSON for /api).
    A user whose password must change (set by an admin, or expired) reaches only /password until they do.
    """

    def decorate(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            user = maybe_user(request)
            if user is None:
                if _is_api(request):
                    raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")
                target = request.rel_url.path_qs if request.method == "GET" else "/"
                raise web.HTTPFound(f"/login?next={quote(target, safe='/')}")
            if role is not None and not user.role.allows(role):
                if _is_api(request):
                    raise web.HTTPForbidden(text='{"error": "forbidden"}', content_type="application/json")
                raise web.HTTPForbidden()
            if not password_change_page and must_change_password(request, user):
                if _is_api(request):
                    raise web.HTTPForbidden(
                        text='{"error": "password change required"}', content_type="application/json"
                    )
                raise web.HTTPFound("/password")
            return await handler(request)

        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        return checked

    return decorate


def must_change_password(request: web.Request, user: User) -> bool:
    svc = services(request)
    return user.must_change or svc.accounts.password_expired(user, now=svc.clock())


def safe_next(target: str | None) -> str:
    """Only a local path after login: `next=https://evil.example` or `//evil.example` would be an open redirect.

    Printable ASCII only: aiohttp drops tabs and line breaks when it writes the Location header, so
    `/<TAB>/evil.example` would leave as `//evil.example`, and browsers treat `\\` like `/`.
    """
    if (
        not target
        or target[0] != "/"
        or target[1:2] == "/"
        or any(c <= " " or c in "\\\x7f" or c > "~" for c in target)
    ):
        return "/"
    return target


async def hashing_call(request: web.Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Runs an account call that hashes a password in a thread, within the app's bound on concurrent hashes."""
    async with request.app[HASHING]:
        return await asyncio.to_thread(fn, *args, **kwargs)


def client_address(request: web.Request) -> str:
    return request.remote or ""


async def audit(
    request: web.Request,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
) -> int:
    """Appends one audit entry: who (the logged-in user unless `actor` says), from where, when, what."""
    svc = services(request)
    if actor is None:
        user = maybe_user(request)
        actor = user.name if user is not None else "-"
    return await asyncio.to_thread(
        svc.audit.append,
        actor=actor,
        action=action,
        target=target,
        detail=dict(detail or {}),
        address=client_address(request),
        at=svc.clock(),
    )

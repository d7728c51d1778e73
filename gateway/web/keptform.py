"""What a refused form carried, kept so that the user can send it again instead of typing it again.

Only for a form that was given to this browser and to the account that would send it again (its token verifies
for both: gateway.web.formtoken) and only where that is safe: never a password (the fields in SECRET_FIELDS, and
so never the login, setup or password forms), never a file (a multipart form), never the logout. A user still
logged in gets it back at once, as hidden fields of a form they must press (`KeptForm.fields`), with what it
sends listed above the button (`shown_fields`: personal data masked as gateway.redact masks it everywhere).

A browser whose login ended gets the login page, and that page carries no value: a library desk's PC is shared,
and the page's source or the browser's form restore would hand a patron's e-mail address to whoever sits down
next. The values stay in this process (`KeptForms`: KEEP_S, a few forms per browser, a bound on the whole); the
login form carries only `resend_to` (the path, shown), `resend_token` (the refused form's own token, which says
whose it was) and `resend_ref` (128 random bits naming the kept values). After the password the session's
login claims them (gateway.web.auth), for that browser only, and they are offered only if the token verifies for
the account whose password was checked, never for a name the browser sends. Memory rather than an encrypted
blob in the page: what was typed never leaves the box, and once claimed or KEEP_S old it is gone, not merely
unreadable. A claim that finds nothing says why (`Unclaimed`), so that the login tells the user what happened
rather than a guess: too old, pushed out by the browser's newer forms or by the bound on the whole, or not kept
here at all. A restart of the web in the few minutes between the refusal and the login loses them (the login
page's own token goes with its session, so that login is refused as a form left open too long).
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gateway import redact

# the password fields of the account forms (login, setup, /password, /users' add and reset)
SECRET_FIELDS = frozenset({"password", "current", "new", "confirm"})
NEVER_KEPT = frozenset({"/logout"})
TOKEN_FIELD = "csrf_token"
RESEND_TO = "resend_to"
RESEND_TOKEN = "resend_token"
RESEND_REF = "resend_ref"
# the largest form kept for a login (characters of its names and values): a config text of the editor fits
MAX_THROUGH_LOGIN = 3 * 1024 * 1024
# Long enough to fetch a colleague who knows the password, short enough that a patron's e-mail address typed
# into a form does not outlive the visit at the desk.
KEEP_S = 10 * 60.0
MAX_PER_BROWSER = 3  # a few tabs' worth; the oldest goes first
MAX_KEPT_CHARS = 16 * 1024 * 1024  # the whole store: every kept form of every browser
# why a form went, remembered for this many forms gone (a ref and a few words each): a login long after may
# still be told the right reason; beyond that it is told the form is not kept, as after a restart
MAX_REMEMBERED = 1024
# fields whose values are about a person (a patron's e-mail address, a Wi-Fi inquiry's terms): never shown in
# clear, only as gateway.redact masks a value of that shape (`***@example.jp`, `3C:22:FB:***`), else `***`
PERSONAL_FIELDS = frozenset({"email", "mac", "user", "ip"})
SHOWN_CHARS = 200  # a config text is listed by its start: the button sends it whole
# the page each part of the UI with forms has, whose title names a kept form (its catalog key)
FORM_TITLES = {
    "/buffer": "buffer.title",
    "/config": "config.title",
    "/devices": "devices.title",
    "/lockers": "lockers.title",
    "/users": "users.title",
    "/wifi": "wifi.title",
}


@dataclass(frozen=True, kw_only=True)
class KeptForm:
    action: str  # the path the form was sent to
    fields: tuple[tuple[str, str], ...]  # in their order, a name as often as the form had it
    # the token the form was refused with: whose form it was, checked again after a login that carried it
    token: str = field(default="", repr=False)
    # names the values kept in KeptForms while the login page carries the form; "" for a form not kept there
    ref: str = field(default="", repr=False)

    @property
    def section(self) -> str:
        """The page of the form's part of the UI (`/users` for `/users/role`), to go back to."""
        return "/" + self.action.lstrip("/").split("/", 1)[0]

    @property
    def title_key(self) -> str | None:
        """The catalog key of the title of the page the form belongs to; None for a form of every page (/lang)."""
        return FORM_TITLES.get(self.section)

    def shown_fields(self) -> list[tuple[str, str]]:
        """(name, value as shown) of what the form sends, personal values masked and long ones cut."""
        return [(name, _shown(name, value)) for name, value in self.fields]

    def login_fields(self) -> list[tuple[str, str]]:
        """The hidden fields that carry this form through the login form: where it goes and whose it is, never
        what it holds (that stays in KeptForms under `ref`)."""
        return [(RESEND_TO, self.action), (RESEND_TOKEN, self.token), (RESEND_REF, self.ref)]

    def size(self) -> int:
        return sum(len(name) + len(value) for name, value in self.fields)

    def fits_login(self) -> bool:
        return self.size() <= MAX_THROUGH_LOGIN


def _shown(name: str, value: str) -> str:
    masked = redact.text(value)
    if name in PERSONAL_FIELDS and masked == value:
        masked = redact.MASK  # no shape the redactor knows: nothing of it is shown
    return masked if len(masked) <= SHOWN_CHARS else masked[:SHOWN_CHARS] + "…"


def _local_path(path: str) -> bool:
    """A path of this site a form may be sent to again: no scheme, host, query or odd characters."""
    return (
        path.startswith("/")
        and not path.startswith("//")
        and all("!" <= c <= "~" and c not in "\\?#" for c in path)
        and path not in NEVER_KEPT
    )


def keep(action: str, content_type: str, fields: Iterable[tuple[str, object]], *, token: str) -> KeptForm | None:
    """The form sent to `action` with `token` as a KeptForm, or None where keeping it would not be safe."""
    if content_type != "application/x-www-form-urlencoded" or not _local_path(action):
        return None
    kept: list[tuple[str, str]] = []
    for name, value in fields:
        if not isinstance(value, str) or name in SECRET_FIELDS:
            return None
        if name != TOKEN_FIELD:
            kept.append((name, value))
    return KeptForm(action=action, fields=tuple(kept), token=token)


def from_login(fields: Iterable[tuple[str, object]]) -> KeptForm | None:
    """What a login form carried (`resend_to`, `resend_token`, `resend_ref`), or None: a claim on a form kept in
    KeptForms, without its values. Without a token nothing says whose form it was: None."""
    carried = {RESEND_TO: "", RESEND_TOKEN: "", RESEND_REF: ""}
    for name, value in fields:
        if name in carried:
            if not isinstance(value, str):
                return None
            carried[name] = value
    action, token, ref = carried[RESEND_TO], carried[RESEND_TOKEN], carried[RESEND_REF]
    if not token or not ref or not _local_path(action):
        return None
    return KeptForm(action=action, fields=(), token=token, ref=ref)


class Unclaimed(enum.Enum):
    """Why a login's claim (KeptForms.claim) found no form to offer."""

    EXPIRED = "expired"  # kept KEEP_S and forgotten
    PUSHED_OUT = "pushed_out"  # newer forms of the same browser took its place (MAX_PER_BROWSER)
    CROWDED = "crowded"  # the whole store was full (MAX_KEPT_CHARS): the oldest of any browser go first
    GONE = "gone"  # never kept here for this browser with this path and token: a restart, another browser's page


@dataclass(frozen=True, kw_only=True)
class _Gone:
    browser: str
    why: Unclaimed


@dataclass(frozen=True, kw_only=True)
class _Kept:
    browser: str
    form: KeptForm
    kept_at: float


class KeptForms:
    """The forms carried through the login page of this process, by their `ref`; bounded in age, per browser and
    in total (the oldest go first). Not thread-safe: the web's event loop alone uses it."""

    def __init__(
        self,
        *,
        keep_s: float = KEEP_S,
        per_browser: int = MAX_PER_BROWSER,
        max_chars: int = MAX_KEPT_CHARS,
        remembered: int = MAX_REMEMBERED,
    ) -> None:
        self.keep_s = keep_s
        self.per_browser = per_browser
        self.max_chars = max_chars
        self.remembered = remembered
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._chars = 0
        self._gone: OrderedDict[str, _Gone] = OrderedDict()  # by ref: the forms dropped unclaimed, and why

    def __len__(self) -> int:
        return len(self._kept)

    def put(self, form: KeptForm, *, browser: str, now: float) -> KeptForm:
        """Keeps `form` for `browser`: the same form with the `ref` the login page carries in its place."""
        self._forget_old(now)
        ref = secrets.token_urlsafe(16)
        kept = replace(form, ref=ref)
        mine = [r for r, k in self._kept.items() if k.browser == browser]
        for old in mine[: max(0, len(mine) - self.per_browser + 1)]:
            self._drop(old, Unclaimed.PUSHED_OUT)
        while self._kept and self._chars + kept.size() > self.max_chars:
            self._drop(next(iter(self._kept)), Unclaimed.CROWDED)
        self._kept[ref] = _Kept(browser=browser, form=kept, kept_at=now)
        self._chars += kept.size()
        return kept

    def claim(self, carried: KeptForm, *, browser: str, now: float) -> KeptForm | Unclaimed:
        """The kept form a login carried (from_login), with its values, once; else why not: EXPIRED, PUSHED_OUT or
        CROWDED for a form of this browser dropped so, GONE when it is not this browser's, its token or path is
        not the one it was kept with, or it is not known here (a restart, already claimed, long forgotten)."""
        self._forget_old(now)
        kept = self._kept.get(carried.ref)
        if kept is None:
            gone = self._gone.get(carried.ref)
            # another browser is told nothing of this one's forms
            return gone.why if gone is not None and gone.browser == browser else Unclaimed.GONE
        if (
            kept.browser != browser
            or kept.form.action != carried.action
            or not hmac.compare_digest(kept.form.token.encode("utf-8"), carried.token.encode("utf-8"))
        ):
            return Unclaimed.GONE
        self._drop(carried.ref)
        return kept.form

    def _forget_old(self, now: float) -> None:
        # either way: a clock stepped back must not keep a form for longer than KEEP_S either
        for ref in [r for r, k in self._kept.items() if abs(now - k.kept_at) > self.keep_s]:
            self._drop(ref, Unclaimed.EXPIRED)

    def _drop(self, ref: str, why: Unclaimed | None = None) -> None:
        """Forgets the form `ref`; `why` it went unclaimed, remembered for its login (None: it was claimed)."""
        kept = self._kept.pop(ref)
        self._chars -= kept.form.size()
        if why is not None:
            self._gone[ref] = _Gone(browser=kept.browser, why=why)
            while len(self._gone) > self.remembered:
                self._gone.popitem(last=False)

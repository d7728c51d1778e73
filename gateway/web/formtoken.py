"""The forms' CSRF tokens: signed for the browser and the account they were given to, so that any later web
process can tell whose form a refused one was.

A token is `f3.<issued>.<nonce>.<account>.<browser mac>.<user mac>`: the Unix second it was made, 128 random
bits, the account's tag (`account_tag`; empty before a login) and two HMAC-SHA256 under the web's form key
(gateway.web.formkey, kept in its state directory). The first covers the time, the nonce and the browser's own
random id (the `edgegw_browser` cookie, HttpOnly, SameSite=Strict); the second covers the same, the user whose
session the token belongs to ("" before a login) and the account's tag. The user's name is not in the token:
whoever checks names the user they expect (the one logged in now, or the one whose password the login page has
just checked), so a browser cannot choose it. The tag is opaque (an HMAC of the name and the account's creation
stamp) and tells a user removed and added again under the same name, maybe another person, from the one before:
`verify(..., account=...)` checks it too. A password change keeps the tag.

A form is processed only with its session's own token, as before; the signatures only answer, for a form that is
refused, "was this form given to this very browser by this UI, even by a process that has since restarted?"
(`given_to_browser`, enough to carry it through the login page) and "to this very user?" (`verify`, the only
answer on which what it carried is offered back). Several people share one browser on a library's PC: a form one
of them left open is never offered to the next. Another site cannot make such a token: it knows neither the key
nor the browser's id.

Pure: no I/O, the time is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

VERSION = "f3"  # f1 (browser only) and f2 (no account tag) tokens are refused as never given
# A form left open over a long weekend is still recognised; older ones are refused as never given.
MAX_AGE_S = 7 * 86400.0
_MAC = r"[A-Za-z0-9_-]{43}"
_TAG = r"[A-Za-z0-9_-]{22}"
_TOKEN = re.compile(rf"f3\.([0-9]{{1,12}})\.([A-Za-z0-9_-]{{22}})\.((?:{_TAG})?)\.({_MAC})\.({_MAC})")


def _mac(key: bytes, purpose: str, *parts: str) -> str:
    # each part length-prefixed: no browser id and user name can be split another way into the same message
    message = "".join(f"{len(p)}:{p}" for p in (f"edgegw form {purpose}", *parts)).encode("utf-8", "surrogatepass")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def account_tag(key: bytes, user: str, created_at: float) -> str:
    """The tag of the account `user` created at `created_at` (the account store's stamp, new when a removed
    name is added again): 132 bits of an HMAC, so the token says nothing about the account."""
    return _mac(key, "account", user, repr(created_at))[:22]


def mint(key: bytes, browser: str, now: float, *, user: str, account: str = "", nonce: str | None = None) -> str:
    """A new token for `browser` (its cookie's id), `user` (the session's; "" before a login) and its `account`
    (`account_tag`; "" before a login) at `now`; `nonce` only for tests (22 URL-safe characters)."""
    issued = str(max(0, int(now)))
    nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
    for_browser = _mac(key, "browser", browser, issued, nonce)
    for_user = _mac(key, "user", browser, user, account, issued, nonce)
    return f"{VERSION}.{issued}.{nonce}.{account}.{for_browser}.{for_user}"


def _parts(key: bytes, browser: str, token: str, now: float, max_age_s: float) -> tuple[str, str, str, str] | None:
    """(issued, nonce, account tag, user mac) of a token minted under `key` for `browser` within `max_age_s` of
    `now`, either way: a box without a battery-backed clock may start behind the time it had when the form was
    given."""
    found = _TOKEN.fullmatch(token)
    if found is None or not browser:
        return None
    issued, nonce, account, for_browser, for_user = found.groups()
    expected = _mac(key, "browser", browser, issued, nonce)
    if not hmac.compare_digest(for_browser.encode("ascii"), expected.encode("ascii")):
        return None
    if abs(now - int(issued)) > max_age_s:
        return None
    return issued, nonce, account, for_user


def given_to_browser(key: bytes, browser: str, token: str, now: float, *, max_age_s: float = MAX_AGE_S) -> bool:
    """Whether `token` was minted for `browser` within `max_age_s` of `now`, for whichever user."""
    return _parts(key, browser, token, now, max_age_s) is not None


def verify(
    key: bytes,
    browser: str,
    token: str,
    now: float,
    *,
    user: str,
    account: str | None = None,
    max_age_s: float = MAX_AGE_S,
) -> bool:
    """Whether `token` was minted for `browser` and `user` ("" before a login) within `max_age_s` of `now`, and
    for the account tagged `account` unless that is None (the name alone: whichever account had it)."""
    parts = _parts(key, browser, token, now, max_age_s)
    if parts is None:
        return False
    issued, nonce, tag, for_user = parts
    if account is not None and not hmac.compare_digest(tag.encode("ascii"), account.encode("ascii")):
        return False
    expected = _mac(key, "user", browser, user, tag, issued, nonce)
    return hmac.compare_digest(for_user.encode("ascii"), expected.encode("ascii"))

"""The forms' CSRF tokens: signed for the browser they were given to, so that any later web process can tell one.

A token is `f1.<issued>.<nonce>.<mac>`: the Unix second it was made, 128 random bits, and an HMAC-SHA256 under
the web's form key (gateway.web.formkey, kept in its state directory) over those and the browser's own random
id (the `edgegw_browser` cookie, HttpOnly, SameSite=Strict). A form is processed only with its session's own
token, as before; the signature only answers, for a form that is refused, "was this form given to this very
browser by this UI, even by a process that has since restarted?" Only then is what it carried offered back
to be sent again. Another site cannot make such a token: it knows neither the key nor the browser's id.

Pure: no I/O, the time is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

VERSION = "f1"
# A form left open over a long weekend is still recognised; older ones are refused as never given.
MAX_AGE_S = 7 * 86400.0
_TOKEN = re.compile(r"f1\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


def _mac(key: bytes, browser: str, issued: str, nonce: str) -> str:
    message = f"edgegw form\0{browser}\0{issued}\0{nonce}".encode("utf-8", "replace")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def mint(key: bytes, browser: str, now: float, *, nonce: str | None = None) -> str:
    """A new token for `browser` (its cookie's id) at `now`; `nonce` only for tests (22 URL-safe characters)."""
    issued = str(max(0, int(now)))
    nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
    return f"{VERSION}.{issued}.{nonce}.{_mac(key, browser, issued, nonce)}"


def verify(key: bytes, browser: str, token: str, now: float, *, max_age_s: float = MAX_AGE_S) -> bool:
    """Whether `token` was minted under `key` for `browser` within `max_age_s` of `now`, either way: a box
    without a battery-backed clock may start behind the time it had when the form was given."""
    found = _TOKEN.fullmatch(token)
    if found is None or not browser:
        return False
    issued, nonce, mac = found.groups()
    expected = _mac(key, browser, issued, nonce)
    return hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")) and abs(now - int(issued)) <= max_age_s

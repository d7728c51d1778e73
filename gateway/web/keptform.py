"""What a refused form carried, kept so that the user can send it again instead of typing it again.

Only for a form that was given to this browser and to the user who would send it again (its token verifies for
both: gateway.web.formtoken) and only where that is safe: never a password (the fields in SECRET_FIELDS, and so never the login, setup or password forms), never a
file (a multipart form), never the logout. The fields go back to the same browser inside the answer's page, as
hidden fields of a form the user must press; they are not kept on the server, except for one logged-in
session between its login and the page that offers them (`Session.resend`).

A browser whose login ended gets them as hidden fields of the login form, `resend_to`, `resend_token` (the
refused form's own token) and `kept.<name>`: the login request carries them back, and they are offered only if
that token verifies for the user whose password the login has just checked, never for a name the browser sends.
Through the login they must fit its request limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

# the password fields of the account forms (login, setup, /password, /users' add and reset)
SECRET_FIELDS = frozenset({"password", "current", "new", "confirm"})
NEVER_KEPT = frozenset({"/logout"})
TOKEN_FIELD = "csrf_token"
RESEND_TO = "resend_to"
RESEND_TOKEN = "resend_token"
PREFIX = "kept."
# what a login form may carry besides its own fields: within the app's 4 MiB request limit
MAX_THROUGH_LOGIN = 3 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class KeptForm:
    action: str  # the path the form was sent to
    fields: tuple[tuple[str, str], ...]  # in their order, a name as often as the form had it
    # the token the form was refused with: whose form it was, checked again after a login that carried it
    token: str = field(default="", repr=False)

    @property
    def section(self) -> str:
        """The page of the form's part of the UI (`/users` for `/users/role`), to go back to."""
        return "/" + self.action.lstrip("/").split("/", 1)[0]

    def login_fields(self) -> list[tuple[str, str]]:
        """The hidden fields that carry this form through the login form."""
        return [
            (RESEND_TO, self.action),
            (RESEND_TOKEN, self.token),
            *((PREFIX + name, value) for name, value in self.fields),
        ]

    def fits_login(self) -> bool:
        return len(urlencode(self.login_fields()).encode("ascii")) <= MAX_THROUGH_LOGIN


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
    """The KeptForm a login form carried (`resend_to`, `resend_token`, `kept.<name>`), or None; checked as `keep`
    checks. Without a token nothing says whose form it was: None."""
    action = token = ""
    kept: list[tuple[str, str]] = []
    for name, value in fields:
        if not isinstance(value, str):
            return None
        if name == RESEND_TO:
            action = value
        elif name == RESEND_TOKEN:
            token = value
        elif name.startswith(PREFIX):
            kept.append((name.removeprefix(PREFIX), value))
    if not action or not token:
        return None
    return keep(action, "application/x-www-form-urlencoded", kept, token=token)

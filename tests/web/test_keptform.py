"""What a refused form may carry back (gateway.web.keptform): never a password, a file or a foreign address, and
through the login only with the token that says whose form it was."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.web.keptform import MAX_THROUGH_LOGIN, KeptForm, from_login, keep

URLENCODED = "application/x-www-form-urlencoded"
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12).filter(
    lambda n: n not in {"password", "current", "new", "confirm", "csrf_token", "resend_to", "resend_token"}
)
TOKEN = "f2.1796083200." + "n" * 22 + "." + "b" * 43 + "." + "u" * 43
fields = st.lists(st.tuples(names, st.text(max_size=40)), max_size=6)


@given(fields=fields)
def test_a_kept_form_comes_back_through_the_login_as_it_was(fields: list[tuple[str, str]]) -> None:
    kept = keep("/lockers/assign", URLENCODED, [("csrf_token", TOKEN), *fields], token=TOKEN)
    assert kept == KeptForm(action="/lockers/assign", fields=tuple(fields), token=TOKEN)
    assert from_login([("csrf_token", "u"), ("name", "admin1"), ("password", "pw"), *kept.login_fields()]) == kept


def test_through_the_login_only_with_the_token_it_was_refused_with() -> None:
    """The check after the password needs the form's own token: a login form without one carries nothing, and
    the login page's own token (the `csrf_token` field) is never taken for it."""
    kept = keep("/users/role", URLENCODED, [("name", "mika"), ("role", "admin")], token=TOKEN)
    assert kept is not None and ("resend_token", TOKEN) in kept.login_fields()
    without = [(n, v) for n, v in kept.login_fields() if n != "resend_token"]
    assert from_login([("csrf_token", TOKEN), *without]) is None
    assert TOKEN not in repr(kept)


def test_what_is_never_kept() -> None:
    assert keep("/users/add", URLENCODED, [("name", "mallory"), ("password", "secret phrase")], token=TOKEN) is None
    assert keep("/password", URLENCODED, [("current", "a"), ("new", "b"), ("confirm", "b")], token=TOKEN) is None
    assert keep("/config/upload", "multipart/form-data", [("comment", "x")], token=TOKEN) is None
    assert keep("/logout", URLENCODED, [], token=TOKEN) is None
    for action in ("https://evil.example/x", "//evil.example/x", "/a?b=c", "/a\\b", "", "users"):
        assert keep(action, URLENCODED, [("name", "mika")], token=TOKEN) is None, action
        assert from_login([("resend_to", action), ("resend_token", TOKEN), ("kept.name", "mika")]) is None, action
    # a password smuggled through the login form's carried fields is refused there too
    smuggled = [("resend_to", "/users/add"), ("resend_token", TOKEN), ("kept.name", "m"), ("kept.password", "pw")]
    assert from_login(smuggled) is None
    assert from_login([("resend_token", TOKEN), ("kept.name", "mika")]) is None  # nothing says where it goes


def test_a_form_too_large_for_the_login_is_not_carried_through_it() -> None:
    kept = keep("/config/check", URLENCODED, [("text", "水" * (MAX_THROUGH_LOGIN // 9 + 1))], token=TOKEN)
    assert kept is not None and not kept.fits_login()
    assert kept.section == "/config"

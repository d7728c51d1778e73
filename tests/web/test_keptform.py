"""What a refused form may carry back (gateway.web.keptform): never a password, a file or a foreign address."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.web.keptform import MAX_THROUGH_LOGIN, KeptForm, from_login, keep

URLENCODED = "application/x-www-form-urlencoded"
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12).filter(
    lambda n: n not in {"password", "current", "new", "confirm", "csrf_token", "resend_to"}
)
fields = st.lists(st.tuples(names, st.text(max_size=40)), max_size=6)


@given(fields=fields)
def test_a_kept_form_comes_back_through_the_login_as_it_was(fields: list[tuple[str, str]]) -> None:
    kept = keep("/lockers/assign", URLENCODED, [("csrf_token", "t"), *fields])
    assert kept == KeptForm(action="/lockers/assign", fields=tuple(fields))
    assert from_login([("csrf_token", "u"), ("name", "admin1"), ("password", "pw"), *kept.login_fields()]) == kept


def test_what_is_never_kept() -> None:
    assert keep("/users/add", URLENCODED, [("name", "mallory"), ("password", "secret phrase")]) is None
    assert keep("/password", URLENCODED, [("current", "a"), ("new", "b"), ("confirm", "b")]) is None
    assert keep("/config/upload", "multipart/form-data", [("comment", "x")]) is None
    assert keep("/logout", URLENCODED, []) is None
    for action in ("https://evil.example/x", "//evil.example/x", "/a?b=c", "/a\\b", "", "users"):
        assert keep(action, URLENCODED, [("name", "mika")]) is None, action
        assert from_login([("resend_to", action), ("kept.name", "mika")]) is None, action
    # a password smuggled through the login form's carried fields is refused there too
    assert from_login([("resend_to", "/users/add"), ("kept.name", "m"), ("kept.password", "pw")]) is None
    assert from_login([("kept.name", "mika")]) is None  # nothing says where it goes


def test_a_form_too_large_for_the_login_is_not_carried_through_it() -> None:
    kept = keep("/config/check", URLENCODED, [("text", "水" * (MAX_THROUGH_LOGIN // 9 + 1))])
    assert kept is not None and not kept.fits_login()
    assert kept.section == "/config"

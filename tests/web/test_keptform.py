"""What a refused form may carry back (gateway.web.keptform): never a password, a file or a foreign address;
through the login only by reference, with the token that says whose form it was; kept a few minutes, a few forms
per browser; shown before it is sent again with personal values masked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.web.keptform import MAX_THROUGH_LOGIN, KeptForm, KeptForms, Unclaimed, from_login, keep

URLENCODED = "application/x-www-form-urlencoded"
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12).filter(
    lambda n: (
        n not in {"password", "current", "new", "confirm", "csrf_token", "resend_to", "resend_token", "resend_ref"}
    )
)
TOKEN = "f3.1796083200." + "n" * 22 + "." + "a" * 22 + "." + "b" * 43 + "." + "u" * 43
BROWSER, OTHER_BROWSER = "b" * 43, "c" * 43
NOW = 1_796_083_200.0
fields = st.lists(st.tuples(names, st.text(max_size=40)), max_size=6)


@given(fields=fields)
def test_a_kept_form_comes_back_through_the_login_as_it_was(fields: list[tuple[str, str]]) -> None:
    kept = keep("/lockers/assign", URLENCODED, [("csrf_token", TOKEN), *fields], token=TOKEN)
    assert kept == KeptForm(action="/lockers/assign", fields=tuple(fields), token=TOKEN)
    store = KeptForms()
    carried = store.put(kept, browser=BROWSER, now=NOW)
    login_form = [("csrf_token", "u"), ("name", "admin1"), ("password", "pw"), *carried.login_fields()]
    # the login form holds where it goes and whose it is, never a value
    assert [n for n, _ in carried.login_fields()] == ["resend_to", "resend_token", "resend_ref"]
    claim = from_login(login_form)
    assert claim is not None and claim.fields == ()
    assert store.claim(claim, browser=BROWSER, now=NOW + 60) == carried
    assert carried.fields == tuple(fields)
    assert store.claim(claim, browser=BROWSER, now=NOW + 60) is Unclaimed.GONE  # once
    assert len(store) == 0


def test_a_kept_form_is_claimed_only_by_its_browser_with_its_token_within_minutes() -> None:
    kept = keep("/users/role", URLENCODED, [("name", "mika"), ("role", "admin")], token=TOKEN)
    assert kept is not None
    store = KeptForms(keep_s=600)
    carried = store.put(kept, browser=BROWSER, now=NOW)
    claim = from_login(carried.login_fields())
    assert claim is not None
    assert store.claim(claim, browser=OTHER_BROWSER, now=NOW) is Unclaimed.GONE
    other_token = from_login(
        [*carried.login_fields()[:1], ("resend_token", TOKEN[:-1] + "v"), carried.login_fields()[2]]
    )
    assert other_token is not None and store.claim(other_token, browser=BROWSER, now=NOW) is Unclaimed.GONE
    elsewhere = from_login([("resend_to", "/users/add"), *carried.login_fields()[1:]])
    assert elsewhere is not None and store.claim(elsewhere, browser=BROWSER, now=NOW) is Unclaimed.GONE
    for late in (NOW + 601, NOW - 601):  # a clock stepped back keeps nothing longer either
        again = store.put(kept, browser=BROWSER, now=NOW)
        assert store.claim(from_login(again.login_fields()) or claim, browser=BROWSER, now=late) is Unclaimed.EXPIRED
    assert store.claim(claim, browser=BROWSER, now=NOW + 600) is Unclaimed.EXPIRED  # forgotten with the late ones
    assert len(store) == 0


@given(puts=st.lists(st.sampled_from([BROWSER, OTHER_BROWSER]), max_size=12))
def test_a_few_forms_per_browser_the_oldest_go_first(puts: list[str]) -> None:
    store = KeptForms(per_browser=3)
    kept = keep("/users/role", URLENCODED, [("name", "mika")], token=TOKEN)
    assert kept is not None
    refs = [(browser, store.put(kept, browser=browser, now=NOW)) for browser in puts]
    for browser in (BROWSER, OTHER_BROWSER):
        mine = [carried for b, carried in refs if b == browser]
        claimed = [store.claim(c, browser=browser, now=NOW) for c in mine]
        assert [c if isinstance(c, Unclaimed) else None for c in claimed] == [
            None if i >= len(mine) - 3 else Unclaimed.PUSHED_OUT for i in range(len(mine))
        ]


def test_the_store_is_bounded_in_characters() -> None:
    store = KeptForms(max_chars=100)
    kept = keep("/config/check", URLENCODED, [("text", "x" * 56)], token=TOKEN)
    assert kept is not None and kept.size() == 60
    first = store.put(kept, browser=BROWSER, now=NOW)
    second = store.put(kept, browser=OTHER_BROWSER, now=NOW)
    assert store.claim(first, browser=BROWSER, now=NOW) is Unclaimed.CROWDED
    assert store.claim(second, browser=OTHER_BROWSER, now=NOW) == second


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
    kept = keep("/config/check", URLENCODED, [("text", "水" * MAX_THROUGH_LOGIN)], token=TOKEN)
    assert kept is not None and not kept.fits_login()
    assert kept.section == "/config"


def test_what_is_shown_before_sending_again() -> None:
    """Personal values as the box masks them in its logs (gateway.redact), else not at all; long ones cut."""
    sent = [
        ("email", "hanako.patron@example.jp"),
        ("mac", "3c:22:fb:12:34:56"),
        ("user", "taro"),
        ("reference", "R-0042 for hanako@example.jp"),
        ("text", "a" * 300),
    ]
    kept = keep("/lockers/assign", URLENCODED, sent, token=TOKEN)
    assert kept is not None and kept.title_key == "lockers.title"
    assert kept.shown_fields() == [
        ("email", "***@example.jp"),
        ("mac", "3c:22:fb:***"),
        ("user", "***"),
        ("reference", "R-0042 for ***@example.jp"),
        ("text", "a" * 200 + "…"),
    ]
    assert kept.fields == tuple(sent)  # what the button sends is what was typed
    assert KeptForm(action="/lang", fields=()).title_key is None

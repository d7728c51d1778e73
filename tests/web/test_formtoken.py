"""The forms' signed CSRF tokens (gateway.web.formtoken) and their key at rest (gateway.web.formkey)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backup import archive
from gateway.web import formtoken
from gateway.web.formkey import KEY_FILE, form_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
BROWSER = "b" * 43
NOW = 1_796_083_200.0  # 2026-12-01
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
browsers = st.text(alphabet=URLSAFE, min_size=43, max_size=43)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
# the account store's names (gateway.accounts.store), and "" for a session before a login
users = st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", fullmatch=True))


@given(browser=browsers, now=times, user=users)
def test_a_token_verifies_for_its_browser_only(browser: str, now: float, user: str) -> None:
    token = formtoken.mint(KEY, browser, now, user=user)
    assert formtoken.verify(KEY, browser, token, now, user=user)
    assert formtoken.given_to_browser(KEY, browser, token, now)
    other = browser[::-1] if browser[::-1] != browser else "x" * 43
    assert not formtoken.verify(KEY, other, token, now, user=user)
    assert not formtoken.given_to_browser(KEY, other, token, now)
    assert not formtoken.verify(OTHER_KEY, browser, token, now, user=user)
    assert not formtoken.given_to_browser(OTHER_KEY, browser, token, now)


@given(browser=browsers, now=times, user=users, other=users)
def test_a_token_verifies_for_its_user_only(browser: str, now: float, user: str, other: str) -> None:
    """One browser, several people (a library's PC): a token is this browser's for all, one user's for one."""
    token = formtoken.mint(KEY, browser, now, user=user)
    assert formtoken.verify(KEY, browser, token, now, user=other) == (other == user)
    assert formtoken.given_to_browser(KEY, browser, token, now)


def test_a_user_name_cannot_borrow_from_the_browser_id() -> None:
    """The signed parts are length-prefixed: the same characters split another way are another message."""
    token = formtoken.mint(KEY, BROWSER + "a", NOW, user="dmin1")
    assert not formtoken.verify(KEY, BROWSER, token, NOW, user="admin1")
    assert not formtoken.verify(KEY, BROWSER + "a", token, NOW, user="admin1")


@given(now=times, age=st.integers(min_value=0, max_value=3 * int(formtoken.MAX_AGE_S)))
def test_a_token_is_known_for_a_week_either_way(now: float, age: int) -> None:
    token = formtoken.mint(KEY, BROWSER, now, user="admin1")
    issued = int(now)
    for then in (issued + age, issued - age):
        known = age <= formtoken.MAX_AGE_S
        assert formtoken.verify(KEY, BROWSER, token, then, user="admin1") == known
        assert formtoken.given_to_browser(KEY, BROWSER, token, then) == known


@given(position=st.integers(min_value=0), replacement=st.characters())
def test_any_character_changed_spoils_the_token(position: int, replacement: str) -> None:
    tag = formtoken.account_tag(KEY, "admin1", NOW)
    token = formtoken.mint(KEY, BROWSER, NOW, user="admin1", account=tag, nonce="n" * 22)
    i = position % len(token)
    changed = token[:i] + replacement + token[i + 1 :]
    assert formtoken.verify(KEY, BROWSER, changed, NOW, user="admin1") == (changed == token)
    # the browser's signature covers neither the account's tag nor the user's signature: a change there alone, in
    # its alphabet, leaves it good
    tag_at = token.index(f".{tag}.") + 1
    in_the_users = tag_at <= i < tag_at + len(tag) or i >= len(token) - 43
    only_the_users = in_the_users and replacement in URLSAFE
    assert formtoken.given_to_browser(KEY, BROWSER, changed, NOW) == (changed == token or only_the_users)


@given(text=st.text(), user=users)
def test_any_text_is_refused_without_an_error(text: str, user: str) -> None:
    assert formtoken.verify(KEY, BROWSER, text, NOW, user=user) is False
    assert formtoken.given_to_browser(KEY, BROWSER, text, NOW) is False


def test_the_token_has_the_documented_shape() -> None:
    tag = formtoken.account_tag(KEY, "admin1", NOW)
    token = formtoken.mint(KEY, BROWSER, NOW, user="admin1", account=tag, nonce="n" * 22)
    assert token.startswith(f"f3.{int(NOW)}.{'n' * 22}.{tag}.")
    assert len(token) == len("f3.") + 10 + 1 + 22 + 1 + 22 + 1 + 43 + 1 + 43
    assert "admin1" not in token  # whose it is, is checked, never read from the token
    before_login = formtoken.mint(KEY, BROWSER, NOW, user="", nonce="n" * 22)
    assert before_login.startswith(f"f3.{int(NOW)}.{'n' * 22}..")
    assert formtoken.verify(KEY, BROWSER, before_login, NOW, user="", account="")
    assert not formtoken.verify(KEY, "", token, NOW, user="admin1")  # a request without a browser id matches nothing
    assert not formtoken.given_to_browser(KEY, "", token, NOW)


stamps = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(browser=browsers, user=users, created=stamps, again=stamps)
def test_a_token_verifies_for_its_account_only(browser: str, user: str, created: float, again: float) -> None:
    """A user removed and added again under the same name (a new creation stamp) is another account; the name
    alone (account None) still matches either."""
    tag = formtoken.account_tag(KEY, user, created)
    token = formtoken.mint(KEY, browser, NOW, user=user, account=tag)
    assert formtoken.verify(KEY, browser, token, NOW, user=user, account=tag)
    assert formtoken.verify(KEY, browser, token, NOW, user=user)
    new_tag = formtoken.account_tag(KEY, user, again)
    assert formtoken.verify(KEY, browser, token, NOW, user=user, account=new_tag) == (again == created)
    assert formtoken.verify(KEY, browser, token, NOW, user=user, account="") is False


def test_a_changed_account_tag_spoils_the_users_signature() -> None:
    old, new = formtoken.account_tag(KEY, "mika", NOW), formtoken.account_tag(KEY, "mika", NOW + 60)
    token = formtoken.mint(KEY, BROWSER, NOW, user="mika", account=old)
    swapped = token.replace(f".{old}.", f".{new}.")
    assert swapped != token
    assert not formtoken.verify(KEY, BROWSER, swapped, NOW, user="mika", account=new)
    assert not formtoken.verify(KEY, BROWSER, swapped, NOW, user="mika")


def test_a_token_signed_for_the_browser_only_is_no_longer_known() -> None:
    """A form open across the upgrade to user-bound tokens (f1): nobody's, so nothing it carried comes back."""
    f1 = "f1.1796083200." + "n" * 22 + "." + "m" * 43
    assert not formtoken.given_to_browser(KEY, BROWSER, f1, NOW)
    assert not formtoken.verify(KEY, BROWSER, f1, NOW, user="")


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "web"
    key = form_key(state)
    assert len(key) == 32
    path = state / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert form_key(state) == key  # the next start signs and verifies with the same one


def test_a_damaged_key_is_replaced_and_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / KEY_FILE
    path.write_bytes(b"short")
    with caplog.at_level(logging.WARNING, logger="gateway.web.formkey"):
        key = form_key(tmp_path)
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert caplog.messages == [
        f"web: {path} holds 5 bytes, not a 32-byte key; made a new one (forms open now will be refused as expired)"
    ]


def test_the_key_stays_on_the_box(tmp_path: Path) -> None:
    """A `*.key` file: a backup of the data directory leaves it out, as it does the TLS key (gateway.backup)."""
    form_key(tmp_path / "web")
    (tmp_path / "web" / "audit.db").write_bytes(b"")
    assert [str(p) for p in archive.data_files(tmp_path)] == ["web/audit.db"]

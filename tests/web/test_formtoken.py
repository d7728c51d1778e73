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
browsers = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=43, max_size=43
)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(browser=browsers, now=times)
def test_a_token_verifies_for_its_browser_only(browser: str, now: float) -> None:
    token = formtoken.mint(KEY, browser, now)
    assert formtoken.verify(KEY, browser, token, now)
    assert not formtoken.verify(KEY, browser[::-1] if browser[::-1] != browser else "x" * 43, token, now)
    assert not formtoken.verify(OTHER_KEY, browser, token, now)


@given(now=times, age=st.integers(min_value=0, max_value=3 * int(formtoken.MAX_AGE_S)))
def test_a_token_is_known_for_a_week_either_way(now: float, age: int) -> None:
    token = formtoken.mint(KEY, BROWSER, now)
    issued = int(now)
    for then in (issued + age, issued - age):
        assert formtoken.verify(KEY, BROWSER, token, then) == (age <= formtoken.MAX_AGE_S)


@given(position=st.integers(min_value=0), replacement=st.characters())
def test_any_character_changed_spoils_the_token(position: int, replacement: str) -> None:
    token = formtoken.mint(KEY, BROWSER, NOW, nonce="n" * 22)
    i = position % len(token)
    changed = token[:i] + replacement + token[i + 1 :]
    assert formtoken.verify(KEY, BROWSER, changed, NOW) == (changed == token)


@given(text=st.text())
def test_any_text_is_refused_without_an_error(text: str) -> None:
    assert formtoken.verify(KEY, BROWSER, text, NOW) is False


def test_the_token_has_the_documented_shape() -> None:
    token = formtoken.mint(KEY, BROWSER, NOW, nonce="n" * 22)
    assert token.startswith(f"f1.{int(NOW)}.{'n' * 22}.")
    assert len(token) == len("f1.") + 10 + 1 + 22 + 1 + 43
    assert not formtoken.verify(KEY, "", token, NOW)  # a request without a browser id matches nothing


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

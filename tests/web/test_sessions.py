"""The session table on its own: tokens, timeouts, rotation, logout everywhere, the bound on anonymous sessions."""

from __future__ import annotations

import hashlib

import pytest

from gateway.web import auth
from gateway.web.auth import SessionTable

IDLE, LIFETIME = 15 * 60.0, 8 * 3600.0


def test_only_the_token_hash_is_kept() -> None:
    table = SessionTable(idle_s=IDLE, lifetime_s=LIFETIME)
    token, session = table.new(0.0)
    assert session.key == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(vars(table))
    assert table.get(token, 1.0) == (session, False)
    assert table.get("forged", 1.0) == (None, False)


def test_login_rotates_and_carries_the_language() -> None:
    table = SessionTable(idle_s=IDLE, lifetime_s=LIFETIME)
    old_token, old = table.new(0.0, language="en")
    token, session = table.login(old, "alice", 5.0)
    assert token != old_token and session.csrf_token != old.csrf_token
    assert (session.user, session.language, session.logged_in_at) == ("alice", "en", 5.0)
    assert table.get(old_token, 6.0) == (None, False)


def test_timeouts_say_when_a_logged_in_session_ran_out() -> None:
    table = SessionTable(idle_s=IDLE, lifetime_s=LIFETIME)
    token, _ = table.login(None, "alice", 0.0)
    assert table.get(token, IDLE)[0] is not None
    assert table.get(token, 2 * IDLE + 1) == (None, True)
    anonymous, _ = table.new(0.0)
    assert table.get(anonymous, 2 * IDLE)[0] is not None  # the login page left open
    assert table.get(anonymous, LIFETIME + 1) == (None, False)


def test_drop_user_logs_out_every_browser() -> None:
    table = SessionTable(idle_s=IDLE, lifetime_s=LIFETIME)
    a, _ = table.login(None, "alice", 0.0)
    b, _ = table.login(None, "alice", 0.0)
    c, _ = table.login(None, "bob", 0.0)
    assert table.drop_user("alice") == 2
    assert table.get(a, 1.0)[0] is None and table.get(b, 1.0)[0] is None and table.get(c, 1.0)[0] is not None


def test_anonymous_sessions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_ANONYMOUS", 3)
    table = SessionTable(idle_s=IDLE, lifetime_s=LIFETIME)
    logged_in, _ = table.login(None, "alice", 0.0)
    tokens = [table.new(float(i))[0] for i in range(5)]
    assert len(table) == 4  # three anonymous, the logged-in one never evicted
    assert table.get(tokens[0], 10.0)[0] is None and table.get(tokens[4], 10.0)[0] is not None
    assert table.get(logged_in, 10.0)[0] is not None

"""Lockout per (typed name, client address) on a real sqlite file: one address's failures lock only that
address, an unknown name is counted and locked like an account, and the counts survive a restart."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.accounts import store as accounts
from gateway.accounts.store import AccountStore, AuthResult, Role
from gateway.web.config import WebConfig

from .conftest import T0

GOOD = "river-gauge-cabinet-7"
LOCK_S = 15 * 60  # the conftest's web_config: 3 failures lock for 15 minutes
STRANGER, ADMIN_PC = "198.51.100.7", "192.0.2.10"


def fail_three(store: AccountStore, name: str, address: str, at: float = T0) -> AuthResult:
    for t in range(2):
        assert store.authenticate(name, "wrong", address=address, now=at + t).reason == "bad_credentials"
    return store.authenticate(name, "wrong", address=address, now=at + 2)


def test_failures_from_one_address_lock_that_address_only(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    third = fail_three(store, "tanaka", STRANGER)
    assert (third.reason, third.locked_now, third.locked_until) == ("locked", True, T0 + 2 + LOCK_S)
    assert store.authenticate("tanaka", GOOD, address=STRANGER, now=T0 + 10).reason == "locked"
    at_desk = store.authenticate("tanaka", GOOD, address=ADMIN_PC, now=T0 + 11)
    assert at_desk.ok and at_desk.failures_since_last_login == 4
    # the admin's login does not lift the stranger's lock, nor start the stranger's count again
    assert store.authenticate("tanaka", GOOD, address=STRANGER, now=T0 + 12).reason == "locked"
    user = store.get_user("tanaka")
    assert user is not None and user.locked_until == T0 + 2 + LOCK_S  # shown in the CLI and on /users


def test_an_unknown_name_is_counted_and_locked_like_an_account(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    real = [store.authenticate("tanaka", "wrong", address=STRANGER, now=T0 + t) for t in range(5)]
    fake = [store.authenticate("nobody", "wrong", address=STRANGER, now=T0 + t) for t in range(5)]
    answers = [(r.ok, r.reason, r.locked_until, r.user) for r in real]
    assert answers == [(r.ok, r.reason, r.locked_until, r.user) for r in fake]
    assert [r.reason for r in fake] == ["bad_credentials", "bad_credentials", "locked", "locked", "locked"]
    # the audit entry and log line of a lockout are for accounts only; nobody outside sees them
    assert [r.locked_now for r in real] == [False, False, True, False, False]
    assert not any(r.locked_now for r in fake)


def test_counts_and_locks_survive_a_restart(
    tmp_path: Path, web_config: WebConfig, cheap_hasher: PasswordHasher
) -> None:
    store = AccountStore(tmp_path, web_config, hasher=cheap_hasher)
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    for name in ("tanaka", "nobody"):
        for t in range(2):
            store.authenticate(name, "wrong", address=STRANGER, now=T0 + t)
    again = AccountStore(tmp_path, web_config, hasher=cheap_hasher)
    for name in ("tanaka", "nobody"):
        assert again.authenticate(name, "wrong", address=STRANGER, now=T0 + 5).reason == "locked"
    assert again.authenticate("tanaka", GOOD, address=STRANGER, now=T0 + 6).reason == "locked"


def test_a_typed_name_is_not_kept_in_clear(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    fail_three(store, GOOD, STRANGER)  # a password typed into the name field
    fail_three(store, "tanaka", STRANGER)
    with sqlite3.connect(store.path) as db:
        dump = "\n".join(db.iterdump())
        assert db.execute("SELECT count(*) FROM login_failures").fetchone()[0] == 2
    assert GOOD not in dump and GOOD.upper() not in dump


def test_unlock_ends_the_locks_of_every_address(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    fail_three(store, "tanaka", STRANGER)
    fail_three(store, "TANAKA", ADMIN_PC)
    assert store.unlock("tanaka").locked_until is None
    for address in (STRANGER, ADMIN_PC):
        assert store.authenticate("tanaka", GOOD, address=address, now=T0 + 10).ok


def test_an_idle_streak_is_forgotten_and_ended_locks_go(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    for t in range(2):
        store.authenticate("tanaka", "wrong", address=STRANGER, now=T0 + t)
    fail_three(store, "nobody", STRANGER)
    later = T0 + 1 + accounts.FAILURES_KEPT_S
    # one failure more after a day is the first of a new streak, not the third
    assert store.authenticate("tanaka", "wrong", address=STRANGER, now=later).reason == "bad_credentials"
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT failed_streak, locked_until FROM login_failures").fetchall() == [(1, None)]


def test_a_strangers_lock_does_not_bar_the_users_own_session(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    fail_three(store, "tanaka", STRANGER)
    assert store.confirm_password("tanaka", GOOD, now=T0 + 10).ok


@settings(max_examples=15, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["tanaka", "nobody"]),
            st.sampled_from([STRANGER, ADMIN_PC]),
            st.booleans(),
            st.floats(min_value=0, max_value=10 * 60, allow_nan=False),
        ),
        min_size=1,
        max_size=14,
    )
)
def test_lockout_per_name_and_address_follows_its_model(steps: list[tuple[str, str, bool, float]]) -> None:
    """Against a model written from the rules: per (name, address), 3 consecutive failures lock for 15 minutes;
    a success ends its own address's streak; an unknown name is a name whose password is never right."""
    config = WebConfig(lockout_failures=3, lockout_minutes=15)
    with tempfile.TemporaryDirectory() as d:
        store = AccountStore(Path(d), config, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
        now, failures = T0, 0
        streak: dict[tuple[str, str], int] = {}
        locked: dict[tuple[str, str], float] = {}
        for name, address, right, wait in steps:
            now += wait
            pair = (name, address)
            result = store.authenticate(name, GOOD if right else "wrong", address=address, now=now)
            if now < locked.get(pair, now):
                failures += name == "tanaka"
                assert (result.reason, result.locked_now, result.locked_until) == ("locked", False, locked[pair])
                continue
            if name == "tanaka" and right:
                assert result.ok and result.failures_since_last_login == failures
                streak[pair], failures = 0, 0
                continue
            failures += name == "tanaka"
            streak[pair] = streak.get(pair, 0) + 1
            if streak[pair] == 3:
                streak[pair], locked[pair] = 0, now + 15 * 60
                assert (result.reason, result.locked_until) == ("locked", locked[pair])
                assert result.locked_now == (name == "tanaka")
            else:
                assert (result.reason, result.locked_now) == ("bad_credentials", False)

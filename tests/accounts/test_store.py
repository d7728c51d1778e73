"""AccountStore on a real sqlite file: users, lockout with an injected clock, expiry, the setup link."""

from __future__ import annotations

import sqlite3
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.accounts.store import (
    HASH_SLOTS,
    SCHEMA_VERSION,
    AccountError,
    AccountStore,
    AuthResult,
    InvalidUserName,
    LastAdmin,
    PasswordRejected,
    Role,
    SetupRefused,
    UnknownUser,
    UserExists,
)
from gateway.web.config import WebConfig

from .conftest import T0

GOOD = "river-gauge-cabinet-7"
OTHER = "library-counter-blue-9"
DAY = 86_400.0


class CountingHasher(PasswordHasher):
    """Counts verifications, to show an unknown user costs one like a known one."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


def test_file_has_schema_version_and_private_modes(store: AccountStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 2
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.state_dir.stat().st_mode) == 0o700


def test_a_newer_schema_is_refused(tmp_path: Path, web_config: WebConfig, cheap_hasher: PasswordHasher) -> None:
    AccountStore(tmp_path, web_config, hasher=cheap_hasher)
    with sqlite3.connect(tmp_path / "accounts.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(AccountError) as exc:
        AccountStore(tmp_path, web_config, hasher=cheap_hasher)
    assert str(exc.value) == (
        f"{tmp_path / 'accounts.db'}: schema version newer than this edgegw knows (2), got version 99; upgrade edgegw"
    )


def test_reopening_keeps_users(tmp_path: Path, web_config: WebConfig, cheap_hasher: PasswordHasher) -> None:
    AccountStore(tmp_path, web_config, hasher=cheap_hasher).add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    again = AccountStore(tmp_path, web_config, hasher=cheap_hasher)
    user = again.get_user("tanaka")
    assert user is not None and user.role is Role.ADMIN


def test_add_get_list(store: AccountStore) -> None:
    user = store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    assert (user.name, user.role, user.created_at, user.password_changed_at) == ("tanaka", Role.ADMIN, T0, T0)
    assert not user.must_change and user.locked_until is None and user.last_login_at is None
    store.add_user("suzuki", Role.VIEWER, OTHER, now=T0, must_change=True)
    assert [u.name for u in store.list_users()] == ["suzuki", "tanaka"]
    suzuki = store.get_user("suzuki")
    assert suzuki is not None and suzuki.must_change
    assert store.get_user("nobody") is None
    assert store.has_admin()


def test_password_hash_is_argon2id_and_never_the_password(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    with sqlite3.connect(store.path) as db:
        (h,) = db.execute("SELECT password_hash FROM users").fetchone()
    assert h.startswith("$argon2id$")
    assert GOOD.encode() not in store.path.read_bytes()


def test_names_are_unique_whatever_the_case_and_checked(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    with pytest.raises(UserExists) as exc:
        store.add_user("Tanaka", Role.VIEWER, OTHER, now=T0)
    assert str(exc.value) == "user Tanaka: already exists, got a second user of that name"
    with pytest.raises(InvalidUserName) as bad:
        store.add_user("<script>", Role.VIEWER, OTHER, now=T0)
    assert str(bad.value) == (
        "user name: must be 1-64 characters of A-Z a-z 0-9 _ . @ - starting with a letter or digit, got '<script>'"
    )


def test_policy_refusal_names_the_rules_not_the_password(store: AccountStore) -> None:
    with pytest.raises(PasswordRejected) as exc:
        store.add_user("tanaka", Role.ADMIN, "password", now=T0)
    assert exc.value.reasons == ("password.too_short", "password.common")
    assert exc.value.key == "password.rejected"
    assert "password" not in str(exc.value).replace("password.", "").replace("password refused", "")


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.TECHNICIAN) and Role.ADMIN.allows(Role.VIEWER) and Role.ADMIN.allows(Role.ADMIN)
    assert Role.TECHNICIAN.allows(Role.VIEWER) and not Role.TECHNICIAN.allows(Role.ADMIN)
    assert Role.VIEWER.allows(Role.VIEWER) and not Role.VIEWER.allows(Role.TECHNICIAN)


def test_librarian_and_wifi_auditor_are_duties_beside_the_ladder() -> None:
    allowed = {(r, n) for r in Role for n in Role if r.allows(n)}
    assert {n for r, n in allowed if r is Role.LIBRARIAN} == {Role.LIBRARIAN}
    assert {n for r, n in allowed if r is Role.WIFI_AUDITOR} == {Role.WIFI_AUDITOR}
    # admins may staff the library's pages, yet only the auditor searches who was on the Wi-Fi
    assert {r for r, n in allowed if n is Role.LIBRARIAN} == {Role.LIBRARIAN, Role.ADMIN}
    assert {r for r, n in allowed if n is Role.WIFI_AUDITOR} == {Role.WIFI_AUDITOR}
    assert {r for r, n in allowed if n is Role.VIEWER} == {Role.VIEWER, Role.TECHNICIAN, Role.ADMIN}


def test_login_reports_the_previous_login_and_the_failures_since(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    first = store.authenticate("tanaka", GOOD, address="192.0.2.10", now=T0 + 60)
    assert first.ok and first.reason == "ok" and first.previous_login is None and first.failures_since_last_login == 0
    assert first.user is not None and first.user.last_login_at == T0 + 60
    assert store.authenticate("tanaka", "wrong-password-1", address="192.0.2.66", now=T0 + 120).reason == (
        "bad_credentials"
    )
    second = store.authenticate("tanaka", GOOD, address="192.0.2.11", now=T0 + 180)
    assert second.ok
    assert second.previous_login == (T0 + 60, "192.0.2.10")
    assert second.failures_since_last_login == 1
    third = store.authenticate("tanaka", GOOD, address="192.0.2.12", now=T0 + 240)
    assert third.previous_login == (T0 + 180, "192.0.2.11") and third.failures_since_last_login == 0


def test_confirming_the_current_password_is_not_a_login_but_wrong_guesses_lock(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    assert store.authenticate("tanaka", GOOD, address="192.0.2.10", now=T0 + 60).ok
    right = store.confirm_password("tanaka", GOOD, now=T0 + 120)
    assert right.ok and right.user is not None
    user = store.get_user("tanaka")
    assert user is not None and (user.last_login_at, user.last_login_address) == (T0 + 60, "192.0.2.10")
    # a left-open session is no oracle: three wrong guesses lock the account as three failed logins would
    assert store.confirm_password("tanaka", "bad-1", now=T0 + 121).reason == "bad_credentials"
    assert store.confirm_password("tanaka", "bad-2", now=T0 + 122).reason == "bad_credentials"
    third = store.confirm_password("tanaka", "bad-3", now=T0 + 123)
    assert (third.reason, third.locked_now) == ("locked", True)
    assert store.confirm_password("tanaka", GOOD, now=T0 + 124).reason == "locked"
    assert store.authenticate("tanaka", GOOD, address="192.0.2.10", now=T0 + 125).reason == "locked"


def test_unknown_user_answers_like_a_wrong_password_and_costs_a_verification(
    tmp_path: Path, web_config: WebConfig
) -> None:
    hasher = CountingHasher()
    store = AccountStore(tmp_path, web_config, hasher=hasher)
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    hasher.verified = 0
    unknown = store.authenticate("nobody", GOOD, address="192.0.2.1", now=T0)
    assert hasher.verified == 1
    wrong = store.authenticate("tanaka", OTHER, address="192.0.2.1", now=T0)
    assert hasher.verified == 2
    assert unknown == wrong == AuthResult(ok=False, reason="bad_credentials")


def test_lockout_after_n_failures_and_release_after_m_minutes(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    a = "192.0.2.66"
    assert store.authenticate("tanaka", "bad-1", address=a, now=T0).reason == "bad_credentials"
    assert store.authenticate("tanaka", "bad-2", address=a, now=T0 + 1).reason == "bad_credentials"
    third = store.authenticate("tanaka", "bad-3", address=a, now=T0 + 2)
    assert (third.reason, third.locked_now, third.locked_until) == ("locked", True, T0 + 2 + 15 * 60)
    # locked: even the right password is refused, and the lockout is not started again
    during = store.authenticate("tanaka", GOOD, address=a, now=T0 + 2 + 15 * 60 - 1)
    assert (during.ok, during.reason, during.locked_now, during.locked_until) == (
        False,
        "locked",
        False,
        T0 + 2 + 15 * 60,
    )
    user = store.get_user("tanaka")
    assert user is not None and user.locked(T0 + 100) and not user.locked(T0 + 2 + 15 * 60)
    after = store.authenticate("tanaka", GOOD, address="192.0.2.10", now=T0 + 2 + 15 * 60)
    assert after.ok and after.failures_since_last_login == 4
    released = store.get_user("tanaka")
    assert released is not None and released.locked_until is None


def test_a_success_resets_the_consecutive_count(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    for t in (1, 2):
        store.authenticate("tanaka", "bad", address="a", now=T0 + t)
    assert store.authenticate("tanaka", GOOD, address="a", now=T0 + 3).ok
    for t in (4, 5):
        assert store.authenticate("tanaka", "bad", address="a", now=T0 + t).reason == "bad_credentials"
    assert store.authenticate("tanaka", GOOD, address="a", now=T0 + 6).ok


def test_after_a_lockout_ends_the_count_starts_again(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    for t in range(3):
        store.authenticate("tanaka", "bad", address="a", now=T0 + t)
    later = T0 + 3600
    assert store.authenticate("tanaka", "bad", address="a", now=later).reason == "bad_credentials"
    assert store.authenticate("tanaka", "bad", address="a", now=later + 1).reason == "bad_credentials"
    assert store.authenticate("tanaka", "bad", address="a", now=later + 2).locked_now


def test_unlock_ends_the_lockout(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    for t in range(3):
        store.authenticate("tanaka", "bad", address="a", now=T0 + t)
    assert store.unlock("tanaka").locked_until is None
    assert store.authenticate("tanaka", GOOD, address="a", now=T0 + 10).ok
    with pytest.raises(UnknownUser) as exc:
        store.unlock("nobody")
    assert str(exc.value) == "user nobody: no such user, got 'nobody'"


def test_failures_from_many_threads_all_count(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    results = []

    def attempt() -> None:
        results.append(store.authenticate("tanaka", "bad", address="a", now=T0))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.locked_now for r in results) == 1  # exactly one attempt started the lockout
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT failures_since_login FROM users").fetchone()[0] == 8


def test_disabled_account(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    store.add_user("sato", Role.VIEWER, OTHER, now=T0)
    store.set_disabled("sato", True)
    assert store.authenticate("sato", OTHER, address="a", now=T0).reason == "disabled"
    assert store.authenticate("sato", GOOD, address="a", now=T0).reason == "bad_credentials"


def test_privileged_passwords_expire_viewers_do_not(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    store.add_user("ito", Role.TECHNICIAN, GOOD + "x", now=T0)
    store.add_user("sato", Role.VIEWER, OTHER, now=T0)
    almost, due = T0 + 182 * DAY - 1, T0 + 182 * DAY
    assert not store.authenticate("tanaka", GOOD, address="a", now=almost).password_expired
    assert store.authenticate("tanaka", GOOD, address="a", now=due).password_expired
    assert store.authenticate("ito", GOOD + "x", address="a", now=due).password_expired
    assert not store.authenticate("sato", OTHER, address="a", now=T0 + 3650 * DAY).password_expired
    store.set_password("tanaka", OTHER, now=due)
    assert not store.authenticate("tanaka", OTHER, address="a", now=due + 1).password_expired


def test_set_password_checks_policy_and_refuses_the_current_one(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0, must_change=True)
    with pytest.raises(PasswordRejected) as same:
        store.set_password("tanaka", GOOD, now=T0 + 1)
    assert same.value.reasons == ("password.same_as_current",)
    with pytest.raises(PasswordRejected) as short:
        store.set_password("tanaka", "tanaka", now=T0 + 1)
    assert short.value.reasons == ("password.too_short", "password.contains_name")
    user = store.set_password("tanaka", OTHER, now=T0 + 5)
    assert user.password_changed_at == T0 + 5 and not user.must_change
    assert store.authenticate("tanaka", OTHER, address="a", now=T0 + 6).ok
    assert store.set_password("tanaka", GOOD, now=T0 + 7, must_change=True).must_change  # an admin's reset
    with pytest.raises(UnknownUser):
        store.set_password("nobody", GOOD, now=T0)


def test_roles_language_removal_and_the_last_admin(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    store.add_user("sato", Role.VIEWER, OTHER, now=T0)
    with pytest.raises(LastAdmin) as exc:
        store.set_role("tanaka", Role.VIEWER)
    assert str(exc.value) == (
        "user tanaka: is the only admin, got a change that would leave none; add another admin first"
    )
    with pytest.raises(LastAdmin):
        store.remove_user("tanaka")
    assert store.set_role("sato", Role.ADMIN).role is Role.ADMIN
    assert store.set_role("tanaka", Role.TECHNICIAN).role is Role.TECHNICIAN
    assert store.set_language("sato", "en").language == "en"
    store.remove_user("tanaka")
    assert store.get_user("tanaka") is None
    with pytest.raises(UnknownUser):
        store.remove_user("tanaka")


def test_login_rehashes_when_the_parameters_were_raised(tmp_path: Path, web_config: WebConfig) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    AccountStore(tmp_path, web_config, hasher=weak).add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert AccountStore(tmp_path, web_config, hasher=stronger).authenticate("tanaka", GOOD, address="a", now=T0).ok
    with sqlite3.connect(tmp_path / "accounts.db") as db:
        (h,) = db.execute("SELECT password_hash FROM users").fetchone()
    assert "m=16,t=2,p=1" in h


def test_setup_token_creates_the_first_admin_once(store: AccountStore) -> None:
    token = store.create_setup_token(now=T0)
    assert len(token) >= 40
    assert token.encode() not in store.path.read_bytes()  # stored hashed
    assert store.setup_token_valid(token, now=T0 + 10)
    assert not store.setup_token_valid("guess", now=T0 + 10)
    user = store.use_setup_token(token, "tanaka", GOOD, now=T0 + 10)
    assert user.role is Role.ADMIN and not user.must_change
    assert not store.setup_token_valid(token, now=T0 + 11)
    with pytest.raises(SetupRefused) as again:
        store.use_setup_token(token, "sato", OTHER, now=T0 + 11)
    assert again.value.key == "setup.admin_exists"
    with pytest.raises(SetupRefused) as exc:
        store.create_setup_token(now=T0 + 12)
    assert exc.value.key == "setup.admin_exists"


def test_setup_token_expires_and_checks_the_password(store: AccountStore) -> None:
    token = store.create_setup_token(now=T0, ttl_s=3600)
    with pytest.raises(PasswordRejected):
        store.use_setup_token(token, "tanaka", "short", now=T0 + 1)
    assert store.setup_token_valid(token, now=T0 + 3599)  # a refused password does not spend the link
    assert not store.setup_token_valid(token, now=T0 + 3600)
    with pytest.raises(SetupRefused) as exc:
        store.use_setup_token(token, "tanaka", GOOD, now=T0 + 3600)
    assert exc.value.key == "setup.invalid"
    assert str(exc.value) == (
        "setup link: unknown, used or expired, got a link that cannot be used; "
        "make a new one with `edgegw user setup-link`"
    )
    assert not store.has_admin()


def test_a_wrong_setup_token_is_refused_while_a_valid_link_exists(store: AccountStore) -> None:
    token = store.create_setup_token(now=T0)
    for guess in ("guess", token[:-1], token + "x", ""):
        with pytest.raises(SetupRefused) as exc:
            store.use_setup_token(guess, "mallory", GOOD, now=T0 + 10)
        assert exc.value.key == "setup.invalid"
    assert store.list_users() == [] and not store.has_admin()
    assert store.setup_token_valid(token, now=T0 + 11)  # the guesses did not spend the real link
    assert store.use_setup_token(token, "tanaka", GOOD, now=T0 + 11).role is Role.ADMIN


def test_a_wrong_setup_token_is_refused_before_its_password_takes_a_hash_slot(store: AccountStore) -> None:
    store.create_setup_token(now=T0)
    for _ in range(HASH_SLOTS):  # every Argon2 slot busy, as under a burst of logins
        assert store._hash_slots.acquire(blocking=False)
    pool = ThreadPoolExecutor(1)
    try:
        guess = pool.submit(store.use_setup_token, "guess", "mallory", GOOD, now=T0 + 10)
        with pytest.raises(SetupRefused) as exc:
            guess.result(timeout=5)  # waiting for a slot would time out here instead
        assert exc.value.key == "setup.invalid"
    finally:
        for _ in range(HASH_SLOTS):
            store._hash_slots.release()
        pool.shutdown()


def test_any_admin_refuses_the_setup_link(store: AccountStore) -> None:
    token = store.create_setup_token(now=T0)
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    assert not store.setup_token_valid(token, now=T0 + 1)
    with pytest.raises(SetupRefused) as exc:
        store.use_setup_token(token, "sato", OTHER, now=T0 + 1)
    assert exc.value.key == "setup.admin_exists"


def test_login_name_is_matched_whatever_its_case(store: AccountStore) -> None:
    store.add_user("Tanaka", Role.ADMIN, GOOD, now=T0)
    result = store.authenticate("tanaka", GOOD, address="a", now=T0)
    assert result.ok and result.user is not None and result.user.name == "Tanaka"
    for t in range(3):
        store.authenticate("TANAKA", "bad", address="a", now=T0 + t)
    locked = store.get_user("Tanaka")
    assert locked is not None and locked.locked(T0 + 10)


def test_opening_a_new_file_from_many_threads_migrates_it_once(
    tmp_path: Path, web_config: WebConfig, cheap_hasher: PasswordHasher
) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            AccountStore(tmp_path, web_config, hasher=cheap_hasher)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AccountStore(tmp_path, web_config, hasher=cheap_hasher).schema_version() == SCHEMA_VERSION


@settings(max_examples=15, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0, max_value=20 * 60, allow_nan=False)), min_size=1, max_size=14
    )
)
def test_lockout_follows_its_model(steps: list[tuple[bool, float]]) -> None:
    """Against a model written from the rules: N consecutive failures lock for M minutes; success resets."""
    config = WebConfig(lockout_failures=3, lockout_minutes=15)
    with tempfile.TemporaryDirectory() as d:
        store = AccountStore(Path(d), config, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
        now, streak, locked_until, failures = T0, 0, None, 0
        for right, wait in steps:
            now += wait
            result = store.authenticate("tanaka", GOOD if right else "wrong", address="a", now=now)
            if locked_until is not None and now < locked_until:
                failures += 1
                assert (result.reason, result.locked_now, result.locked_until) == ("locked", False, locked_until)
            elif right:
                assert result.ok and result.failures_since_last_login == failures
                streak, locked_until, failures = 0, None, 0
            else:
                failures += 1
                streak += 1
                if streak == 3:
                    streak, locked_until = 0, now + 15 * 60
                    assert (result.reason, result.locked_now, result.locked_until) == ("locked", True, locked_until)
                else:
                    assert (result.reason, result.locked_now) == ("bad_credentials", False)

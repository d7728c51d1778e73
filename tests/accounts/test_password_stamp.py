"""`password_changed_at` as the stamp web sessions are checked against: a login proves only the password that is
current when the login is recorded, and hands back that password's stamp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher

from gateway.accounts.store import AccountStore, AuthResult, Role
from gateway.web.config import WebConfig

from .conftest import T0

GOOD = "river-gauge-cabinet-7"
OTHER = "library-counter-blue-9"


class ChangedWhileVerifying(PasswordHasher):
    """Real Argon2id; right after the next verification, `change` runs (the admin's CLI, in its own process)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.change: Callable[[], object] | None = None

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        try:
            return super().verify(hash, password)
        finally:
            change, self.change = self.change, None
            if change is not None:
                change()


def test_a_login_verified_while_the_password_changed_is_refused(
    tmp_path: Path, web_config: WebConfig, cheap_hasher: PasswordHasher
) -> None:
    hasher = ChangedWhileVerifying()
    web = AccountStore(tmp_path, web_config, hasher=hasher)
    cli = AccountStore(tmp_path, web_config, hasher=cheap_hasher)  # another process's store on the same file
    web.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    hasher.change = lambda: cli.set_password("tanaka", OTHER, now=T0 + 60)

    result = web.authenticate("tanaka", GOOD, address="10.0.0.9", now=T0 + 61)

    assert result == AuthResult(ok=False, reason="bad_credentials")
    user = web.get_user("tanaka")
    assert user is not None and user.last_login_at is None and user.password_changed_at == T0 + 60
    ok = web.authenticate("tanaka", OTHER, address="10.0.0.9", now=T0 + 62)
    assert ok.ok and ok.user is not None and ok.user.password_changed_at == T0 + 60
    assert ok.failures_since_last_login == 1  # the old password counted like any wrong one


def test_a_successful_login_returns_the_stamp_of_the_password_it_proved(store: AccountStore) -> None:
    store.add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    store.set_password("tanaka", OTHER, now=T0 + 5)
    result = store.authenticate("tanaka", OTHER, address="a", now=T0 + 6)
    assert result.ok and result.user is not None and result.user.password_changed_at == T0 + 5

"""Shared pieces of the account tests: a cheap Argon2id hasher (the real profile is tested once) and a store."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts.store import AccountStore
from gateway.web.config import WebConfig

T0 = 1_796_000_000.0  # 2026-11-30 09:53:20 JST; any fixed epoch: the clock is injected


@pytest.fixture
def cheap_hasher() -> PasswordHasher:
    # Argon2id all the same, with the smallest cost: the tests hash hundreds of passwords
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def web_config() -> WebConfig:
    return WebConfig(lockout_failures=3, lockout_minutes=15, password_min_length=12, password_max_age_days=182)


@pytest.fixture
def store(tmp_path: Path, web_config: WebConfig, cheap_hasher: PasswordHasher) -> AccountStore:
    return AccountStore(tmp_path / "web", web_config, hasher=cheap_hasher)

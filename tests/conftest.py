"""Shared fixtures: real peers (mosquitto, the strict Orion double) live in tests/support."""

from collections.abc import Iterator

import pytest

from gateway import redact

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.orion_double",
    "tests.support.tmpfs",
    "tests.support.iot_agent",
    "tests.support.javascript",
]


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    """The redactor is process-wide: a secret one test registered (a password "wrong") must not mask the
    words another test asserts."""
    yield
    redact.clear()

"""Shared fixtures: real peers (mosquitto, the strict Orion double) live in tests/support."""

import logging
from collections.abc import Iterator

import pytest

from gateway import logs, redact

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


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """`logs.setup` (a gateway or UI started in-process) sets the root logger's level and handlers for the
    process: put them back, so a test's INFO lines never reach the next test's caplog (nor its log ring)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    logs.RING.records.clear()  # the control socket's log ring is process-wide too

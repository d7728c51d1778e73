"""Shared fixtures: real peers (mosquitto, the strict Orion double) live in tests/support."""

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest
import uvloop
from hypothesis import settings

from gateway import logs, redact

# No per-example deadline: on a loaded 2-core CI runner one example of a 0.1 ms codec test was seen to stall
# 64-95 ms, a third of hypothesis's 250 ms limit, for scheduling alone. A test's own @settings(max_examples=…)
# keeps this; the tests that guard a speed measure it themselves.
settings.register_profile("edgegw", deadline=None)
settings.load_profile("edgegw")

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.orion_double",
    "tests.support.tmpfs",
    "tests.support.iot_agent",
    "tests.support.javascript",
    "tests.support.crash_report",
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


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked `both_loops` run twice: on asyncio's own loop and on uvloop's, the one `edgegw run`
    runs on (gateway/eventloop.py); the rest run on asyncio's. The mark goes on the modules whose code
    leans on the loop's transports, timers and thread hand-offs, where the two loops differ in timing."""
    if item.get_closest_marker("both_loops") is None:
        return {"asyncio": asyncio.new_event_loop}  # one factory: the test's name stays as it was
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

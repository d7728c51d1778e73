"""StateLog: a failure is logged when it starts or changes, not when it repeats; the return once."""

from __future__ import annotations

import logging

import pytest

from gateway.logs import StateLog, component_logger


def test_a_spell_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.state")
    state = StateLog(component_logger("tests.state", "river-portal"))
    assert (state.failing, state.state) == (False, None)
    assert state.ok("never failed") is False
    assert state.fail("timeout", logging.WARNING, "polling fails (%s)", "timeout") is True
    assert state.fail("timeout", logging.WARNING, "polling fails (%s)", "timeout") is False
    assert state.fail("http_5xx", logging.ERROR, "polling fails (%s)", "http_5xx") is True
    assert (state.failing, state.state) == (True, "http_5xx")
    assert state.ok("polling works again after %d tries", 3) is True
    assert state.ok("polling works again") is False
    assert state.fail("timeout", logging.WARNING, "polling fails (%s)", "timeout") is True
    assert state.ok() is True  # silently
    assert [(r.levelname, r.getMessage(), getattr(r, "component", None)) for r in caplog.records] == [
        ("WARNING", "polling fails (timeout)", "river-portal"),
        ("ERROR", "polling fails (http_5xx)", "river-portal"),
        ("INFO", "polling works again after 3 tries", "river-portal"),
        ("WARNING", "polling fails (timeout)", "river-portal"),
    ]

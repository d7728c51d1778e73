"""What the refusal-spell tests read from the journal (gateway/web/refusals.py)."""

from __future__ import annotations

import logging

import pytest


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every WARNING (or worse) line logged, as the journal shows it."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

"""The command listener's running totals, which its answer publisher adds to as well; for metrics."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CommandListenerCounters"]


@dataclass(slots=True)
class CommandListenerCounters:
    """Running totals for metrics."""

    received: int = 0  # messages on the command topics
    commands: int = 0  # commands handed to dispatch
    ok: int = 0
    failed: int = 0  # error results, whatever the cause
    malformed: int = 0
    unknown_device: int = 0
    stale: int = 0  # retained messages ignored
    busy: int = 0  # refused because too many commands were in progress
    unanswered: int = 0  # busy or malformed, and no result sent: REFUSAL_REPLIES results were waiting already
    results_published: int = 0
    results_lost: int = 0  # not acknowledged in time, or refused by the broker
    results_shortened: int = 0  # sent again smaller (cut, or without text): too large for the broker
    results_too_large: int = 0  # of results_lost: too large for the broker even without any text
    reconnects: int = 0

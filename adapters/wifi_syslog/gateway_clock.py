"""The syslog receiver's words in `gateway.device_clock.GatewayClock`'s log lines (the rule is shared with the
RADIUS server, which words its own): association events and APs."""

from __future__ import annotations

from gateway.device_clock import ClockWords

__all__ = ["WORDS"]

WORDS = ClockWords(
    where="wifi syslog",
    sender="",
    dated="dated an association event",
    kept="the AP's time",
    otherwise="device times more than a day off it are replaced by the arrival time",
)

"""Login attempts per client address: a sliding one-minute window, so one address cannot try many accounts."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["AddressThrottle"]

WINDOW_S = 60.0
# bound the memory a scan from many addresses can take: idle addresses are forgotten beyond this many
MAX_ADDRESSES = 10_000


class AddressThrottle:
    """At most `per_minute` attempts per address in any 60 s; `allow` counts the attempt when it allows it."""

    def __init__(self, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError(f"AddressThrottle.per_minute: must be at least 1, got {per_minute}")
        self.per_minute = per_minute
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, address: str, now: float) -> bool:
        with self._lock:
            times = self._attempts.get(address)
            if times is None:
                if len(self._attempts) >= MAX_ADDRESSES:
                    self._forget_idle(now)
                times = self._attempts[address] = deque()
            while times and times[0] <= now - WINDOW_S:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until `address` may try again (0 when it may now)."""
        with self._lock:
            times = self._attempts.get(address)
            if not times or len(times) < self.per_minute:
                return 0.0
            return max(0.0, times[-self.per_minute] + WINDOW_S - now)

    def _forget_idle(self, now: float) -> None:
        idle = [a for a, t in self._attempts.items() if not t or t[-1] <= now - WINDOW_S]
        for address in idle:
            del self._attempts[address]
        if len(self._attempts) >= MAX_ADDRESSES:  # all busy: a flood; drop the oldest half rather than grow
            for address in list(self._attempts)[: MAX_ADDRESSES // 2]:
                del self._attempts[address]

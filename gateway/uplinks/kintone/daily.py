"""The app's daily request count as kintone keeps it: reset at 09:00 JST (00:00 UTC), kept across restarts.

kintone counts requests per app and day and does not refuse those past the limit (it mails the
store administrator, and may restrict the environment), so the gateway counts its own and holds
back at its share (`daily_request_limit`). The count is saved every `SAVE_EVERY` requests and on
close: after a power cut the gateway may under-count by that many, never lose the day's count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

SAVE_EVERY = 20


def kintone_day(now: datetime) -> str:
    """The counting day `now` falls in: 09:00 JST to 08:59 JST is one UTC date."""
    return now.astimezone(UTC).date().isoformat()


def next_reset(now: datetime) -> datetime:
    """When the count resets after `now` (09:00 JST = 00:00 UTC)."""
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class DailyCounter:
    def __init__(self, limit: int, path: Path | None, now: Callable[[], datetime]) -> None:
        self.limit = limit
        self._path = path
        self._now = now
        self._day = kintone_day(now())
        self._count = 0
        self._unsaved = 0
        self._load()

    def _load(self) -> None:
        if self._path is None:
            return
        try:
            doc = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return  # no file yet, or a torn one: count from zero
        if isinstance(doc, dict) and doc.get("day") == self._day and isinstance(doc.get("requests"), int):
            self._count = doc["requests"]

    def _roll(self) -> None:
        day = kintone_day(self._now())
        if day != self._day:
            self._day, self._count = day, 0

    @property
    def today(self) -> int:
        self._roll()
        return self._count

    def left(self) -> int:
        return max(0, self.limit - self.today)

    def resets_at(self) -> datetime:
        return next_reset(self._now())

    def count(self) -> None:
        self._roll()
        self._count += 1
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        if self._path is None or not self._unsaved:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"day": self._day, "requests": self._count}))
        os.replace(tmp, self._path)
        self._unsaved = 0

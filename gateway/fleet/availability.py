"""The daily availability figure: how much of each day (Asia/Tokyo) the gateway ran and its uplinks delivered.

Theory of operation. The fleet service calls `note(now, delivering)` on every tick. The time since
the previous note counts as "up" when the gap is at most `max_gap_s` (a longer gap is a stop, a
crash or a power cut: down), and as "delivering" too when no uplink was failing (backing off or
refused since its last delivery) at both ends. Seconds are split at local midnight, so a day's figure is exact
whatever the tick. The state is a small JSON file: a restart keeps the day's counts, and the gap
across the restart is counted down. The service writes it (atomically, synced) at most every
SAVE_EVERY_S and at a stop, so a kill -9 or a power cut loses at most that much of the figure;
more often would wear an SD card for little. The platform computes its 99.5 % from `uptime_percent` of
whole days (`delivering_percent` is stricter: data reached the platform).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.storage.files import write_atomic

__all__ = ["AVAILABILITY_FILE", "Availability", "DayFigure"]

AVAILABILITY_FILE = "availability.json"
TOKYO = ZoneInfo("Asia/Tokyo")
DAY_S = 86_400.0
KEEP_DAYS = 40
SAVE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DayFigure:
    day: str  # YYYY-MM-DD, Asia/Tokyo
    uptime_percent: float
    delivering_percent: float

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "uptimePercent": self.uptime_percent, "deliveringPercent": self.delivering_percent}


class Availability:
    def __init__(self, path: Path | None, *, max_gap_s: float) -> None:
        self.path = path
        self.max_gap_s = max_gap_s
        self.days: dict[str, list[float]] = {}  # day -> [up_s, delivering_s]
        self.last: float | None = None
        self.last_delivering = False
        self.saved_at: float | None = None  # the `now` of the last write (the service's clock)
        if path is not None:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                self.days = {k: [float(v[0]), float(v[1])] for k, v in doc["days"].items()}
                self.last = float(doc["last"]) if doc.get("last") is not None else None
                self.last_delivering = bool(doc.get("last_delivering", False))
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                pass  # a first start, or a damaged file: counting starts again (the days before are lost)

    def note(self, now: float, delivering: bool) -> None:
        if self.last is not None and 0 < now - self.last <= self.max_gap_s:
            both = delivering and self.last_delivering
            for day, seconds in _split(self.last, now):
                counts = self.days.setdefault(day, [0.0, 0.0])
                counts[0] += seconds
                if both:
                    counts[1] += seconds
        self.last = now
        self.last_delivering = delivering
        self._trim(now)

    def _trim(self, now: float) -> None:
        oldest = (datetime.fromtimestamp(now, TOKYO).date() - timedelta(days=KEEP_DAYS)).isoformat()
        for day in [d for d in self.days if d < oldest]:
            del self.days[day]

    def figure(self, day: date) -> DayFigure:
        up, delivering = self.days.get(day.isoformat(), [0.0, 0.0])
        return DayFigure(
            day=day.isoformat(),
            uptime_percent=round(100.0 * min(up, DAY_S) / DAY_S, 3),
            delivering_percent=round(100.0 * min(delivering, DAY_S) / DAY_S, 3),
        )

    def yesterday(self, now: float) -> DayFigure:
        return self.figure(datetime.fromtimestamp(now, TOKYO).date() - timedelta(days=1))

    def due(self, now: float) -> bool:
        """Whether the figure should be written now: SAVE_EVERY_S since the last write (or the clock went back)."""
        return self.saved_at is None or not 0 <= now - self.saved_at < SAVE_EVERY_S

    def dump(self) -> bytes:
        """The state as the file holds it; taken where `note` runs, so a write in a thread sees one tick's counts."""
        return json.dumps({"days": self.days, "last": self.last, "last_delivering": self.last_delivering}).encode()

    def write(self, data: bytes) -> None:
        """Replace the file with `dump()`'s `data`: atomic and synced (blocking: the service calls it in a thread)."""
        if self.path is not None:
            write_atomic(self.path, data, None, durable=True)

    def save(self) -> None:
        self.write(self.dump())


def _split(start: float, end: float) -> list[tuple[str, float]]:
    """(local day, seconds) of [start, end), split at Asia/Tokyo midnights."""
    out = []
    t = start
    while t < end:
        local = datetime.fromtimestamp(t, TOKYO)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), TOKYO).timestamp()
        stop = min(end, midnight)
        out.append((local.date().isoformat(), stop - t))
        t = stop
    return out

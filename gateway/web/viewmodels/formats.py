"""Numbers as a person reads them on a page: durations in the user's language, sizes, percentages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Translate", "duration", "percent_text", "size"]

Translate = Callable[..., str]  # the render context's t(key, **kw)


def duration(seconds: float | None, t: Translate) -> str:
    """`3 min 20 s` / `3分20秒`: the two largest units, whole numbers; "—" when unknown."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return t("fmt.days_hours", days=days, hours=hours)
    if hours:
        return t("fmt.hours_minutes", hours=hours, minutes=minutes)
    if minutes:
        return t("fmt.minutes_seconds", minutes=minutes, seconds=s)
    return t("fmt.seconds", seconds=s)


_UNITS = ("B", "KB", "MB", "GB", "TB")


def size(n: float | None) -> str:
    """Bytes in binary multiples with SI-looking names, as `df -h` shows them: 1.5 GB."""
    if n is None:
        return "—"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # not reached: the loop returns at the last unit


def percent_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} %"


def number(value: Any) -> str:
    """Counts with thousands separators; other numbers with two decimals (a load average: 0.42)."""
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.2f}"

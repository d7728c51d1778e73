"""The logs page's filter: minimum level and component prefix over the control socket's `logs` lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LEVELS", "LogLine", "components", "filter_lines", "parse_level"]

LEVELS = ("debug", "info", "warning", "error", "critical")
_RANK = {name: i for i, name in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    time: float | str | None
    level: str
    component: str
    message: str


def parse_level(value: str) -> str:
    """The `level` query parameter; unknown values mean `info` (the ring buffer's default)."""
    value = value.strip().lower()
    return "warning" if value == "warn" else value if value in _RANK else "info"


def _line(doc: Mapping[str, Any]) -> LogLine:
    t = doc.get("time")
    return LogLine(
        time=t if isinstance(t, int | float | str) and not isinstance(t, bool) else None,
        level=str(doc.get("level") or "").lower(),
        component=str(doc.get("component") or ""),
        message=str(doc.get("message") or ""),
    )


def filter_lines(lines: Iterable[Mapping[str, Any]], *, level: str = "info", component: str = "") -> list[LogLine]:
    """Lines at `level` or above whose component is `component` or below it (`adapters.modbus` under `adapters`)."""
    floor = _RANK[parse_level(level)]
    component = component.strip()
    out = []
    for line in map(_line, lines):
        if _RANK.get("warning" if line.level == "warn" else line.level, len(LEVELS)) < floor:
            continue
        if component and not (line.component == component or line.component.startswith(component + ".")):
            continue
        out.append(line)
    return out


def components(lines: Iterable[LogLine]) -> list[str]:
    """The components present, for the filter's choices."""
    return sorted({line.component for line in lines if line.component})

"""Crash loops: N restarts within M seconds, of an adapter or of the gateway process, and safe mode.

Pure bookkeeping with injected time. `RestartWindow` counts restarts seen within the window.
`ProcessStarts` keeps `<data_dir>/starts.json`: each process start adds its pid and time and a
clean stop removes it, so what stays are starts after a crash, a kill or a power cut; N of them
within the window mean the gateway itself is looping, and the next start runs no adapter at all
(the uplinks keep draining the buffer). Safe mode ends when the window has passed without a crash
(the next reload or start) or when an operator clears it (`edgegw` control op `fleet.safe_mode.clear`).
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

__all__ = ["STARTS_FILE", "ProcessStarts", "RestartWindow"]

STARTS_FILE = "starts.json"


class RestartWindow:
    def __init__(self, restarts: int, within_s: float) -> None:
        self.restarts = restarts
        self.within_s = within_s
        self._seen: dict[str, int] = {}
        self._times: dict[str, deque[float]] = {}

    def note(self, name: str, restarts: int, now: float) -> bool:
        """`restarts`: the adapter's restart count so far. True when it is looping."""
        new = restarts - self._seen.get(name, 0)
        self._seen[name] = restarts
        times = self._times.setdefault(name, deque())
        times.extend([now] * max(0, new))
        while times and now - times[0] > self.within_s:
            times.popleft()
        return len(times) >= self.restarts


class ProcessStarts:
    def __init__(self, data_dir: Path, restarts: int, within_s: float) -> None:
        self.path = data_dir / STARTS_FILE
        self.restarts = restarts
        self.within_s = within_s

    def _read(self) -> list[dict[str, float]]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return [e for e in doc if isinstance(e, dict) and "pid" in e and "at" in e]
        except (OSError, ValueError, TypeError):
            return []

    def _write(self, entries: list[dict[str, float]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(entries), encoding="utf-8")
        os.replace(tmp, self.path)

    def started(self, now: float, pid: int) -> bool:
        """Record this start; True when the starts not followed by a clean stop make a crash loop."""
        entries = [e for e in self._read() if now - e["at"] <= self.within_s and e["pid"] != pid]
        looping = len(entries) + 1 >= self.restarts
        self._write([*entries, {"pid": pid, "at": now}])
        return looping

    def stopped_cleanly(self, pid: int) -> None:
        self._write([e for e in self._read() if e["pid"] != pid])

    def clear(self) -> None:
        self._write([])

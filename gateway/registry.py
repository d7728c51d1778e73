"""Looks up adapter and uplink classes by the `type` a config section names.

Families register through entry points in pyproject.toml (`edgegw.adapters`, `edgegw.uplinks`),
so adding a device family is one module and one line.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

ADAPTER_GROUP = "edgegw.adapters"
UPLINK_GROUP = "edgegw.uplinks"


@cache
def _names(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def available(group: str) -> list[str]:
    return sorted(_names(group))


def load(group: str, name: str) -> Any:
    """The registered class, or KeyError naming the valid choices."""
    ep = _names(group).get(name)
    if ep is None:
        raise KeyError(f"unknown type, got {name!r}; valid: {', '.join(available(group))}")
    return ep.load()

"""The entry points pyproject.toml declares, for tests: the installed metadata is only as new as the last install."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared_entry_points(group: str) -> list[EntryPoint]:
    """`[project.entry-points."<group>"]` of this checkout's pyproject.toml, as importlib.metadata gives them."""
    with PYPROJECT.open("rb") as f:
        table = tomllib.load(f)["project"].get("entry-points", {}).get(group, {})
    return [EntryPoint(name=name, value=value, group=group) for name, value in table.items()]

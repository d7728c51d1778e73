"""The entry points pyproject.toml declares, for tests: the installed metadata is only as new as the last install."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from gateway import registry

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared_entry_points(group: str) -> list[EntryPoint]:
    """`[project.entry-points."<group>"]` of this checkout's pyproject.toml, as importlib.metadata gives them."""
    with PYPROJECT.open("rb") as f:
        table = tomllib.load(f)["project"].get("entry-points", {}).get(group, {})
    return [EntryPoint(name=name, value=value, group=group) for name, value in table.items()]


def add_test_family(monkeypatch: pytest.MonkeyPatch, name: str, family: Any) -> None:
    """`type = "<name>"` in a test's config makes an adapter of `family`; every other type loads as ever."""
    load = registry.load

    def with_test_family(group: str, requested: str) -> Any:
        return family if requested == name else load(group, requested)

    monkeypatch.setattr(registry, "load", with_test_family)

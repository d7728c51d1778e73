"""The runtime speaks MQTT through gateway.mqtt only: paho and aiomqtt are test peers, not dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
FOREIGN = ("paho", "aiomqtt")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            names.add(node.module)
    return names


def test_no_runtime_module_imports_another_mqtt_client() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for package in ("gateway", "adapters")
        for path in (ROOT / package).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in FOREIGN
    )
    assert offenders == []

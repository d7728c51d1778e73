"""`python -m gateway` with the scanner family registered, for e2e tests run before the editable install is refreshed."""

from __future__ import annotations

import sys
from typing import Any

from adapters.scanner.adapter import ScannerAdapter
from gateway import registry
from gateway.cli import main

_load = registry.load


def _with_scanner(group: str, name: str) -> Any:
    return ScannerAdapter if (group, name) == (registry.ADAPTER_GROUP, "scanner") else _load(group, name)


registry.load = _with_scanner  # the one place a test family is added, as tests/uplinks do with monkeypatch

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

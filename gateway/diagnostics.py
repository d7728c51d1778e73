"""Reads a component's optional `diagnostics()` for the status document, never letting it fail the status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.adapter_api import Diagnosable
from gateway.logs import StateLog


class DiagnosticsReader:
    """One per adapter or uplink: a `diagnostics()` that raises, or returns something other than a mapping (a
    family's bug), is logged once per failing spell and shows as `{"error": …}` in the status instead."""

    def __init__(
        self, kind: str, component: object, log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> None:
        self._kind = kind  # "adapter" or "uplink", for the log line
        self._component = component
        self._failed = StateLog(log)

    def read(self) -> dict[str, Any]:
        if not isinstance(self._component, Diagnosable):
            return {}
        try:
            diagnostics = self._component.diagnostics()
        except Exception as exc:  # the status of every other component must still be written
            self._failed.fail(
                True,
                logging.WARNING,
                "%s diagnostics failed: %s: %s",
                self._kind,
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return {"error": f"diagnostics() failed: {type(exc).__name__}: {exc}"}
        if not isinstance(diagnostics, Mapping):
            # the status reads keys from it (`malformed`): a list here ended the status loop, and the gateway
            error = f"diagnostics() returned {type(diagnostics).__name__}, not a dict"
            self._failed.fail(error, logging.WARNING, "%s %s; its status shows that error instead", self._kind, error)
            return {"error": error}
        self._failed.ok()  # silently: the failure said the status lacks them, their return needs no line
        return dict(diagnostics)

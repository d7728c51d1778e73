"""Where each locker adapter's `grid` command goes, found in the control socket's `latest` answer.

The staff page, the kiosk and `edgegw locker status/open` read the compartments from the adapters' own grids (the
latest values are the processed readings, which a `[[processing]]` rename of `compartmentLabel` leaves without a
label), and need one compartment entity of each locker adapter to send that command to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["COMPARTMENT_TYPE", "LATEST_COMPARTMENTS", "grid_targets"]

COMPARTMENT_TYPE: Final = "LockerCompartment"
# the `latest` op's filter is a substring of the entity id, type or adapter: it narrows a big gateway's answer
# (milliseconds instead of seconds at 100k entities); grid_targets checks the exact type
LATEST_COMPARTMENTS: Final[dict[str, Any]] = {"filter": COMPARTMENT_TYPE, "limit": 100_000}


def grid_targets(latest: Any) -> dict[str, str]:
    """Locker adapter name → one of its compartments' entity ids, from a `latest` answer (anything else: none)."""
    targets: dict[str, str] = {}
    if isinstance(latest, Mapping):
        for e in latest.get("entities") or []:
            if isinstance(e, Mapping) and e.get("entity_type") == COMPARTMENT_TYPE:
                targets.setdefault(str(e.get("adapter")), str(e.get("entity_id")))
    return targets

"""The paths of an `os.rename` audit event, whole: for the audit hooks of tests that act at one rename.

The restore's swap renames relative to held directory descriptors (no path that a planted link could
redirect), so the event carries a bare name and the descriptor (-1 when none), not the full path.
"""

from __future__ import annotations

import os
from typing import Any


def renamed(args: tuple[Any, ...], end: int) -> str:
    """`end` 0: the source of the rename, 1: its target, as a full path."""
    name, fd = os.fspath(args[end]), args[2 + end]
    return os.path.join(os.readlink(f"/proc/self/fd/{fd}"), name) if fd is not None and fd >= 0 else name

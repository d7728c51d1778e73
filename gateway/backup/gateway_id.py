"""A backup's config with this box's `gateway.id` written in: `restore --force` keeps the box's id.

The config is the technician's text (comments, order, spacing), so the one `id` line of `[gateway]`
(or a top-level `gateway.id = …`) gets the new value and nothing else is touched. The result is
parsed again and must differ from the original in `gateway.id` alone; a config the rewrite cannot
handle that way (the id in an inline table) gives None, and the restore is refused before anything
stops, never installed with the wrong id.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

_BOM = "\ufeff"
_NAME = r"""(?:{name}|"{name}"|'{name}')"""
_STRING = r"""(?:"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
# `id = "…"` in a table, or `gateway.id = "…"` at the top level, with an optional comment after it
_ID_LINE = re.compile(
    rf"^(\s*(?:{_NAME.format(name='gateway')}\s*\.\s*)?{_NAME.format(name='id')}\s*=\s*){_STRING}(\s*(?:#.*)?)$"
)


def with_gateway_id(text: str, gateway_id: str) -> str | None:
    """`text` (a TOML config) with `gateway.id` set to `gateway_id` and every other byte as it was; None if that
    cannot be done with certainty (see the module docstring)."""
    before = _parsed(text)
    if before is None or not isinstance(before.get("gateway"), dict) or "id" not in before["gateway"]:
        return None
    if before["gateway"]["id"] == gateway_id:
        return text
    wanted = {**before, "gateway": {**before["gateway"], "id": gateway_id}}
    lines = text.split("\n")
    # each line that looks like it, tried in turn: one in another table or inside a multi-line string changes
    # something else, and only the one that changes gateway.id alone is taken
    for n, line in enumerate(lines):
        if (found := _ID_LINE.match(line)) is None:
            continue
        tried = "\n".join([*lines[:n], f"{found[1]}{json.dumps(gateway_id)}{found[2]}", *lines[n + 1 :]])
        if _parsed(tried) == wanted:
            return tried
    return None


def _parsed(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text.removeprefix(_BOM))
    except tomllib.TOMLDecodeError:
        return None

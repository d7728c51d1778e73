"""JSON paths (`object.temperature`, `rxInfo[0].rssi`, `観測所.水位`): grammar, parsing, lookup and display."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

PathPart = str | int
JsonPath = tuple[PathPart, ...]

# Keys are any characters but `.`, `[`, `]`, `{`, `}` and blanks, so Japanese keys (`水位`, `観測時刻`)
# work as written. A path to a field starts with a key (the field lives in a JSON object); only a path
# to a list of items may start with an index (`[0].stations` when the document is a list).
_KEY = r"[^.\[\]{}\s]+"
_FIELD_RE = re.compile(rf"^{_KEY}(?:\.{_KEY}|\[\d+\])*$")
_ANY_RE = re.compile(rf"^(?:{_KEY}|\[\d+\])(?:\.{_KEY}|\[\d+\])*$")
_PART_RE = re.compile(rf"\.?({_KEY})|\[(\d+)\]")
PATH_HELP: Final = "must be a JSON path like data.stations or 観測値[0].水位 (keys separated by '.', list items as [i])"


class _Missing:
    """The lookup result for an absent field (JSON null is a value: None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()


def parse_path(text: str, *, may_start_with_index: bool = False) -> JsonPath:
    """`data.stations[0].水位` → ("data", "stations", 0, "水位"); ValueError(PATH_HELP) otherwise."""
    if not (_ANY_RE if may_start_with_index else _FIELD_RE).match(text):
        raise ValueError(PATH_HELP)
    return tuple(m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PART_RE.finditer(text))


def lookup(node: Any, path: JsonPath) -> Any:
    """The value at `path`, or MISSING; never raises, whatever the document."""
    # `type(...) is` rather than isinstance: orjson builds exactly dict and list, and this runs per field
    for key in path:
        if type(key) is str:
            if type(node) is not dict:
                return MISSING
            node = node.get(key, MISSING)
            if node is MISSING:
                return MISSING
        elif type(node) is not list or key >= len(node):  # type: ignore[operator]
            return MISSING
        else:
            node = node[key]  # type: ignore[index]
    return node


def path_text(path: Sequence[PathPart]) -> str:
    """The config spelling of a parsed path: ("a", 0, "b") → `a[0].b`."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out

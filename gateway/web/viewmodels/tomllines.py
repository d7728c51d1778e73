"""The key path of every assignment line of a TOML text, as the config's error lines spell it (`adapters[0].port`).

Theory of operation. The config editor must mark the line an error names and mask secret values in
place, so it needs to know, line by line, which key an assignment sets — something a TOML parser does
not tell. A small scanner walks the text once: `[table]` and `[[array.of.tables]]` headers set the
current prefix (an array's index counts its headers, per full name, and resets when a parent table is
opened again); `key = value` and `a.b = value` lines give prefix + key. Lines inside a multi-line
string or a multi-line array belong to the assignment that opened them. Inline tables stay on their
line: a path below one (`adapters[0].location.lat`) is found by its longest assigned prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Assignment", "assignments", "line_of"]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=\s*")
_PART = re.compile(_KEY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    line: int  # 1-based
    path: str  # adapters[0].port, gateway.id, headers."Fiware-Service"
    key: str  # the last key, unquoted
    value_start: int  # offset of the value in the line
    multiline: bool  # the value goes on past this line


def _parts(dotted: str) -> list[str]:
    out = []
    for m in _PART.finditer(dotted):
        part = m.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        out.append(part)
    return out


def _join(parts: list[str]) -> str:
    return ".".join(parts)


def _opens_multiline(value: str) -> bool:
    """Whether a value that starts on this line goes on past it: an open triple-quoted string or array."""
    for quote in ('"""', "'''"):
        if value.startswith(quote):
            return value.count(quote) < 2
    depth = 0
    in_str: str | None = None
    i = 0
    while i < len(value):
        c = value[i]
        if in_str:
            if c == "\\" and in_str == '"':
                i += 2
                continue
            if c == in_str:
                in_str = None
        elif c in "\"'":
            in_str = c
        elif c == "#":
            break
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth > 0


def _closes(line: str, closer: str) -> bool:
    return closer in line if closer in ('"""', "'''") else line.split("#", 1)[0].rstrip().endswith("]")


def _scan(text: str) -> Iterator[tuple[int, str, Assignment | None]]:
    """(line, path, assignment) for every table header (assignment None) and assignment line."""
    prefix: list[str] = []
    counts: dict[str, int] = {}  # full name of an array of tables -> index of its latest header
    closer: str | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        if closer is not None:
            if _closes(line, closer):
                closer = None
            continue
        header = _HEADER.match(line)
        if header:
            names = _parts(header.group(2))
            plain = _join(names)
            # the indices of the arrays above: [[adapters.devices]] belongs to the latest [[adapters]]
            resolved = list(names)
            for i in range(len(names) - 1):
                sub = _join(names[: i + 1])
                if sub in counts:
                    resolved[i] = f"{names[i]}[{counts[sub]}]"
            if header.group(1) == "[[":
                counts[plain] = counts.get(plain, -1) + 1
                resolved[-1] = f"{names[-1]}[{counts[plain]}]"
            # a new parent starts the numbering of the arrays below it afresh
            for name in [k for k in counts if k.startswith(plain + ".")]:
                del counts[name]
            prefix = resolved
            yield n, _join(resolved), None
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            continue
        keys = _parts(assign.group(1))
        value = line[assign.end() :]
        multiline = _opens_multiline(value)
        if multiline:
            closer = value[:3] if value[:3] in ('"""', "'''") else "]"
        path = _join([*prefix, *keys])
        yield n, path, Assignment(line=n, path=path, key=keys[-1], value_start=assign.end(), multiline=multiline)


def assignments(text: str) -> Iterator[Assignment]:
    for _, _, a in _scan(text):
        if a is not None:
            yield a


_INDEX = re.compile(r"\[\d+\]$")


def line_index(text: str) -> dict[str, int]:
    """The first line of every table header and assignment path of `text`, in one scan (for `line_in`)."""
    lines: dict[str, int] = {}
    for n, p, _ in _scan(text):
        lines.setdefault(p, n)
    return lines


def line_in(lines: dict[str, int], path: str) -> int | None:
    """The line setting `path`, else the line of its longest assigned or table prefix; None if nothing of it."""
    candidate = path
    while candidate:
        if candidate in lines:
            return lines[candidate]
        if _INDEX.search(candidate):
            candidate = _INDEX.sub("", candidate)
        elif "." in candidate:
            candidate = candidate.rsplit(".", 1)[0]
        else:
            break
    return None


def line_of(path: str, text: str) -> int | None:
    """`line_in` for one path (a scan of the whole text each call: index many paths with `line_index`)."""
    return line_in(line_index(text), path) if path else None

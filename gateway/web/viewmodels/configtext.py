"""The config page's text work: secrets masked and put back, the diff against the running file, errors at their lines.

Masking is by key name, line by line, so the text keeps its layout, comments and order. A masked
value is the placeholder `MASKED`; when an edited text comes back (check, apply, upload of a
downloaded file), `unmask` puts the running file's value back wherever the placeholder still stands
at a key path the running file has, so a technician who edits the uplink's host does not wipe its
password. `secret:`/`env:` references are not secrets and are shown as they are.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.web.viewmodels.tomllines import assignments, line_in, line_index

__all__ = [
    "MASKED",
    "ConfigProblem",
    "DiffLine",
    "DiffView",
    "diff",
    "is_secret_key",
    "mask",
    "problems",
    "split_error",
    "unmask",
]

MASKED = "********"
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "key",
        "apikey",
        "credentials",
        "credential",
        "authorization",
    }
)
_WORD = re.compile(r"[a-z]+")
_REF = re.compile(r"^\s*([\"'])(?:secret|env):[^\"']*\1")
_STRING = re.compile(r"^(\s*)(\"(?:[^\"\\]|\\.)*\"|'[^']*')")
# key = "value" pairs inside an inline table: headers = { Authorization = "Bearer abc" }
_INLINE_PAIR = re.compile(r"([A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')(\s*=\s*)(\"(?:[^\"\\]|\\.)*\"|'[^']*')")


def is_secret_key(key: str) -> bool:
    """Whether a key's value is a credential by its name: api_key, apikey, client-secret, Authorization, password."""
    lowered = key.lower().strip("\"'")
    return any(word in _SECRET_WORDS for word in _WORD.findall(lowered))


def _masked_string(value: str) -> str | None:
    """`value` (the text after `=`) with its leading string literal masked; None if it is a reference or no string."""
    if _REF.match(value):
        return None
    m = _STRING.match(value)
    if not m:
        return None
    return f'{m.group(1)}"{MASKED}"{value[m.end() :]}'


def _mask_inline(value: str) -> str:
    def one(m: re.Match[str]) -> str:
        if not is_secret_key(m.group(1)) or _REF.match(m.group(3)):
            return m.group(0)
        return f'{m.group(1)}{m.group(2)}"{MASKED}"'

    return _INLINE_PAIR.sub(one, value)


def mask(text: str) -> str:
    """The config text with the value of every secret-named key replaced by MASKED (references kept)."""
    lines = text.splitlines(keepends=True)
    for a in assignments(text):
        line = lines[a.line - 1]
        head, value = line[: a.value_start], line[a.value_start :]
        if is_secret_key(a.key):
            masked = _masked_string(value)
            if masked is not None:
                lines[a.line - 1] = head + masked
                continue
        if value.lstrip().startswith("{"):
            lines[a.line - 1] = head + _mask_inline(value)
    return "".join(lines)


def _string_at(line: str, start: int) -> str | None:
    m = _STRING.match(line[start:])
    return m.group(2) if m else None


def unmask(edited: str, running: str) -> str:
    """`edited` with every MASKED value that stands where `running` has a value put back to that value."""
    if MASKED not in edited:
        return edited
    running_lines = running.splitlines()
    originals: dict[str, str] = {}
    for a in assignments(running):
        originals[a.path] = running_lines[a.line - 1][a.value_start :]
    lines = edited.splitlines(keepends=True)
    placeholder = f'"{MASKED}"'
    for a in assignments(edited):
        line = lines[a.line - 1]
        value = line[a.value_start :]
        if placeholder not in value or a.path not in originals:
            continue
        original = originals[a.path]
        if _string_at(value, 0) == placeholder:
            kept = _string_at(original, 0)
            if kept is not None:
                lines[a.line - 1] = line[: a.value_start] + value.replace(placeholder, kept, 1)
            continue
        # inline table: put back pair by pair, by the pair's key
        old_pairs = {m.group(1): m.group(3) for m in _INLINE_PAIR.finditer(original)}

        def back(m: re.Match[str], old_pairs: dict[str, str] = old_pairs) -> str:
            if m.group(3) == placeholder and m.group(1) in old_pairs:
                return f"{m.group(1)}{m.group(2)}{old_pairs[m.group(1)]}"
            return m.group(0)

        lines[a.line - 1] = line[: a.value_start] + _INLINE_PAIR.sub(back, value)
    return "".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "file", "same"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffView:
    lines: tuple[DiffLine, ...]
    added: int
    removed: int

    @property
    def empty(self) -> bool:
        return not self.lines


def diff(running: str, edited: str, *, running_name: str = "running", edited_name: str = "edited") -> DiffView:
    """The unified diff of two config texts (both masked by the caller: the page shows it)."""
    out: list[DiffLine] = []
    added = removed = 0
    for raw in difflib.unified_diff(
        running.splitlines(), edited.splitlines(), fromfile=running_name, tofile=edited_name, lineterm=""
    ):
        if raw.startswith(("---", "+++")):
            kind = "file"
        elif raw.startswith("@@"):
            kind = "hunk"
        elif raw.startswith("+"):
            kind = "add"
            added += 1
        elif raw.startswith("-"):
            kind = "del"
            removed += 1
        else:
            kind = "same"
        out.append(DiffLine(kind=kind, text=raw))
    return DiffView(lines=tuple(out), added=added, removed=removed)


_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:\[\d+\])*(?:\.(?:[A-Za-z0-9_-]+|\"[^\"]*\")(?:\[\d+\])*)*$")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigProblem:
    path: str  # "" when the error names no key (a TOML syntax error, a missing file)
    message: str
    line: int | None  # in the checked text, 1-based
    source: str = ""  # that line's text, for the page to show beside the message


def split_error(error: str) -> tuple[str, str]:
    """`adapters[0].port: must be …` -> ("adapters[0].port", "must be …"); ("", error) when no key path leads it."""
    head, sep, rest = error.partition(": ")
    if sep and _PATH.match(head):
        return head, rest
    return "", error


def problems(errors: Sequence[str], text: str) -> list[ConfigProblem]:
    """The checker's error lines with the line of the text each one is about (to mark it in the editor).

    The text is scanned once for all the errors: `line_of` per error would scan it once each, and a
    1 MiB text with 30,000 errors took two hours.
    """
    lines = line_index(text) if any(split_error(e)[0] for e in errors) else {}
    text_lines: list[str] | None = None  # split once, if some error has a line (the page showed it per error)
    out = []
    for error in errors:
        path, message = split_error(error)
        line = line_in(lines, path) if path else None
        if line is None:
            m = _TOML_LINE.search(message)
            line = int(m.group(1)) if m else None
        source = ""
        if line is not None:
            text_lines = text.splitlines() if text_lines is None else text_lines
            source = text_lines[line - 1] if 0 < line <= len(text_lines) else ""
        out.append(ConfigProblem(path=path, message=message, line=line, source=source))
    return out

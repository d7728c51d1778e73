"""The config page's text work: secrets masked and put back, the diff against the running file, errors at their lines.

Masking is line by line, so the text keeps its layout, comments, order and line numbers. Secrets in this config
are `secret:`/`env:` references (gateway.secrets), which are not secret and are shown as they are. What is hidden
is a value that could be a credential written in clear: a key named after one by its last word (`client_secret`,
`api_key`, `apikey`, `password`, `Authorization` — not `token_url` or `key_file`, which name a URL and a file), and
a URL carrying credentials (user:password@, or a credential-named query parameter: gateway.secrets' rule). A
hidden value is the placeholder MASKED; a multi-line one leaves its other lines empty.

When an edited text comes back (check, apply, upload of a downloaded file), `restore` puts the running value back
where the placeholder still stands, in the same element only: an element of an array of tables is known by its
`name` (adapters and uplinks have unique ones), else by all its other keys (an unnamed processing entry, or a
named one renamed and otherwise untouched). Never by position: removing the first of two uplinks gave the second
the first one's values, and its credentials went to the other uplink's server. A placeholder with nothing to put
back is `lost`: the page refuses the text and names the keys to type again.

`masked_diff` labels every masked value with the running value it stands for, on both sides, so a value that
lands in another element (two uplinks' names swapped) shows as a changed line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gateway.secrets import SecretInClear, check_url_credentials, is_ref
from gateway.web.viewmodels.tomllines import Assignment, assignments, line_in, line_index

__all__ = [
    "MASKED",
    "ConfigProblem",
    "DiffLine",
    "DiffView",
    "Restored",
    "diff",
    "is_secret_key",
    "mask",
    "masked_diff",
    "problems",
    "restore",
    "split_error",
    "unmask",
]

MASKED = "********"
_PLACEHOLDER = f'"{MASKED}"'
_SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "token", "secret", "key", "apikey", "credential", "authorization", "cookie"}
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
# a string literal leading a value; a triple-quoted one first, or its opening quotes would read as an empty string
_STRING = re.compile(
    r"^(\s*)(\"\"\"(?:[^\"\\]|\\.|\"(?!\"\"))*\"\"\"|'''(?:[^']|'(?!''))*'''|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
)
# key = "value" pairs inside an inline table: headers = { Authorization = "Bearer abc" }
_INLINE_PAIR = re.compile(r"([A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')(\s*=\s*)(\"(?:[^\"\\]|\\.)*\"|'[^']*')")
_ELEMENT = re.compile(r"\[\d+\]$")
_QUOTES = "\"'"


def is_secret_key(key: str) -> bool:
    """Whether a key holds a credential, by what its last word names: api_key, apikey, client-secret, clientSecret,
    Authorization, password. Not token_url or key_file (a URL, a file), nor a bare `key` (kintone's upsert key, a
    field template) or a public_key."""
    words = [w.lower() for w in _WORD.findall(key.strip(_QUOTES))]
    if not words:
        return False
    last = words[-1].removesuffix("s")
    if last == "key":
        return len(words) > 1 and words[-2] != "public"
    return last in _SECRET_WORDS


def _text_of(value: str) -> str | None:
    """The string a value (the text after `=`) starts with; None if it starts with none."""
    m = _STRING.match(value)
    if m is None:
        return None
    literal = m.group(2)
    if literal[:3] not in ('"""', "'''") and (literal[0] == "'" or "\\" not in literal):
        return literal[1:-1]  # most strings: no escapes to read
    try:
        text = tomllib.loads(f"v = {literal}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    return text if isinstance(text, str) else None


def _hides(key: str, literal: str) -> bool:
    """Whether the string `literal` (as the text spells it) set at `key` could be a credential in clear."""
    secret = is_secret_key(key)
    if not secret and "://" not in literal:  # most values: no parse
        return False
    value = _text_of(literal)
    if value is None:
        return secret
    if is_ref(value):
        return False
    if secret:
        return True
    try:
        check_url_credentials(value)
    except SecretInClear:
        return True
    return False


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def _multiline(lines: list[str], a: Assignment) -> tuple[str, int, str] | None:
    """A triple-quoted string going on past its line: its literal, the index of its last line, what follows it there."""
    value = lines[a.line - 1][a.value_start :].lstrip()
    quote = value[:3]
    if not a.multiline or quote not in ('"""', "'''"):
        return None
    for i in range(a.line, len(lines)):
        at = lines[i].find(quote)
        if at >= 0:
            return value + "".join(lines[a.line : i]) + lines[i][: at + 3], i, lines[i][at + 3 :]
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hidden:
    path: str  # adapters[0].password, uplinks[1].headers.Authorization
    line: int  # 1-based
    literal: str  # the value as the running text spells it, all its lines for a multi-line string
    tail: int = 0  # the lines after the first one that the masking left empty (a multi-line string)


def _mask_inline(value: str, path: str, line: int) -> tuple[str, list[_Hidden]]:
    found: list[_Hidden] = []

    def one(m: re.Match[str]) -> str:
        if not _hides(m.group(1), m.group(3)):
            return m.group(0)
        found.append(_Hidden(path=f"{path}.{m.group(1).strip(_QUOTES)}", line=line, literal=m.group(3)))
        return f"{m.group(1)}{m.group(2)}{_PLACEHOLDER}"

    return _INLINE_PAIR.sub(one, value), found


@dataclass(frozen=True, slots=True, kw_only=True)
class _Masked:
    text: str
    hidden: dict[int, list[_Hidden]]  # line (1-based) -> the values hidden on it
    assignments: list[Assignment]  # the masked text's: the original's, as masking keeps every line where it was


def _masking(text: str) -> _Masked:
    lines = text.splitlines(keepends=True)
    hidden: dict[int, list[_Hidden]] = {}
    found = list(assignments(text))
    for n, a in enumerate(found):
        line = lines[a.line - 1]
        head, value = line[: a.value_start], line[a.value_start :]
        long = _multiline(lines, a)
        if long is not None:
            literal, last, rest = long
            if _hides(a.key, literal):
                lines[a.line - 1] = head + _PLACEHOLDER + _eol(line)
                lines[a.line : last] = [_eol(inner) for inner in lines[a.line : last]]
                lines[last] = rest
                hidden[a.line] = [_Hidden(path=a.path, line=a.line, literal=literal, tail=last - a.line + 1)]
                found[n] = replace(a, multiline=False)  # one line now, as in the text the editor shows
            continue
        m = _STRING.match(value)
        if m:
            if _hides(a.key, m.group(2)):
                lines[a.line - 1] = head + m.group(1) + _PLACEHOLDER + value[m.end() :]
                hidden[a.line] = [_Hidden(path=a.path, line=a.line, literal=m.group(2))]
        elif value.lstrip().startswith("{"):
            masked, pairs = _mask_inline(value, a.path, a.line)
            if pairs:
                lines[a.line - 1] = head + masked
                hidden[a.line] = pairs
    return _Masked(text="".join(lines), hidden=hidden, assignments=found)


def mask(text: str) -> str:
    """The config text with every value that could be a credential in clear replaced by MASKED."""
    return _masking(text).text


class _Doc:
    """A masked text's arrays of tables: the element each key is in, and how each element is known.

    An element is an array of tables' entry, by its path: `uplinks[1]`, `adapters[0].devices[2]`, known from the
    keys set in it (one without any holds no secret either). Everything is indexed once, without recursion: a
    text may nest arrays thousands deep.
    """

    def __init__(self, masked: _Masked) -> None:
        self.lines = masked.text.splitlines()
        self.all = masked.assignments
        self.assigned: dict[str, Assignment] = {}
        first: dict[str, int] = {}  # element -> the line of its first key, for their order
        for a in self.all:
            self.assigned.setdefault(a.path, a)
            end = len(a.path)
            while (end := a.path.rfind("].", 0, end)) >= 0:  # the elements it is in, innermost first
                element = a.path[: end + 1]
                if _ELEMENT.search(element):
                    if element in first:
                        break  # and the ones around it too
                    first[element] = a.line
        self.elements = set(first)
        self.starts = sorted({a.line for a in self.all})
        self.parent = {e: self.owner(e[: e.rindex("[")]) for e in self.elements}
        self.children: dict[str, list[str]] = defaultdict(list)
        self.groups: dict[tuple[str, str], list[str]] = defaultdict(list)  # (parent, array) -> its elements
        for e in sorted(self.elements, key=lambda e: first[e]):
            self.children[self.parent[e]].append(e)
            self.groups[self.group(e)].append(e)
        self._names: dict[tuple[str, str], dict[str | None, list[str]]] = {}
        self._digests: dict[str, tuple[str, str]] = {}
        self._by_digest: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._labels: dict[str, str] = {"": ""}

    def owner(self, path: str) -> str:
        """The innermost element `path` is in ("" for none): the longest element path before one of its dots."""
        end = len(path)
        while (end := path.rfind("].", 0, end)) >= 0:
            if path[: end + 1] in self.elements:
                return path[: end + 1]
        return ""

    def group(self, element: str) -> tuple[str, str]:
        parent = self.parent[element]
        return parent, element[len(parent) + 1 if parent else 0 : element.rindex("[")]

    def name(self, element: str) -> str | None:
        a = self.assigned.get(f"{element}.name")
        return None if a is None else _text_of(self.lines[a.line - 1][a.value_start :])

    def named(self, group: tuple[str, str], name: str) -> list[str]:
        if group not in self._names:
            names: dict[str | None, list[str]] = defaultdict(list)
            for e in self.groups.get(group, []):
                names[self.name(e)].append(e)
            self._names[group] = names
        return self._names[group].get(name, [])

    def holding(self, group: tuple[str, str], digest: str) -> list[str]:
        """The elements of `group` whose `digest` (with or without their names) is this one."""
        if group not in self._by_digest:
            found: dict[str, list[str]] = defaultdict(list)
            for e in self.groups.get(group, []):
                found[self.digest(e, named=True)].append(e)
                found[self.digest(e, named=False)].append(e)
            self._by_digest[group] = found
        return self._by_digest[group].get(digest, [])

    def digest(self, element: str, *, named: bool) -> str:
        """A digest of all the element holds, its sub-elements whole; without its own `name` unless `named`."""
        if not self._digests:
            self._digests = self._digest_all()
        return self._digests[element][0 if named else 1]

    def _value(self, a: Assignment) -> str:
        """The value's text, all its lines for a multi-line one (up to the next key or table)."""
        first = self.lines[a.line - 1][a.value_start :].strip()
        if not a.multiline:
            return first
        i = bisect_right(self.starts, a.line)
        end = self.starts[i] - 1 if i < len(self.starts) else len(self.lines)
        return "\n".join([first, *self.lines[a.line : end]])

    def _digest_all(self) -> dict[str, tuple[str, str]]:
        direct: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for path, a in self.assigned.items():
            owner = self.owner(path)
            direct[owner].append((path[len(owner) + 1 if owner else 0 :], self._value(a)))
        digests: dict[str, tuple[str, str]] = {}
        for e in sorted(self.elements, key=len, reverse=True):  # a sub-element's path is longer than its parent's
            items = sorted(direct[e])
            subs = sorted((s[len(e) + 1 :], digests[s][0]) for s in self.children[e])
            unnamed = [i for i in items if i[0] != "name"]
            # tagged, so that the two kinds share one index (`holding`) without ever meeting
            digests[e] = (_digest(["named", items, subs]), _digest(["unnamed", unnamed, subs]))
        return digests

    def label(self, path: str) -> str:
        """`path` as the element names spell it: uplinks[name="vendor"].oauth2.client_secret, processing[2].key."""
        owner = self.owner(path)
        return f"{self._label(owner)}.{path[len(owner) + 1 :]}" if owner else path

    def _label(self, element: str) -> str:
        chain = []
        while element not in self._labels:  # the ancestors first, without recursion
            chain.append(element)
            element = self.parent[element]
        for e in reversed(chain):
            parent, array = self.group(e)
            name = self.name(e)
            here = e[len(parent) + 1 if parent else 0 :]
            if name is not None and len(self.named((parent, array), name)) == 1:
                here = f"{array}[name={json.dumps(name, ensure_ascii=False)}]"
            self._labels[e] = f"{self._labels[parent]}.{here}" if parent else here
        return self._labels[chain[0] if chain else element]


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


class _Counterparts:
    """Which running element each edited element is: the one of its name, else the one holding all else it holds."""

    def __init__(self, edited: _Doc, running: _Doc) -> None:
        self.edited = edited
        self.running = running
        self._found: dict[str, str | None] = {"": ""}

    def element(self, element: str) -> str | None:
        chain = []
        while element not in self._found:  # the ancestors first, without recursion
            chain.append(element)
            element = self.edited.parent[element]
        for e in reversed(chain):
            self._found[e] = self._one(e, self._found[self.edited.parent[e]])
        return self._found[chain[0] if chain else element]

    def _one(self, element: str, parent: str | None) -> str | None:
        if parent is None:
            return None
        group = (parent, self.edited.group(element)[1])
        name = self.edited.name(element)
        if name is not None:
            named = self.running.named(group, name)
            if named:
                return named[0] if len(named) == 1 else None
        # unnamed: the one holding all the same; renamed: the one holding all the same but its name
        same = self.running.holding(group, self.edited.digest(element, named=name is None))
        return same[0] if len(same) == 1 else None

    def path(self, path: str) -> str | None:
        """The running path of the same key in the same element; None when that element is not known."""
        owner = self.edited.owner(path)
        found = self.element(owner)
        if found is None:
            return None
        rest = path[len(owner) + 1 :] if owner else path
        return f"{found}.{rest}" if found else rest


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored:
    text: str  # the edited text with the running values back where their placeholders stand
    lost: tuple[str, ...] = ()  # key paths (as the edited text has them) whose placeholder has nothing to put back
    labels: dict[int, list[str]] = field(default_factory=dict)  # edited line -> the running values put back on it


class _Running:
    """The running text masked, what the masking hid, and its elements."""

    def __init__(self, masked: _Masked) -> None:
        self.shown = masked.text
        self.hidden = masked.hidden
        self.doc = _Doc(masked)


def restore(edited: str, running: str) -> Restored:
    """`edited` with every MASKED value put back from the same element of `running` (see the module)."""
    if MASKED not in edited:
        return Restored(text=edited)
    return _restore(edited, _masking(edited), _Running(_masking(running)))


def _restore(edited: str, edited_masked: _Masked, running: _Running) -> Restored:
    ed = _Doc(edited_masked)
    counterparts = _Counterparts(ed, running.doc)
    originals = {h.path: h for found in running.hidden.values() for h in found}
    shown = running.shown.splitlines(keepends=True)
    lines = edited.splitlines(keepends=True)
    lost: list[str] = []
    labels: dict[int, list[str]] = {}
    for a in reversed(ed.all):  # from the end: a multi-line value put back moves the lines below it
        line = lines[a.line - 1]
        value = line[a.value_start :]
        if _PLACEHOLDER not in value:
            continue
        source = counterparts.path(a.path)
        m = _STRING.match(value)
        if m and m.group(2) == _PLACEHOLDER:
            original = originals.get(source or "")
            if original is not None:
                _put_back(lines, a, m, original, shown)
                labels[a.line] = [running.doc.label(original.path)]
            elif source is None or source not in running.doc.assigned:
                lost.append(a.path)
            continue  # else the running file shows that text as it is: it stays as the technician left it
        if value.lstrip().startswith("{"):
            pairs = _pairs(shown, running.doc.assigned.get(source or ""))
            back, gone, put = _inline_back(value, a.path, source, pairs, originals)
            lines[a.line - 1] = line[: a.value_start] + back
            lost.extend(reversed(gone))
            if put:
                labels[a.line] = [running.doc.label(p) for p in put]
    return Restored(text="".join(lines), lost=tuple(reversed(lost)), labels=labels)


def _pairs(lines: list[str], a: Assignment | None) -> set[str]:
    if a is None:
        return set()
    return {m.group(1).strip(_QUOTES) for m in _INLINE_PAIR.finditer(lines[a.line - 1][a.value_start :])}


def _inline_back(
    value: str, path: str, source: str | None, pairs: set[str], originals: dict[str, _Hidden]
) -> tuple[str, list[str], list[str]]:
    """An inline table's placeholders put back pair by pair: (the value, the lost pairs' paths, the sources used)."""
    gone: list[str] = []
    put: list[str] = []

    def back(m: re.Match[str]) -> str:
        if m.group(3) != _PLACEHOLDER:
            return m.group(0)
        key = m.group(1).strip(_QUOTES)
        original = originals.get(f"{source}.{key}") if source is not None else None
        if original is not None:
            put.append(original.path)
            return f"{m.group(1)}{m.group(2)}{original.literal}"
        if key not in pairs:  # a pair the running element shows as it is stays as the technician left it
            gone.append(f"{path}.{key}")
        return m.group(0)

    return _INLINE_PAIR.sub(back, value), gone, put


def _put_back(lines: list[str], a: Assignment, m: re.Match[str], original: _Hidden, shown: list[str]) -> None:
    """The running literal in place of the placeholder on `a`'s line; a multi-line one takes back the empty lines
    its masking left, when they are still there as it left them."""
    head = lines[a.line - 1][: a.value_start] + m.group(1)
    after = lines[a.line - 1][a.value_start + m.end() :]
    if original.tail:
        left = shown[original.line : original.line + original.tail]
        here = lines[a.line : a.line + original.tail]
        if not after.strip() and [s.rstrip("\r\n") for s in here] == [s.rstrip("\r\n") for s in left]:
            lines[a.line - 1 : a.line + original.tail] = [head + original.literal + here[-1]]
            return
    lines[a.line - 1] = head + original.literal + after


def unmask(edited: str, running: str) -> str:
    """`edited` with the running values put back (`restore`); a placeholder with nothing to put back stays as typed."""
    return restore(edited, running).text


def _labelled(text: str, labels: dict[int, list[str]]) -> str:
    if not labels:
        return text
    lines = text.splitlines(keepends=True)
    for n, sources in labels.items():
        body = lines[n - 1].rstrip("\r\n")
        lines[n - 1] = f"{body}  # ← {', '.join(sources)}{lines[n - 1][len(body) :]}"
    return "".join(lines)


def masked_diff(running: str, edited: str, *, running_name: str = "running") -> DiffView:
    """The diff the page shows: both texts masked, every masked value followed by the running value it stands for
    (`# ← uplinks[name="city"].apikey`), so a value put back into another element shows as a changed line."""
    edited_masked = _masking(edited)
    running_masked = _masking(running)
    if not running_masked.hidden:  # nothing to label, nothing to put back
        return diff(running_masked.text, edited_masked.text, running_name=running_name)
    theirs = _Running(running_masked)
    restored = _restore(edited, edited_masked, theirs) if MASKED in edited else Restored(text=edited)
    left = {n: [theirs.doc.label(h.path) for h in found] for n, found in theirs.hidden.items()}
    right = _labelled(edited_masked.text, restored.labels)
    return diff(_labelled(theirs.shown, left), right, running_name=running_name)


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

"""Message catalogs of the web UI: `catalogs/<lang>/<part>.json` merged per language, `ja` the source.

Every string a user sees comes from here, as a whole sentence with `{named}` placeholders (Japanese word
order differs from English, so pages never glue fragments). The language of a request is the user's own
setting, else the one chosen on the login page, else the browser's Accept-Language, else `[web] language`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.web.config import Language

CATALOG_DIR = Path(__file__).parent / "catalogs"
LANGUAGES: tuple[str, ...] = tuple(lang.value for lang in Language)
SOURCE = Language.JA.value


class MissingMessage(KeyError):
    """A key absent from a catalog: a bug in a page or a catalog, raised only where `strict` (the tests)."""


def placeholders(text: str) -> frozenset[str]:
    """The `{named}` fields of one message, to keep the languages in step."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(text) if field is not None)


def load_part(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: a catalog is a flat JSON object of string keys to string messages")
    return data


class Catalogs:
    """All languages' messages, loaded once at start."""

    def __init__(self, directory: Path = CATALOG_DIR, *, strict: bool = False) -> None:
        self.strict = strict
        self.messages: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            merged: dict[str, str] = {}
            for part in sorted((directory / lang).glob("*.json")):
                for key, text in load_part(part).items():
                    if key in merged:
                        raise ValueError(f"{part}: key {key!r} is already defined by another part of {lang!r}")
                    merged[key] = text
            self.messages[lang] = merged

    def translate(self, lang: str, key: str, /, **kw: Any) -> str:
        text = self.messages.get(lang, {}).get(key)
        if text is None:
            if self.strict:
                raise MissingMessage(f"catalog {lang!r}: no message {key!r}")
            # In production a missing translation shows the Japanese source, then the bare key: never a 500.
            text = self.messages[SOURCE].get(key, key)
        return text.format(**kw) if kw else text


def negotiate(accept_language: str) -> str | None:
    """The best of our languages in an Accept-Language header (RFC 9110 q-values), or None."""
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept_language.split(",")):
        parts = item.strip().split(";")
        tag = parts[0].strip().lower()
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.split("-")[0]
        if primary in LANGUAGES and q > 0:
            candidate = (-q, position, primary)
            if best is None or candidate < best:
                best = candidate
    return best[2] if best is not None else None


def choose(*, user_language: str | None, session_language: str | None, accept: str, default: str) -> str:
    for lang in (user_language, session_language, negotiate(accept)):
        if lang in LANGUAGES:
            return lang
    return default


def mismatches(messages: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Differences between the source language and the others: missing keys, extra keys, placeholders."""
    problems: list[str] = []
    source = messages[SOURCE]
    for lang, table in messages.items():
        if lang == SOURCE:
            continue
        problems.extend(f"{lang}: missing {key}" for key in sorted(set(source) - set(table)))
        problems.extend(f"{lang}: {key} is not in {SOURCE}" for key in sorted(set(table) - set(source)))
        problems.extend(
            f"{lang}: {key} has placeholders {sorted(placeholders(table[key]))}, "
            f"{SOURCE} has {sorted(placeholders(source[key]))}"
            for key in sorted(set(source) & set(table))
            if placeholders(source[key]) != placeholders(table[key])
        )
    return problems

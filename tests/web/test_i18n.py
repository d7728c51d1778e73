"""The message catalogs: both languages complete, part by part, with the same placeholders; negotiation; JST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.web.i18n import (
    CATALOG_DIR,
    LANGUAGES,
    SOURCE,
    Catalogs,
    MissingMessage,
    mismatches,
    negotiate,
    placeholders,
)
from gateway.web.render import jst

PARTS = sorted(p.name for p in (CATALOG_DIR / SOURCE).glob("*.json"))


def test_every_language_has_every_part() -> None:
    assert {"common.json", "account.json"} <= set(PARTS)
    for lang in LANGUAGES:
        assert sorted(p.name for p in (CATALOG_DIR / lang).glob("*.json")) == PARTS


@pytest.mark.parametrize("part", PARTS)
def test_both_catalogs_complete_with_the_same_placeholders(part: str) -> None:
    tables = {lang: json.loads((CATALOG_DIR / lang / part).read_text(encoding="utf-8")) for lang in LANGUAGES}
    assert mismatches(tables) == []
    for lang, table in tables.items():
        for key, text in table.items():
            assert text.strip(), f"{lang}/{part}: {key} is empty"
            placeholders(text)  # well-formed braces


def test_mismatches_name_what_differs() -> None:
    tables = {"ja": {"a": "{n} 件", "b": "x"}, "en": {"a": "{count} items", "c": "y"}}
    assert mismatches(tables) == [
        "en: missing b",
        "en: c is not in ja",
        "en: a has placeholders ['count'], ja has ['n']",
    ]


def test_missing_key_raises_when_strict_and_falls_back_otherwise(tmp_path: Path) -> None:
    for lang, text in (("ja", "こんにちは {name}"), ("en", "Hello {name}")):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "p.json").write_text(json.dumps({"hi": text}), encoding="utf-8")
    (tmp_path / "ja" / "q.json").write_text(json.dumps({"only_ja": "日本語だけ"}), encoding="utf-8")
    assert Catalogs(tmp_path).translate("en", "hi", name="Aoi") == "Hello Aoi"
    with pytest.raises(MissingMessage, match="catalog 'en': no message 'only_ja'"):
        Catalogs(tmp_path, strict=True).translate("en", "only_ja")
    assert Catalogs(tmp_path).translate("en", "only_ja") == "日本語だけ"
    assert Catalogs(tmp_path).translate("en", "nothing") == "nothing"


def test_a_key_defined_twice_is_refused(tmp_path: Path) -> None:
    for lang in LANGUAGES:
        (tmp_path / lang).mkdir()
        for part in ("a.json", "b.json"):
            (tmp_path / lang / part).write_text(json.dumps({"same": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match="key 'same' is already defined"):
        Catalogs(tmp_path)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ja,en-US;q=0.9", "ja"),
        ("en-US,en;q=0.9,ja;q=0.8", "en"),
        ("fr-FR,en;q=0.5,ja;q=0.7", "ja"),
        ("fr", None),
        ("", None),
        ("en;q=0, ja;q=0", None),
        ("JA-jp", "ja"),
    ],
)
def test_accept_language(header: str, expected: str | None) -> None:
    assert negotiate(header) == expected


def test_jst_filter() -> None:
    assert jst(1796000000.0) == "2026-11-30 09:53:20 JST"
    assert jst("2026-12-04T10:05:03Z") == "2026-12-04 19:05:03 JST"
    assert jst("2026-12-04T10:05:03.250+00:00") == "2026-12-04 19:05:03 JST"
    assert jst(None) == ""

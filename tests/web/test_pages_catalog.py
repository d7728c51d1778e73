"""The data pages' catalogs: ja and en in step, and every key the pages and templates use present in both."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.web.i18n import CATALOG_DIR, Catalogs, load_part, mismatches
from gateway.web.viewmodels.dashboard import KNOWN_STATES, SEVERITIES
from gateway.web.viewmodels.latest import SortKey
from gateway.web.viewmodels.logs import LEVELS

WEB = Path(__file__).resolve().parents[2] / "gateway" / "web"
PAGES = ("dashboard", "live", "buffer", "config", "devices", "logs")
TEMPLATES = (*PAGES, "config_version", "config_versions", "config_versions_table", "profile", "tool_job")
LITERAL = re.compile(r"""\bt\(\s*["']([a-z_.-]+)["']""")


def test_ja_and_en_have_the_same_keys_and_placeholders() -> None:
    parts = {lang: load_part(CATALOG_DIR / lang / "pages.json") for lang in ("ja", "en")}
    assert mismatches(parts) == []


def test_every_key_used_is_in_both_catalogs() -> None:
    used: set[str] = set()
    for name in TEMPLATES:
        used |= set(LITERAL.findall((WEB / "templates" / f"{name}.html").read_text()))
    for name in PAGES:
        used |= set(LITERAL.findall((WEB / "pages" / f"{name}.py").read_text()))
    used |= set(LITERAL.findall((WEB / "viewmodels" / "dashboard.py").read_text()))
    used |= set(LITERAL.findall((WEB / "viewmodels" / "formats.py").read_text()))
    used = {key for key in used if not key.endswith(("_", "."))}  # prefixes of keys built from a value:
    used |= {f"state.{s}" for s in KNOWN_STATES}
    used |= {f"logs.level_{level}" for level in LEVELS}
    used |= {f"live.sort_{key.value}" for key in SortKey}
    used |= {f"dashboard.cap_{name}" for name in ("rows", "bytes", "age")}
    used |= {f"dashboard.problem.{p}" for p in ("adapters", "uplinks", "disk_full", "clock")}
    used |= {"dead_letter.retry.done", "dead_letter.discard.done"}
    used |= {f"alert.{level}" for level in SEVERITIES}
    catalogs = Catalogs()
    for lang in ("ja", "en"):
        assert sorted(used - set(catalogs.messages[lang])) == [], lang

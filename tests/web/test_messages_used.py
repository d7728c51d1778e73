"""Every message key the templates, the pages and the account store can ask for exists in every language.

The strict catalogs catch a missing key on the paths the tests render; this reads the sources, so a branch
no test renders (an error seldom seen) cannot show a bare key either.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gateway.accounts.store as store
from gateway.accounts import passwords
from gateway.web.i18n import LANGUAGES, Catalogs
from gateway.web.render import NAV, TEMPLATE_DIR

WEB = Path(__file__).resolve().parents[2] / "gateway" / "web"
# the framework's and the account pages' files (the data pages have their own check, test_pages_catalog)
TEMPLATES = (
    "base.html",
    "login.html",
    "password.html",
    "setup.html",
    "setup_invalid.html",
    "users.html",
    "audit.html",
    "403.html",
    "404.html",
    "form_expired.html",
)
PAGES = ("login.py", "account.py", "users.py", "audit.py")
# t("key" …) and t('key' …) with a literal key; keys built at run time ("nav." ~ page) are listed below
LITERAL = re.compile(r"""\bt\(\s*["']([a-z0-9_]+(?:\.[a-z0-9_]+)+)["']""")
FLASH_OR_KEY = re.compile(r"""(?:message|key)\s*=\s*["']([a-z0-9_]+(?:\.[a-z0-9_]+)+)["']""")


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in [*(TEMPLATE_DIR / t for t in TEMPLATES), *WEB.glob("*.py"), *(WEB / "pages" / p for p in PAGES)]:
        text = path.read_text(encoding="utf-8")
        keys.update(LITERAL.findall(text))
        keys.update(FLASH_OR_KEY.findall(text))
    keys.update(f"nav.{item.page}" for item in NAV)
    keys.update(f"role.{role.value}" for role in store.Role)
    keys.update(passwords.POLICY_KEYS)
    for name in dir(store):
        obj = getattr(store, name)
        if isinstance(obj, type) and issubclass(obj, store.AccountError):
            keys.add(obj.key)
    keys.update({"setup.invalid", "setup.admin_exists", "error.403.title", "error.404.title"})
    return keys


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_used_key_is_translated(lang: str) -> None:
    catalog = Catalogs().messages[lang]
    keys = used_keys()
    assert len(keys) > 60  # the scan found the pages' texts
    assert sorted(k for k in keys if k not in catalog) == []

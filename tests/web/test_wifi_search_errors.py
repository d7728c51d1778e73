"""A Wi-Fi search the store would refuse says what is wrong in the page's language, naming the field.

The store's own messages are English and for the CLI; the page once showed them as they were.
"""

from __future__ import annotations

import re

import pytest

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, login, post_form
from tests.web.test_wifi_pages import MAC, filled  # noqa: F401  (fixture)

ERROR = re.compile(r'id="wifi-error"[^>]*>(.*?)</p>', re.S)
CASES = [
    ({}, "検索条件を入力してください。", "Enter a search term"),
    ({"time_to": "2026-01-15T10:00"}, "検索条件を入力してください。", "Enter a search term"),
    ({"mac": "zz"}, "MACアドレスの形式が正しくありません。", "The MAC address is not valid."),
    ({"ip": "10.0.0.x"}, "IPアドレスの形式が正しくありません。", "The IP address is not valid."),
    ({"time_from": "yesterday"}, "開始日時（日本時間）の形式が正しくありません。", "From (JST) is not a valid"),
    ({"mac": MAC, "time_to": "2026-13-01T00:00"}, "終了日時（日本時間）の形式が正しくありません。", "To (JST) is not"),
]


@pytest.mark.parametrize(("terms", "ja", "en"), CASES, ids=["none", "only_to", "mac", "ip", "from", "to"])
async def test_a_refused_search_says_which_field_in_the_users_language(
    filled: WebEnv,  # noqa: F811
    terms: dict[str, str],
    ja: str,
    en: str,
) -> None:
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    for lang, expected in (("ja", ja), ("en", en)):
        await post_form(filled.client, "/lang", {"lang": lang, "next": "/wifi"}, token_from="/wifi")
        response = await post_form(filled.client, "/wifi/search", {"reference": "R-1", **terms}, token_from="/wifi")
        assert response.status == 400
        match = ERROR.search(await response.text())
        assert match is not None and expected in match.group(1), (lang, match and match.group(1))
        assert "wifi search" not in match.group(1) and "zz" not in match.group(1)
    assert not filled.entries("wifi.search")

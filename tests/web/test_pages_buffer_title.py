"""The buffer page's <title> is its name only: markup once left inside the title block showed as text in the tab."""

from __future__ import annotations

import re

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, login


async def test_the_title_is_text_and_live_js_is_loaded_once(web_env: WebEnv) -> None:
    web_env.add_user("mika", Role.VIEWER)
    await login(web_env.client, "mika")
    page = await (await web_env.client.get("/buffer")).text()
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title is not None and title.group(1) == "バッファ（送信不能データ） — edgegw 管理画面"
    assert page.count('<script src="/static/live.js" defer></script>') == 1

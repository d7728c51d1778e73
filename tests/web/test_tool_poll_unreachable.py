"""A tool job's poll while the gateway does not answer says so as the other polls do (`reachable` false), for
live.js to keep asking; the job page carries, hidden, what it says when the gateway no longer knows the job.

The poll answered a bare `{"error": ...}`, which live.js took for the job's end: it stopped asking at the first
503, and the page showed the job running for good.
"""

from __future__ import annotations

import re

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, login

UNREACHABLE = "ゲートウェイに接続できません。ゲートウェイ（edgegw）が動いているか確認してください。"


async def test_the_poll_says_the_gateway_is_unreachable_as_the_others_do(web_env: WebEnv) -> None:
    web_env.add_user("taro", Role.TECHNICIAN)
    await login(web_env.client, "taro")
    response = await web_env.client.get("/api/tools/modbus-1", params={"after": "3"})
    assert response.status == 503
    assert await response.json() == {"reachable": False, "error": UNREACHABLE}


async def test_the_job_page_says_a_forgotten_job_is_gone_in_both_languages(web_env: WebEnv) -> None:
    web_env.add_user("taro", Role.TECHNICIAN)
    await login(web_env.client, "taro")
    for language, gone, again in (
        ("ja", "ゲートウェイはジョブ modbus-1 を知りません。", "機器のページのツールから実行し直す"),
        ("en", "The gateway does not know job modbus-1. ", "Run it again from the tools on the devices page"),
    ):
        page = await (await web_env.client.get("/devices/tools/modbus-1", headers={"Accept-Language": language})).text()
        found = re.search(
            r'<p id="tool-gone" class="unreachable" hidden>([^<]*)<br><a href="/devices">([^<]*)</a>', page
        )
        assert found, page
        assert found.group(1).startswith(gone) and found.group(2) == again
        assert '<p id="unreachable" class="unreachable" hidden></p>' in page

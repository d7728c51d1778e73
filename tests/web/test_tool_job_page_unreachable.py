"""The tool job page asks the gateway which tool the job runs: without a running gateway it still opens, with the
plain heading, and its poll says the gateway is unreachable (never a 500)."""

from __future__ import annotations

import re

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, login


async def test_the_job_page_opens_without_the_gateway(web_env: WebEnv) -> None:
    web_env.add_user("taro", Role.TECHNICIAN)
    await login(web_env.client, "taro")
    response = await web_env.client.get("/devices/tools/modbus-1")
    assert response.status == 200
    page = await response.text()
    assert re.search(r"<h1>\s*ツールの実行\s*</h1>", page), page
    assert 'data-poll="/api/tools/modbus-1"' in page

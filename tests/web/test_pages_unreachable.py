"""Without a running gateway every data page says so plainly in the user's language, never a 500."""

from __future__ import annotations

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, csrf_token, login

UNREACHABLE = "ゲートウェイに接続できません。ゲートウェイ（edgegw）が動いているか確認してください。"


async def test_every_page_without_the_gateway(web_env: WebEnv) -> None:
    web_env.add_user("taro", Role.TECHNICIAN)
    client = web_env.client
    await login(client, "taro")
    for path in ("/", "/live", "/logs", "/devices"):
        response = await client.get(path)
        assert response.status == 200, path
        assert UNREACHABLE in await response.text(), path
    response = await client.get("/config")
    assert response.status == 503
    assert UNREACHABLE in await response.text()
    page = await (await client.get("/buffer")).text()
    assert "バッファのファイルを読めません。ゲートウェイが動いているか、権限を確認してください。" in page
    for path in ("/api/status", "/api/latest", "/api/logs"):
        assert await (await client.get(path)).json() == {"reachable": False, "error": UNREACHABLE}, path
    assert (await client.get("/api/tools/job-1")).status == 503
    # actions say it too, after their redirect
    token = await csrf_token(client, "/buffer")
    response = await client.post("/buffer/retry", data={"csrf_token": token, "ids": "orion:1"})
    assert UNREACHABLE in await response.text()
    response = await client.post("/config/apply", data={"csrf_token": token, "text": "", "base": ""})
    assert response.status == 503

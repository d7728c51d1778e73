"""Dead letters: listed with the far side's reason (shown inert), retried and discarded by a technician, audited."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from gateway.accounts.store import Role
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import GatewayWeb, gateway_web

REFUSED = "urn:ngsi-ld:WaterObserved:w-1"
REASON = "Invalid characters <script>alert(1)</script>"


async def dead_letters(env: GatewayWeb, at_least: int = 1) -> list[int]:
    for _ in range(500):
        letters = await env.services.buffer.dead_letters(None, 100, 0)
        if len(letters) >= at_least:
            return [d.id for d in letters]
        await asyncio.sleep(0.02)
    raise AssertionError("no dead letters arrived")


async def test_dead_letters_listed_retried_and_discarded(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.refuse_entity(REFUSED, REASON)
    async with gateway_web(tmp_path, orion_double.url, rate=50.0) as env:
        ids = await dead_letters(env, 2)
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/buffer")).text()
        assert '<table id="dead-letters">' in page
        assert f'<td class="id">{REFUSED}</td>' in page
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert 'name="ids"' not in page and 'id="retry"' not in page  # a viewer reads, does not act
        refused = await viewer.post(
            "/buffer/retry", data={"csrf_token": await csrf_token(viewer, "/buffer"), "ids": f"orion:{ids[0]}"}
        )
        assert refused.status == 403

        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/buffer")).text()
        assert f'<input type="checkbox" name="ids" value="orion:{ids[0]}"' in page
        assert 'id="retry"' in page and 'id="discard"' in page
        token = await csrf_token(tech, "/buffer")
        response = await tech.post(
            "/buffer/retry", data={"csrf_token": token, "ids": f"orion:{ids[0]}"}, allow_redirects=False
        )
        assert (response.status, response.headers["Location"]) == (303, "/buffer")
        assert "1件を再送の列に戻しました。" in await (await tech.get("/buffer")).text()
        (entry,) = env.services.audit.entries(action="dead_letter.retry")
        assert (entry.actor, entry.target, entry.detail) == ("taro", "orion", {"ids": [ids[0]], "count": 1})

        remaining = [d.id for d in await env.services.buffer.dead_letters(None, 100, 0)]
        assert ids[0] not in remaining
        form = [("csrf_token", token)] + [("ids", f"orion:{i}") for i in remaining]
        response = await tech.post("/buffer/discard", data=form, allow_redirects=False)
        assert response.status == 303
        page = await (await tech.get("/buffer")).text()
        assert f"{len(remaining)}件を破棄しました。" in page
        (entry,) = env.services.audit.entries(action="dead_letter.discard")
        assert entry.detail == {"ids": remaining, "count": len(remaining)}
        left = {d.id for d in await env.services.buffer.dead_letters(None, 100, 0)}
        assert not left & set(remaining)
        # a CSRF-less post is refused before anything happens
        assert (await tech.post("/buffer/discard", data={"ids": "orion:1"})).status == 403
        assert re.search(r'<p id="dead-letter-count">', page)

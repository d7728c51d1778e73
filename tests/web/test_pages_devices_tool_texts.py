"""The tools form in the user's language: titles, field names and help from the catalog, the family's English else.

The families describe their tools in English (for the CLI and the control socket); the form once showed
those texts on the Japanese page as they were.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.accounts.store import Role
from gateway.control.tools import load_tools
from gateway.web.i18n import LANGUAGES, Catalogs
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import gateway_web
from tests.web.test_pages_devices_logs import COUNTER

PROBE = 'id="tool-modbus-probe"'


def form_of(page: str, form_id: str) -> str:
    match = re.search(rf"<form [^>]*{form_id}>.*?</form>", page, re.S)
    assert match, form_id
    return re.sub(r"\s+", " ", match.group(0))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_shipped_tool_has_its_texts_in_every_language(lang: str) -> None:
    messages = Catalogs().messages[lang]
    tools = load_tools()
    assert tools  # the families' entry points were found
    missing = []
    for tool in tools:
        prefix = f"tools.{tool.family}.{tool.tool}"
        missing += [f"{prefix}.title"] if f"{prefix}.title" not in messages else []
        for p in tool.params:
            missing += [k for k in (f"{prefix}.{p.name}", f"{prefix}.{p.name}.help") if k not in messages]
    assert missing == []


async def test_the_form_speaks_the_users_language(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=[*load_tools(), COUNTER]) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        probe = form_of(await (await tech.get("/devices")).text(), PROBE)
        assert "<h3>ポートで応答するModbusユニットを探す</h3>" in probe
        assert '<label for="tool-modbus-probe-port">ポート *</label>' in probe
        assert '<span class="help">各ユニットの応答を待つ秒数</span>' in probe
        assert "seconds to wait" not in probe and "Find the Modbus" not in probe
        # a tool the catalog does not know yet: the family's own texts
        counter = form_of(await (await tech.get("/devices")).text(), 'id="tool-demo-count"')
        assert "<h3>Count units</h3>" in counter
        assert '<label for="tool-demo-count-upto">upto *</label>' in counter
        assert '<span class="help">last unit id</span>' in counter

        await tech.post("/lang", data={"csrf_token": await csrf_token(tech, "/devices"), "lang": "en"})
        probe = form_of(await (await tech.get("/devices")).text(), PROBE)
        assert "<h3>Find the Modbus units that answer on a port</h3>" in probe
        assert '<label for="tool-modbus-probe-port">Port *</label>' in probe
        assert '<input id="tool-modbus-probe-port" name="port" value="" required>' in probe

"""A local profile tomllib cannot take is one invalid row of the devices page, not a 500 for every viewer.

Regression case of a review: a profile in /etc/edgegw/profiles with arrays nested 3000 deep (or an integer
of 5001 digits) made GET /devices answer 500, as tomllib's RecursionError/ValueError passed the loader.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from gateway.accounts.store import Role
from gateway.profiles import loader
from gateway.web.pages import devices
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web


@pytest.mark.parametrize(
    "text", ["x = " + "[" * 3000 + "]" * 3000 + "\n", "x = 1" + "0" * 5000 + "\n"], ids=["nested", "digits"]
)
async def test_the_devices_page_lists_it_as_invalid(
    text: str, orion_double: OrionDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "profiles"
    (local / "acme").mkdir(parents=True)
    (local / "acme" / "deep.toml").write_text(text)
    # the page searches the default path, /etc/edgegw/profiles first: here a directory of the test's own
    search = (local, loader.SHIPPED_DIR)
    monkeypatch.setattr(devices, "find_profiles", functools.partial(loader.find_profiles, search))
    monkeypatch.setattr(devices, "load_profile", functools.partial(loader.load_profile, search_path=search))
    async with gateway_web(tmp_path, orion_double.url) as env:
        viewer = await env.browser("mika", Role.VIEWER)
        response = await viewer.get("/devices")
        assert response.status == 200
        page = await response.text()
        assert (
            '<tr class="profile bad">\n      <td><a href="/devices/profiles/acme/deep">acme/deep</a></td>\n      \n'
            '      <td colspan="4">このプロファイルには1件の誤りがあります。</td>'
        ) in page
        assert '<a href="/devices/profiles/eastron/sdm120">eastron/sdm120</a>' in page
        response = await viewer.get("/devices/profiles/acme/deep")
        assert response.status == 200
        assert "not valid TOML: " in await response.text()

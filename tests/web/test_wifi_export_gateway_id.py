"""The web UI's Wi-Fi export names its gateway: the manifest's `gateway_id` is [gateway] id of the configuration
`edgegw web` runs with. Before, it was always "" (review s20, F2)."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.accounts.store import Role
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from tests.web.conftest import WebEnv, login, post_form

MAC = "aa:bb:cc:01:02:03"


@pytest.fixture
def filled(web_env: WebEnv) -> WebEnv:
    store = WifiLogStore(web_env.state_dir.parent)  # the data directory: the buffer's, as the page takes it
    store.apply(
        [
            SessionEvent(
                nas="id:ap1",
                session_id="s1",
                kind=EventKind.START,
                time=datetime(2026, 1, 15, 10, tzinfo=UTC),
                client_mac=MAC,
            )
        ]
    )
    store.publish_public_key()  # the signing key, as the gateway's Wi-Fi runner makes it at start
    store.close()
    web_env.add_user("auditor", Role.WIFI_AUDITOR)
    return web_env


async def manifest_of_export(env: WebEnv) -> dict[str, Any]:
    await login(env.client, "auditor")
    r = await post_form(env.client, "/wifi/export", {"reference": "R-3", "mac": MAC}, token_from="/wifi")
    assert r.status == 200, await r.text()
    z = zipfile.ZipFile(io.BytesIO(await r.read()))
    name = next(n for n in z.namelist() if n.endswith(".manifest.json"))
    manifest: dict[str, Any] = json.loads(z.read(name))
    return manifest


async def test_the_manifest_names_the_gateway_of_the_configuration(filled: WebEnv) -> None:
    filled.services.gateway_config_path.write_text(
        f'[gateway]\nid = "gw-sanda-3"\ndata_dir = "{filled.state_dir.parent}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    manifest = await manifest_of_export(filled)
    assert (manifest["gateway_id"], manifest["rows"]) == ("gw-sanda-3", 1)


async def test_a_configuration_it_cannot_read_is_logged_and_the_export_still_given(
    filled: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    path = filled.services.gateway_config_path
    assert not path.exists()
    with caplog.at_level(logging.WARNING, logger="gateway.web.pages.wifi"):
        manifest = await manifest_of_export(filled)
    assert manifest["gateway_id"] == ""
    [line] = [r.getMessage() for r in caplog.records if r.name == "gateway.web.pages.wifi"]
    assert line.startswith(f"web: Wi-Fi export 'R-3' made without the gateway's id: {path}: file not found")

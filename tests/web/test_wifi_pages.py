"""The Wi-Fi inquiry page: only wifi-auditor, a reference before anything, audited, export verifiable."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.accounts.store import Role
from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogStore
from gateway.wifilog.cli import inquiry_key, query_hmac
from gateway.wifilog.export import verify_export
from gateway.wifilog.store import JST
from tests.web.conftest import WebEnv, login, post_form

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MAC, USER = "aa:bb:cc:01:02:03", "hanako@example.jp"


@pytest.fixture
def filled(web_env: WebEnv) -> WebEnv:
    data_dir = web_env.state_dir.parent
    store = WifiLogStore(data_dir, retention_months=1)
    store.apply(
        [
            SessionEvent(
                nas="id:ap1",
                session_id="s1",
                kind=EventKind.START,
                time=T0,
                client_mac=MAC,
                user_name=USER,
                framed_ip="10.0.0.5",
            ),
            SessionEvent(
                nas="id:ap1", session_id="s2", kind=EventKind.START, time=T0 - timedelta(days=60), client_mac=MAC
            ),
        ]
    )
    store.expire(datetime(2026, 1, 1, tzinfo=JST))  # November's period has expired
    store.close()
    return web_env


@pytest.mark.parametrize("role", [Role.ADMIN, Role.TECHNICIAN, Role.VIEWER, Role.LIBRARIAN])
async def test_other_roles_are_refused(filled: WebEnv, role: Role) -> None:
    filled.add_user("someone", role)
    await login(filled.client, "someone")
    assert (await filled.client.get("/wifi")).status == 403
    r = await post_form(filled.client, "/wifi/search", {"reference": "R-1", "mac": MAC}, token_from="/")
    assert r.status == 403
    assert not filled.entries("wifi.search")


async def test_search_needs_a_reference_and_is_audited_without_its_terms(filled: WebEnv) -> None:
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    page = await filled.client.get("/wifi")
    text = await page.text()
    assert page.status == 200 and "2025-11" in text  # the erasure certificate is listed
    r = await post_form(filled.client, "/wifi/search", {"reference": "", "mac": MAC}, token_from="/wifi")
    assert r.status == 400 and "照会番号を入力してください" in await r.text()
    assert not filled.entries("wifi.search")
    r = await post_form(
        filled.client, "/wifi/search", {"reference": "兵庫-77", "mac": "AABB.CC01.0203"}, token_from="/wifi"
    )
    body = await r.text()
    assert r.status == 200 and USER in body and "10.0.0.5" in body and "2026-01-15 19:00:00" in body
    [entry] = filled.entries("wifi.search")
    assert (entry.actor, entry.target, entry.detail["rows"]) == ("auditor", "兵庫-77", 1)
    assert MAC not in json.dumps(dict(entry.detail)).lower()
    # keyed by the box's secret (the same digest as `edgegw wifi` gives for these terms), never unkeyed
    key = inquiry_key(SecretStore(filled.state_dir.parent))
    assert entry.detail["query_hmac"] == query_hmac(Query(mac=MAC), key)
    assert "query_sha256" not in entry.detail


async def test_export_downloads_a_zip_whose_csv_verifies(filled: WebEnv, tmp_path: Path) -> None:
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    await login(filled.client, "auditor")
    r = await post_form(
        filled.client,
        "/wifi/export",
        {"reference": "R-9", "ip": "10.0.0.5", "time_from": "2026-01-15T19:30"},
        token_from="/wifi",
    )
    assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(await r.read()))
    names = sorted(z.namelist())
    csv_name = next(n for n in names if n.endswith(".csv"))
    out = tmp_path / csv_name
    out.write_bytes(z.read(csv_name))
    manifest = json.loads(z.read(csv_name + ".manifest.json"))
    key = load_pem_public_key(z.read("signing-public.pem"))
    assert verify_export(out, manifest, key) == []  # type: ignore[arg-type]
    assert (manifest["reference"], manifest["exported_by"], manifest["rows"]) == ("R-9", "auditor", 1)
    assert [e.action for e in filled.entries("wifi.export")] == ["wifi.export"]
    cert = await filled.client.get("/wifi/certificates/2025-11.json")
    assert cert.status == 200 and json.loads(await cert.text())["records"] == 1

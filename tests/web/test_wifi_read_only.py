"""The Wi-Fi pages read the log from a data directory the web UI may only read (its unit's ReadOnlyPaths=).

The web UI opened the store as its writer does: made the file private (open O_RDWR|O_CREAT) and turned WAL
on, so every Wi-Fi page answered 500 with "OSError: [Errno 30] Read-only file system" on an installed box.
Here the data directory is bound read-only and the UI's own state directory inside it writable again, as
the unit has them; the log is held open by a process of its own, as the gateway's Wi-Fi receivers hold it.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from markupsafe import escape

from gateway.accounts.store import Role
from gateway.wifilog.export import verify_export
from tests.storage.read_only import Binds, held_open
from tests.storage.read_only import binds as binds
from tests.web.conftest import WebEnv, login, post_form
from tests.web.test_wifi_pages import MAC, USER
from tests.web.test_wifi_pages import filled as filled

HOLD = """
from gateway.wifilog.store import WifiLogStore
store = WifiLogStore(Path({data!r}), retention_months=1)
"""


def _read_only(env: WebEnv, binds: Binds) -> dict[str, bytes]:
    """The data directory read-only, the UI's state directory in it writable; its files before, by name."""
    data = env.state_dir.parent
    before = {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}
    binds.read_only(data)
    binds.writable(env.state_dir)
    return {name: content for name, content in before.items() if not name.startswith("web/")}


def _files(env: WebEnv) -> dict[str, bytes]:
    data = env.state_dir.parent
    return {
        str(p.relative_to(data)): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and not str(p.relative_to(data)).startswith("web/")
    }


async def test_search_export_and_certificates_read_a_log_the_gateway_holds_open(
    filled: WebEnv, binds: Binds, tmp_path_factory: pytest.TempPathFactory
) -> None:
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    with held_open(HOLD.format(data=str(filled.state_dir.parent)), "store.close()"):
        before = _read_only(filled, binds)
        await login(filled.client, "auditor")
        page = await filled.client.get("/wifi")
        assert page.status == 200 and "2025-11" in await page.text()
        r = await post_form(filled.client, "/wifi/search", {"reference": "R-1", "mac": MAC}, token_from="/wifi")
        assert r.status == 200 and USER in await r.text()
        r = await post_form(filled.client, "/wifi/export", {"reference": "R-2", "mac": MAC}, token_from="/wifi")
        assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
        z = zipfile.ZipFile(io.BytesIO(await r.read()))
        csv_name = next(n for n in z.namelist() if n.endswith(".csv"))
        out = tmp_path_factory.mktemp("out") / csv_name  # tmp_path is the data directory, read-only now
        out.write_bytes(z.read(csv_name))
        key = load_pem_public_key(z.read("signing-public.pem"))
        assert verify_export(out, json.loads(z.read(csv_name + ".manifest.json")), key) == []  # type: ignore[arg-type]
        cert = await filled.client.get("/wifi/certificates/2025-11.json")
        assert cert.status == 200 and json.loads(await cert.text())["records"] == 1
        assert _files(filled) == before
    assert [e.action for e in filled.entries("wifi.search") + filled.entries("wifi.export")] == [
        "wifi.search",
        "wifi.export",
    ]


async def test_the_page_says_why_it_cannot_read_a_log_no_process_holds_open(filled: WebEnv, binds: Binds) -> None:
    filled.add_user("auditor", Role.WIFI_AUDITOR)
    before = _read_only(filled, binds)  # the gateway stopped: SQLite took the log's -wal and -shm away
    await login(filled.client, "auditor")
    path = filled.state_dir.parent / "wifilog" / "wifilog.db"
    said = (
        f"Wi-Fi log {path}: cannot be read by this process now, got a WAL file that no process holds open (SQLite's "
        '"unable to open database file": the -shm beside it, which a reader needs, cannot be made here); the '
        "gateway holds it open while a radius or wifi_syslog adapter runs: start it (systemctl start edgegw), or "
        "read the log on the box with `edgegw wifi` as the gateway's user"
    )
    page = await filled.client.get("/wifi")
    assert page.status == 503 and escape(said) in await page.text()
    r = await post_form(filled.client, "/wifi/search", {"reference": "R-1", "mac": MAC}, token_from="/wifi")
    assert r.status == 503 and escape(said) in await r.text()
    assert (await filled.client.get("/wifi/certificates/2025-11.json")).status == 503
    assert not filled.entries("wifi.search")  # nothing was searched
    assert _files(filled) == before

"""The pickup flow through a running gateway: librarian page → e-mail over SMTP → kiosk → door → platform.

A real Runtime with the locker adapter on a socat pty (board stand-in), the mail queue sending to a
real SMTP server on loopback, the admin web app and the kiosk app over HTTP on loopback, the strict
Orion double as the platform.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import re
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.locker import cli
from gateway import registry
from gateway.accounts.store import Role
from gateway.control.client import ControlClient
from gateway.records import Command
from gateway.web.kiosk import build_kiosk_app
from tests.adapters.locker.board_sim import BoardSim, SimBoard, one_board_toml, pty_pair, serve_pty
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import gateway_web, until

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _locker_registered() -> Iterator[None]:
    """The adapter by its class, as the entry point in pyproject.toml names it (the install may predate it)."""
    names = registry._names(registry.ADAPTER_GROUP)
    added = "locker" not in names
    names.setdefault(
        "locker", EntryPoint(name="locker", value="adapters.locker.adapter:LockerAdapter", group=registry.ADAPTER_GROUP)
    )
    yield
    if added:
        del names["locker"]


def gateway_text(data_dir: Path, orion_url: str, port: str, smtp_port: int) -> str:
    return f"""
[gateway]
id = "gw-lib"
data_dir = "{data_dir}"

[mail]
host = "127.0.0.1"
port = {smtp_port}
security = "plain-loopback"
from_address = "lockers@library.example.jp"
from_name = "〇〇町立図書館"
retry_initial_s = 0.2
retry_cap_s = 0.5

[[adapters]]
name = "lockers"
type = "locker"
poll_interval = 0.02

[adapters.pickup]
site = "駅前受取ロッカー"
max_wrong = 3

{one_board_toml(port)}

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
"""


def _text_of(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def _kiosk_post(client: TestClient[Any, Any], label: str, code: str) -> tuple[int, str]:
    page = await client.get("/")
    match = CSRF_RE.search(await page.text())
    assert match
    response = await client.post("/open", data={"csrf_token": match.group(1), "label": label, "code": code})
    return response.status, await response.text()


async def test_assign_mail_kiosk_pickup_and_the_platform(orion_double: OrionDouble, tmp_path: Path) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    smtp = await SmtpServer().start()
    try:
        with pty_pair(tmp_path) as (gw_port, board_port):
            async with serve_pty(sim, board_port):
                text = gateway_text(tmp_path / "data", orion_double.url, gw_port, smtp.port)
                async with gateway_web(tmp_path, orion_double.url, text=text) as env:
                    await _flow(env, sim, smtp, orion_double)
                    await _the_address_shows_nowhere(env, tmp_path / "data")
    finally:
        await smtp.stop()


async def _flow(env: Any, sim: BoardSim, smtp: SmtpServer, orion: OrionDouble) -> None:
    def written(entity_type: str) -> list[dict[str, Any]]:
        return [e for e in orion.written if e.get("type") == entity_type]

    await until(
        lambda: sum(e["doorState"]["value"] == "locked" for e in written("LockerCompartment")) >= 3,
        "the compartments' states on the platform",
    )
    out, err = io.StringIO(), io.StringIO()
    assert await cli.status(env.server.path, out, err) == cli.EXIT_OK, err.getvalue()
    assert out.getvalue().splitlines()[1].split() == ["A-01", "a", "locked", "no", "free"]
    # the platform's command path (IoT Agent / MQTT uplinks hand commands to this router)
    result = await env.runtime.gateway.router.dispatch(
        Command(command_id="p1", entity_id="urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-03", name="unlock")
    )
    assert (result.ok, result.info) == (True, "opened: compartment A-03")
    sim.boards[0].locked[2] = True  # closed again
    librarian = await env.browser("hanako", Role.LIBRARIAN)
    page = await librarian.get("/lockers")
    assert page.status == 200
    html = await page.text()
    assert 'id="compartment-A-02"' in html and 'data-pickup="free"' in html
    viewer = await env.browser("taro", Role.VIEWER)
    assert (await viewer.get("/lockers")).status == 403

    sim.boards[0].occupied[1] = True  # the book goes in
    await until(lambda: written("LockerCompartment")[-1].get("occupied", {}).get("value") is True, "occupied")
    entity_id = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-02"
    token = await csrf_token(librarian, "/lockers")
    response = await librarian.post(
        "/lockers/assign",
        data={
            "csrf_token": token,
            "entity_id": entity_id,
            "label": "A-02",
            "email": "hanako.patron@example.jp",
            "reference": "R-0042",
        },
        allow_redirects=False,
    )
    assert response.status == 302
    assert "A-02 を割り当て" in await (await librarian.get("/lockers")).text()
    await until(lambda: len(smtp.received) == 1, "the pickup e-mail")
    mail = smtp.received[0]
    assert mail.rcpt_to == ["hanako.patron@example.jp"]
    message = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert message["Subject"] == "【駅前受取ロッカー】予約資料の受取のご案内（ロッカー A-02）"
    assert message["To"] == "hanako.patron@example.jp"
    assert message["From"].addresses[0].addr_spec == "lockers@library.example.jp"
    assert message.get_content_type() == "multipart/alternative"
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None and "<td>A-02</td>" in str(html_part.get_content())
    body = _text_of(mail.data)
    assert "ロッカー番号：A-02" in body and "受取場所　：駅前受取ロッカー" in body
    code = re.search(r"暗証番号　：(\d{6})", body)
    assert code is not None
    assert env.services.audit.count(actor="hanako", action="locker.assign") == 1

    control = ControlClient(env.server.path, timeout_s=10.0)
    kiosk_app = build_kiosk_app(control, audit=env.services.audit, secure_cookie=False)
    async with TestClient(TestServer(kiosk_app)) as kiosk:
        assert (await kiosk.get("/lockers")).status == 404  # nothing of the admin UI behind the kiosk
        assert (await kiosk.post("/open", data={"label": "A-02", "code": code.group(1)})).status == 403  # no CSRF
        status, html = await _kiosk_post(kiosk, "A-02", "000000" if code.group(1) != "000000" else "111111")
        assert status == 400 and "暗証番号が違います" in html
        assert sim.boards[0].locked[1] is True
        status, html = await _kiosk_post(kiosk, "a-02", code.group(1))
        assert status == 200 and "扉が開きました" in html, html
        assert sim.boards[0].unlocks == [3, 2]
    await control.close()
    assert env.services.audit.count(actor="kiosk", action="locker.pickup") == 2

    sim.boards[0].occupied[1] = False  # the patron takes the book …
    sim.boards[0].locked[1] = True  # … and closes the door
    await until(lambda: bool(written("LockerPickup")), "the pickup event on the platform")
    (event,) = written("LockerPickup")
    assert event["patron"]["value"].startswith("pz1:")  # made by the adapter: this gateway has no [[processing]]
    assert "example.jp" not in json.dumps(orion.written)
    await until(lambda: written("LockerCompartment")[-1].get("pickupState", {}).get("value") == "free", "free again")


async def _the_address_shows_nowhere(env: Any, data_dir: Path) -> None:
    """After the pickup: not on the pages that show readings, logs or the audit log, not in the buffer's files."""
    admin = await env.browser("kanri", Role.ADMIN)
    for path in ("/live", "/api/latest", "/buffer", "/logs", "/api/logs", "/audit", "/lockers"):
        page = await admin.get(path)
        assert page.status == 200, path
        assert "hanako.patron" not in await page.text(), path
    assert _buffer_files_holding(data_dir, b"hanako.patron") == []


def _buffer_files_holding(data_dir: Path, text: bytes) -> list[str]:
    """The buffer's files (database, WAL) whose bytes contain `text`."""
    files = sorted(data_dir.glob("buffer.db*"))
    assert files, f"no buffer.db* in {data_dir}"
    return [f.name for f in files if text in f.read_bytes()]


async def test_staff_actions_are_audited(orion_double: OrionDouble, tmp_path: Path) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    with pty_pair(tmp_path) as (gw_port, board_port):
        async with serve_pty(sim, board_port):
            full = gateway_text(tmp_path / "data", orion_double.url, gw_port, 1)
            text = full[: full.index("[mail]")] + text_after_mail(full)
            async with gateway_web(tmp_path, orion_double.url, text=text) as env:
                await until(
                    lambda: (
                        env.runtime.gateway.router.owner("urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-01")
                        is not None
                    ),
                    "the compartments",
                )
                librarian = await env.browser("hanako", Role.LIBRARIAN)
                await until(lambda: sim.requests > 3, "a few polls")

                async def act(action: str, label: str, **extra: str) -> str:
                    token = await csrf_token(librarian, "/lockers")
                    data = {"csrf_token": token, "action": action, "label": label, **extra}
                    data.setdefault("entity_id", f"urn:ngsi-ld:LockerCompartment:gw-lib-lockers-{label}")
                    response = await librarian.post("/lockers/action", data=data, allow_redirects=False)
                    assert response.status == 302, response.status
                    return await (await librarian.get("/lockers")).text()

                assert "ロッカー A-01 の扉を開けました。" in await act("unlock", "A-01")
                assert sim.boards[0].unlocks == [1]
                assert "ロッカー A-01 の扉は開いています。" in await act("unlock", "A-01")
                assert "ロッカー A-02 には割り当てがありません。" in await act("cancel", "A-02")
                out, err = io.StringIO(), io.StringIO()
                assert await cli.open_compartment(env.server.path, "A-03", "cli:test", out, err) == cli.EXIT_OK
                assert out.getvalue() == "opened: compartment A-03\n"
                assert await cli.open_compartment(env.server.path, "Z-09", "cli:test", out, err) == cli.EXIT_USAGE
                assert err.getvalue() == "locker open: no compartment Z-09; `edgegw locker status` lists them\n"
                token = await csrf_token(librarian, "/lockers")
                bogus = await librarian.post(
                    "/lockers/action", data={"csrf_token": token, "action": "drop", "entity_id": "x", "label": "A-01"}
                )
                assert bogus.status == 400
                # no [mail]: assigning is refused with the reason, nothing is reserved
                token = await csrf_token(librarian, "/lockers")
                await librarian.post(
                    "/lockers/assign",
                    data={
                        "csrf_token": token,
                        "entity_id": "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-03",
                        "label": "A-03",
                        "email": "p@example.jp",
                        "reference": "R-1",
                    },
                    allow_redirects=False,
                )
                assert "メール送信が設定されていない" in await (await librarian.get("/lockers")).text()
                audit = env.services.audit
                assert audit.count(actor="hanako", action="locker.unlock") == 2
                assert audit.count(actor="hanako", action="locker.cancel") == 1
                assert audit.count(action="locker.assign") == 0


def text_after_mail(text: str) -> str:
    """The configuration from the adapter on: the same gateway without a [mail] section."""
    return text[text.index("[[adapters]]") :]

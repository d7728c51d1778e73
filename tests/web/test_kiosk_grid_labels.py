"""The kiosk finds a typed compartment in its locker adapter's grid, asking `latest` for the compartments only.

Its label → entity id map was read from the gateway's *processed* latest values, asked for with `filter=""`:
a valid `[[processing]]` rename of `compartmentLabel` (the platform's data model calls it `name`) left no
compartment with a label, so every patron was told "there is no locker with that number"; and each try with
the map out of date asked for every entity (0.7 s at 20k entities, ~3.5 s at 100k). As the staff page does
(test_lockers_grid_target.py), the kiosk now asks `latest` with `filter="LockerCompartment"` only to know where
its adapter's `grid` command goes, and reads the labels from the grid's cells, the adapter's own words.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.audit.log import AuditLog
from gateway.control.client import ControlClient
from gateway.control.server import ControlServer
from gateway.records import Attribute, Command, CommandResult, Emit, Reading, Source, utc_now
from gateway.web.kiosk import build_kiosk_app
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_two_sites_kiosk import gateway_text, site
from tests.mail.smtp_server import SmtpServer
from tests.support.entry_points import add_test_family
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import config_text, gateway_web, until
from tests.web.test_kiosk_unknown_label import kiosk_try, pickups
from tests.web.test_lockers_grid_target import RENAME_LABEL, hung_gateway

NORTH_A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-north-A-01"
SOUTH = "urn:ngsi-ld:LockerCompartment:gw-lib-south-{label}"
FAILED_JA = "ただいま操作できません。しばらくしてからもう一度お試しください。"


def record_ops(server: ControlServer) -> list[tuple[str, str, str]]:
    """Every op the gateway's control socket answers from now on, as (op, its filter or command name, the
    command's entity id); the real handlers still answer."""
    calls: list[tuple[str, str, str]] = []

    def recording(op: str, handler: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
        async def handle(args: dict[str, Any]) -> Any:
            calls.append((op, str(args.get("filter", args.get("name", ""))), str(args.get("entity_id", ""))))
            return await handler(args)

        return handle

    for op, handler in list(server.ops.items()):
        server.ops[op] = recording(op, handler)
    return calls


async def test_a_renamed_label_attribute_leaves_the_pickups_working(tmp_path: Path) -> None:
    """Two sites, the label renamed to `name`: the south kiosk opens south's A-01 with its code, asking for the
    compartments and south's grid once, then only the pickups (the map is kept)."""
    north, south = BoardSim([SimBoard("cu16", 0)]), BoardSim([SimBoard("cu16", 0)])
    smtp = await SmtpServer().start()
    try:
        async with OrionDouble() as orion:
            (tmp_path / "n").mkdir()
            (tmp_path / "s").mkdir()
            with pty_pair(tmp_path / "n") as (gn, bn), pty_pair(tmp_path / "s") as (gs, bs):
                async with serve_pty(north, bn), serve_pty(south, bs):
                    mail = (
                        f'[mail]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "plain-loopback"\n'
                        'from_address = "lockers@library.example.jp"\nretry_initial_s = 0.2\nretry_cap_s = 0.5\n'
                    )
                    sites = site("north", gn), site("south", gs)
                    text = gateway_text(tmp_path / "data", *sites, extra=mail, uplink=orion.url) + RENAME_LABEL
                    async with gateway_web(tmp_path, orion.url, text=text) as env:
                        gateway = env.runtime.gateway
                        a01 = SOUTH.format(label="A-01")
                        await until(
                            lambda: None not in (gateway.router.owner(a01), gateway.router.owner(NORTH_A01)),
                            "both sites",
                        )
                        await until(lambda: north.requests > 3 and south.requests > 3, "polls")
                        await until(lambda: any(r.entity_id == a01 for r in gateway.latest.values()), "A-01's value")
                        (latest,) = [r for r in gateway.latest.values() if r.entity_id == a01]
                        assert "compartmentLabel" not in latest.attributes and latest.attributes["name"].value == "A-01"

                        value = {"email": "s@example.jp", "reference": "s"}
                        assigned = await gateway.router.dispatch(
                            Command(command_id="s", entity_id=a01, name="assign", value=value, uplink="control")
                        )
                        assert assigned.ok, assigned.info
                        await until(lambda: len(smtp.received) == 1, "the code mail")
                        message = email.message_from_bytes(smtp.received[0].data, policy=email.policy.default)
                        body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                        (code,) = re.findall(r"暗証番号　：(\d{6})", body)

                        audit = env.services.audit
                        calls = record_ops(env.server)
                        control = ControlClient(env.server.path, timeout_s=10.0)
                        try:
                            app = build_kiosk_app(control, audit=audit, secure_cookie=False, adapter="south")
                            async with TestClient(TestServer(app)) as kiosk:
                                opened = await kiosk_try(kiosk, "a-01", code)
                                first = list(calls)
                                no_code = await kiosk_try(kiosk, "A-02", "000000")
                                unknown = await kiosk_try(kiosk, "B-09", "000000")
                        finally:
                            await control.close()
    finally:
        await smtp.stop()

    assert opened[0] == 200, opened[1]
    assert (south.boards[0].unlocks, north.boards[0].unlocks) == ([1], [])
    assert no_code[0] == 400 and "ロッカー A-02 には有効な暗証番号がありません。" in no_code[1]
    assert unknown[0] == 404
    (grid,) = [c for c in first if c[1] == "grid"]
    assert grid[2].startswith(SOUTH.format(label="")), grid  # south's grid, not north's
    assert first == [("latest", "LockerCompartment", ""), grid, ("command", "pickup", a01)]
    assert calls[len(first) :] == [("command", "pickup", SOUTH.format(label="A-02"))]
    assert pickups(audit) == [
        ("kiosk", "A-01", {"outcome": "opened"}),
        ("kiosk", "A-02", {"outcome": "no_code"}),
        ("kiosk", "-", {"outcome": "unknown"}),
    ]


async def test_a_gateway_that_does_not_answer_is_asked_once_for_the_compartments(tmp_path: Path) -> None:
    """A hung gateway (SIGSTOP): one request, the narrow one, and the patron's answer after one timeout."""
    sock = tmp_path / "control.sock"
    audit = AuditLog(tmp_path / "web")
    control = ControlClient(sock, timeout_s=0.3)
    try:
        async with hung_gateway(sock) as lines:
            app = build_kiosk_app(control, audit=audit, secure_cookie=False)
            async with TestClient(TestServer(app)) as kiosk:
                status, page = await kiosk_try(kiosk, "A-01", "123456")
    finally:
        await control.close()
    assert status == 503 and FAILED_JA in page
    assert len(lines) == 1, lines
    request = json.loads(lines[0])
    assert (request["op"], request["args"]["filter"]) == ("latest", "LockerCompartment")
    assert pickups(audit) == [("kiosk", "-", {"outcome": "failed"})]


GRIDLESS = "urn:ngsi-ld:LockerCompartment:gw-web-gridless-1"


class Gridless:
    """A locker family whose adapter has no `grid` command (a third-party adapter)."""

    config_model: ClassVar[type[AdapterConfig]] = AdapterConfig
    handled: ClassVar[list[str]] = []

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.name = config.name

    async def run(self, emit: Emit) -> None:
        state = {"compartmentLabel": Attribute(value="A-01", type="Text")}
        source = Source(adapter=self.name, device="1")
        reading = Reading(
            entity_id=GRIDLESS, entity_type="LockerCompartment", observed_at=utc_now(), attributes=state, source=source
        )
        await emit(reading)
        await asyncio.Event().wait()

    async def handle(self, command: Command) -> CommandResult:
        Gridless.handled.append(command.name)
        return CommandResult(command_id=command.command_id, ok=False, info=f"unknown: no command {command.name}")


@pytest.fixture
def gridless_family(monkeypatch: pytest.MonkeyPatch) -> None:
    add_test_family(monkeypatch, "test-gridless", Gridless)
    Gridless.handled = []


@pytest.mark.usefixtures("gridless_family")
async def test_an_adapter_that_gives_no_grid_is_said_so_and_sent_nothing(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its compartments are not known: the patron is asked to try later (not told there is no such locker), the
    technician is told why, and no pickup is sent."""
    text = config_text(tmp_path / "data", orion_double.url).replace(
        "\n[[uplinks]]", '\n[[adapters]]\nname = "bare"\ntype = "test-gridless"\n\n[[uplinks]]', 1
    )
    async with gateway_web(tmp_path, orion_double.url, text=text) as env:
        await until(lambda: env.runtime.gateway.router.owner(GRIDLESS) == "bare", "the compartment")
        await until(lambda: any(r.entity_id == GRIDLESS for r in env.runtime.gateway.latest.values()), "its value")
        audit = env.services.audit
        control = ControlClient(env.server.path, timeout_s=10.0)
        try:
            app = build_kiosk_app(control, audit=audit, secure_cookie=False, adapter="bare")
            async with TestClient(TestServer(app)) as kiosk:
                with caplog.at_level(logging.WARNING, logger="gateway.web.kiosk"):
                    tries = [await kiosk_try(kiosk, "A-01", "123456") for _ in range(2)]
        finally:
            await control.close()
    assert all(status == 503 and FAILED_JA in page for status, page in tries)
    assert Gridless.handled == ["grid", "grid"]  # asked again each try, said once
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.web.kiosk"] == [
        "kiosk: locker adapter bare gave no grid of its compartments, got 'unknown: no command grid'; every try "
        "is refused until it does (`edgegw locker status` reads the same grid)"
    ]
    assert pickups(audit) == [("kiosk", "-", {"outcome": "failed"})] * 2

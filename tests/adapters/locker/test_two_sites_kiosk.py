"""Two locker adapters (two sites) on one gateway, each with an A-01: a kiosk opens its own site's compartments only.

Before, the kiosk mapped a typed label to one entity across every adapter: the south patron's right
code was tried on north's A-01, answered "wrong code", and after max_wrong tries north's compartment
was locked. A kiosk now serves one adapter (`--adapter`, required with several), and one adapter's
labels may not differ only in case (the kiosk reads a-01 as A-01).
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.locker import cli
from gateway.cli import build_parser
from gateway.config import parse_config
from gateway.control.client import ControlClient
from gateway.errors import ConfigError
from gateway.records import Command
from gateway.web.kiosk import build_kiosk_app
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web, until

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
NORTH_A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-north-A-01"
SOUTH_A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-south-A-01"


def site(name: str, port: str, labels: str = '"A-01" = 1, "A-02" = 2') -> str:
    return f"""
[[adapters]]
name = "{name}"
type = "locker"
poll_interval = 0.02

[adapters.pickup]
site = "{name}"
max_wrong = 3

[[adapters.buses]]
name = "rs485"
port = "{port}"
timeout = 0.1
gap = 0
unlock_settle = 0

[[adapters.boards]]
name = "a"
bus = "rs485"
model = "cu16"
address = 0
compartments = {{ {labels} }}
"""


def gateway_text(data_dir: Path, *sites: str, extra: str = "", uplink: str = "http://127.0.0.1:1") -> str:
    return f"""
[gateway]
id = "gw-lib"
data_dir = "{data_dir}"
{extra}
{"".join(sites)}
[[uplinks]]
name = "orion"
type = "orion"
url = "{uplink}"
"""


async def kiosk_post(client: Any, label: str, code: str) -> str:
    page = await client.get("/")
    match = CSRF_RE.search(await page.text())
    assert match
    r = await client.post("/open", data={"csrf_token": match.group(1), "label": label, "code": code})
    return f"{r.status}"


async def test_each_sites_kiosk_opens_its_own_a01(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
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
                    text = gateway_text(tmp_path / "data", *sites, extra=mail, uplink=orion.url)
                    async with gateway_web(tmp_path, orion.url, text=text) as env:
                        router = env.runtime.gateway.router
                        await until(
                            lambda: None not in (router.owner(SOUTH_A01), router.owner(NORTH_A01)), "both sites"
                        )
                        await until(lambda: north.requests > 3 and south.requests > 3, "polls")
                        for eid, who in ((NORTH_A01, "n"), (SOUTH_A01, "s")):
                            value = {"email": f"{who}@example.jp", "reference": who}
                            r = await router.dispatch(
                                Command(command_id=who, entity_id=eid, name="assign", value=value, uplink="control")
                            )
                            assert r.ok, r.info
                        await until(lambda: len(smtp.received) == 2, "the code mails")
                        codes = {}
                        for m in smtp.received:
                            msg = email.message_from_bytes(m.data, policy=email.policy.default)
                            body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                            codes[m.rcpt_to[0]] = re.findall(r"暗証番号　：(\d{6})", body)[0]
                        control = ControlClient(env.server.path, timeout_s=10.0)
                        try:
                            # no adapter named while there are two: refused, and no compartment counts a try
                            blind = build_kiosk_app(control, secure_cookie=False)
                            with caplog.at_level(logging.ERROR, logger="gateway.web.kiosk"):
                                async with TestClient(TestServer(blind)) as kiosk:
                                    tries = [await kiosk_post(kiosk, "A-01", codes["s@example.jp"]) for _ in range(4)]
                            assert tries == ["503"] * 4
                            assert [r.getMessage() for r in caplog.records] == [
                                "kiosk: compartments of several locker adapters, got north, south and no adapter "
                                "named; every try is refused until the kiosk is started with --adapter NAME"
                            ]
                            south_kiosk = build_kiosk_app(control, secure_cookie=False, adapter="south")
                            async with TestClient(TestServer(south_kiosk)) as kiosk:
                                # the patron types the label in lower case: the same compartment, this site's
                                assert await kiosk_post(kiosk, "a-01", codes["s@example.jp"]) == "200"
                        finally:
                            await control.close()
                        assert south.boards[0].unlocks == [1]
                        assert north.boards[0].unlocks == []
                        grid = await router.dispatch(
                            Command(command_id="g", entity_id=NORTH_A01, name="grid", uplink="control")
                        )
                        (cell,) = [c for c in json.loads(grid.info) if c["label"] == "A-01"]
                        assert (cell["pickup"], cell["assignment"]["wrong"]) == ("reserved", 0)
    finally:
        await smtp.stop()


def kiosk_cli(config: Path, *extra: str) -> tuple[int, str]:
    args = build_parser().parse_args(["locker", "kiosk", "--config", str(config), *extra])
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(args, out, err)
    return code, err.getvalue()


def test_the_kiosk_command_needs_adapter_when_there_are_several(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        gateway_text(tmp_path / "data", site("north", "/dev/ttyUSB0"), site("south", "/dev/ttyUSB1")),
        encoding="utf-8",
    )
    assert kiosk_cli(config) == (
        cli.EXIT_USAGE,
        f"locker kiosk: {config}: --adapter: 2 locker adapters, got none named; each site's kiosk opens its own "
        "compartments: --adapter north or --adapter south\n",
    )
    assert kiosk_cli(config, "--adapter", "east") == (
        cli.EXIT_USAGE,
        f'locker kiosk: {config}: --adapter: no locker adapter of that name, got "east"; locker adapters: '
        "north, south\n",
    )


def test_the_kiosk_command_takes_the_only_adapter_without_being_told() -> None:
    """What systemd/edgegw-kiosk.service runs (no --adapter) on a box with one locker site."""
    import argparse

    one = parse_config(tomllib.loads(gateway_text(Path("/tmp/unused"), site("lockers", "/dev/ttyUSB0"))))
    args = argparse.Namespace(adapter=None)
    assert cli.kiosk_adapter(one, args) == ""
    assert args.adapter == "lockers"
    none = parse_config(tomllib.loads(gateway_text(Path("/tmp/unused"))))
    args = argparse.Namespace(adapter=None)
    assert (cli.kiosk_adapter(none, args), args.adapter) == ("", None)


def test_labels_of_one_adapter_that_differ_only_in_case_are_refused() -> None:
    text = gateway_text(Path("/tmp/unused"), site("north", "/dev/ttyUSB0", labels='"A-01" = 1, "a-01" = 2'))
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text))
    assert info.value.errors == [
        'adapters[0].boards[0].compartments.a-01: differs only in case from compartment "A-01" on board a, '
        'got "a-01"; the kiosk reads labels in either case, rename one'
    ]

"""`edgegw config keygen|sign` for the platform, and `edgegw commission` against a running gateway on loopback."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from gateway.app import Runtime
from gateway.cli import build_parser
from gateway.config import load_config
from gateway.control.server import ControlServer
from gateway.fleet.cli import run_commission, run_config
from gateway.fleet.remote import verify_bundle
from tests.fleet.conftest import Clock
from tests.support.orion_double import OrionDouble


def config_text(tmp_path: Path, orion_url: str) -> str:
    return f"""
[gateway]
id = "gw-site"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "gauges"
type = "simulated"
rate = 0.001

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"

[fleet.alarms]
rules = []
"""


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser([]).parse_args(argv)
    code = run_config(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_keygen_sign_and_the_box_verifies(tmp_path: Path) -> None:
    key = tmp_path / "platform.pem"
    code, public, _ = cli(["config", "keygen", str(key)])
    assert code == 0 and oct(key.stat().st_mode & 0o777) == "0o600"
    assert cli(["config", "public-key", str(key)])[1] == public
    conf = tmp_path / "gateway.toml"
    conf.write_text(config_text(tmp_path, "http://127.0.0.1:1026"))
    code, _, _ = cli(["config", "sign", str(conf), "--key", str(key), "--serial", "3", "-o", str(tmp_path / "b.json")])
    assert code == 0
    bundle = verify_bundle(
        (tmp_path / "b.json").read_bytes(), public_key=public.strip(), gateway="gw-site", last_serial=2
    )
    assert bundle.config == conf.read_text() and bundle.serial == 3
    conf.write_text("[gateway]\nid = 'x'\n")
    code, _, err = cli(["config", "sign", str(conf), "--key", str(key), "--serial", "4"])
    assert (code, err) == (
        2,
        f"config sign: nothing signed: {conf}: uplinks: at least one [[uplinks]] entry is needed, got none\n",
    )
    assert cli(["config", "keygen", str(key)])[2] == (
        f"config keygen: {key} exists, got an existing file; choose another path\n"
    )


async def test_commission_reports_each_check_and_the_test_reading(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path, orion_double.url))
    config = load_config(path)
    runtime = Runtime(path, config)
    await runtime.start()
    control = ControlServer(config.gateway.control_path(), runtime)
    await control.start()
    try:
        args = build_parser([]).parse_args(["commission", "-c", str(path), "--json", "--timeout", "10"])
        out = io.StringIO()
        code = await asyncio.to_thread(run_commission, args, out)
    finally:
        await control.stop()
        await runtime.stop()
    doc = json.loads(out.getvalue())
    results = {c["name"]: (c["result"], c["detail"]) for c in doc["checks"]}
    assert results["serial ports"] == ("skip", "no serial port configured")
    assert results["adapter gauges"][0] == "pass"
    assert results["uplink orion"][0] == "pass"
    assert results["test reading orion"][0] == "pass"
    assert results["alarm e-mail"] == ("skip", "no [mail] section")
    assert any(e["type"] == "Device" for e in orion_double.entities.values())
    assert code == (0 if doc["passed"] else 1)
    assert doc["passed"] == all(r != "fail" for r, _ in results.values())


async def test_commission_without_the_gateway_says_it_is_not_running(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path, "http://127.0.0.1:9"))
    args = build_parser([]).parse_args(["commission", "-c", str(path)])
    out = io.StringIO()
    assert await asyncio.to_thread(run_commission, args, out) == 1
    text = out.getvalue()
    assert "[FAIL] devices: the gateway is not running; start it (systemctl start edgegw)" in text
    assert "[FAIL] uplink orion: 127.0.0.1:9: cannot connect" in text
    assert text.rstrip().splitlines()[-1].startswith("result: FAIL (")

"""A gateway loads only what its configuration uses (issue 18, item 4: ≤ 70 MB resident while draining).

The race workload's gateway (the `mqtt` adapter, the `mqtt` uplink, nothing else) once carried
aiohttp, aiosmtplib, prometheus_client and cryptography, ~35 MB resident together, because the
config layer, the app and `edgegw run`'s parser imported the mail, fleet, web and HTTP modules
whether configured or not. These tests run a real `python -m gateway run` on a real mosquitto,
let one reading through, and look at what the process has imported, so the saving cannot silently
come back; and they check that the features still load where they are configured.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.race_bench import gateway_toml
from gateway import cli
from tests.support.mosquitto import MosquittoBroker

ROOT = Path(__file__).resolve().parents[1]
# what a gateway without [mail], [fleet], an HTTP uplink or the web UI must not import
UNCONFIGURED = ("aiohttp", "aiosmtplib", "prometheus_client", "cryptography", "jinja2")

# `python -m gateway run` as a systemd unit starts it; on SIGUSR1 it writes down what it has imported
_RUN = """
import asyncio, signal, sys
from pathlib import Path

def dump(signum, frame):
    out = Path(sys.argv[1])
    tmp = out.with_suffix(".tmp")
    loop = type(asyncio.get_running_loop())  # the handler runs on the loop's thread, between its callbacks
    tmp.write_text("\\n".join([f"loop={loop.__module__}.{loop.__qualname__}", *sorted(sys.modules)]))
    tmp.replace(out)

signal.signal(signal.SIGUSR1, dump)
from gateway.cli import main
raise SystemExit(main(["run", "--config", sys.argv[2]]))
"""


def _wait(what: str, done: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (done() if callable(done) else done):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_race_gateway_imports_none_of_the_unconfigured_features(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    config = tmp_path / "gateway.toml"
    # the race bench's own configuration, both of its brokers here one
    config.write_text(gateway_toml(tmp_path / "data", mosquitto.port, mosquitto.port))
    modules = tmp_path / "modules.txt"
    delivered = threading.Event()
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="lazy-watcher")
    watcher.on_message = lambda client, userdata, msg: delivered.set() if msg.topic.startswith("/race/") else None
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe("/race/#", qos=1)
    watcher.loop_start()
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gw = subprocess.Popen(
            [sys.executable, "-c", _RUN, str(modules), str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        _wait("the control socket", lambda: (tmp_path / "data" / "control.sock").exists() or gw.poll() is not None)
        assert gw.poll() is None, log.read_text()
        # a reading all the way through (adapter, buffer, delivery, uplink), published until the adapter has subscribed
        publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="lazy-device")
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        deadline = time.monotonic() + 20
        while not delivered.wait(0.2):  # again until the adapter has subscribed: the broker keeps no message for it
            assert time.monotonic() < deadline, "timed out waiting for the reading to go through"
            publisher.publish("race/d1/up", b'{"dev": "d1", "seq": 1, "t": 1.0, "level": 1.5}', qos=1)
        publisher.loop_stop()
        publisher.disconnect()
        gw.send_signal(signal.SIGUSR1)
        _wait("the module list", modules.exists)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=10) == 0, log.read_text()
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        if gw.poll() is None:
            gw.kill()
            gw.wait()
    loaded = set(modules.read_text().split())
    assert "loop=uvloop.Loop" in loaded  # gateway/eventloop.py: `edgegw run` runs on uvloop
    assert "gateway.app" in loaded and "gateway.uplinks.mqtt.uplink" in loaded  # it did run the gateway
    assert sorted(m for m in loaded if m.split(".")[0] in UNCONFIGURED) == []
    assert (
        not {
            "gateway.mail.message",
            "gateway.mail.queue",
            "gateway.mail.sender",
            "gateway.fleet.service",
            "gateway.web.app",
        }
        & loaded
    )


def test_the_features_load_where_they_are_configured() -> None:
    code = """
import sys
from gateway.config import parse_config
from gateway.mail import MailQueue, MailSender
print("aiosmtplib" in sys.modules, "cryptography" in sys.modules)
from gateway.uplinks.http.client import make_session
from gateway.tls import TlsSection
import asyncio
async def session():
    await make_session(tls=TlsSection(), timeout_s=1.0, where="uplinks[0]").close()
asyncio.run(session())
print("aiohttp" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.split() == ["True", "True", "True"], out.stderr


def test_edgegw_run_has_the_same_parser_as_the_full_one(capsys: pytest.CaptureFixture[str]) -> None:
    run = cli._run_parser().parse_args(["run", "--config", "/x.toml"])
    full = cli.build_parser().parse_args(["run", "--config", "/x.toml"])
    assert vars(run) == vars(full)
    with pytest.raises(SystemExit):
        cli.main(["--help"])  # every other command still gets the full parser
    usage = capsys.readouterr().out
    assert all(f"    {name} " in usage for name in ("run", "check-config", "status", "mail", "web"))

"""A gateway started with what `edgegw check-config` warns of runs, and says each warning once at WARNING.

Review cfgwarn: the two config errors of commit da21757 (credentials over plain http off the box, an uplink's own
`value_encoding = "reject"` under a laxer `[ngsi]`) stopped a box upgraded with such a config. They are warnings:
the gateway logs the value_encoding one where it loads the config, and each HTTP uplink says its own at its
start, naming itself, so nothing is said twice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

from gateway import app, logs
from gateway.control.client import ControlClient
from gateway.secrets import SecretStore
from tests.control.running import eventually, socket_dir

CONFIG = """\
[gateway]
id = "gw-001"
data_dir = "{data_dir}"
control_socket = "{socket}"
log_format = "json"

[[uplinks]]
name = "closed-orion"
type = "orion"
url = "http://orion.invalid:1026"
x_auth_token = "secret:orion_token"

[[uplinks]]
name = "strict-orion"
type = "orion"
url = "https://orion.example.jp"
value_encoding = "reject"
"""


async def test_a_start_warns_once_of_each_and_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    SecretStore(data).set("orion_token", "tok-s3cr3t")
    sockets = socket_dir()
    socket = sockets / "control.sock"
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(data_dir=data, socket=socket))
    task = asyncio.create_task(app.serve(config, status_interval_s=0.05))
    try:
        client = ControlClient(socket, timeout_s=5.0)
        await eventually(lambda: asyncio.to_thread(socket.exists), bool, "the control socket")
        assert [u["name"] for u in (await client.call("status"))["uplinks"]] == ["closed-orion", "strict-orion"]
        await client.close()
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
        warnings = [(line["component"], line["message"]) for line in logs.RING.lines(level="warning")]
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        logs.setup("info", "json")
        shutil.rmtree(sockets, ignore_errors=True)
    # the ring is the process's: only this gateway's lines (its uplinks' names, its config's path)
    ours = [w for w in warnings if w[0] in ("closed-orion", "strict-orion") or str(config) in w[1]]
    assert ours == [
        (
            "gateway",
            f'{config}: uplinks[1].value_encoding: "reject" is stricter than [ngsi] value_encoding = "percent"; '
            "readings are checked at the source with [ngsi]'s, so a value such as 人吉(水の手橋) passes there and is "
            'dead-lettered on this uplink instead of delivered: set [ngsi] value_encoding = "reject" to refuse such '
            "readings at the source (counted and logged), or drop this uplink's value_encoding to send them encoded",
        ),
        (
            "closed-orion",
            "credentials go over plain http to orion.invalid: anyone on the network between can read and reuse them; "
            "use https://, or set allow_insecure_http = true if this network is closed",
        ),
    ]
    assert not [w for w in warnings if "s3cr3t" in w[1]]

"""A user the socket does not admit is told so, not that the gateway is down while it runs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.server import ControlServer
from tests.control.running import config_text, socket_dir

ROOT = Path(__file__).resolve().parents[2]

# Run apart from the test: root passes any file mode, so as root the client drops to nobody, after its
# imports (the interpreter may live where nobody cannot read).
CLIENT = """
import asyncio, os, sys
from gateway.control.client import ControlClient
from gateway.control.protocol import ControlUnavailable

async def main():
    client = ControlClient(sys.argv[1], timeout_s=5.0)
    try:
        await client.call("status")
    except ControlUnavailable as exc:
        print(exc.code, exc.message, sep="\\n")
    else:
        print("answered")
    await client.close()

loop = asyncio.new_event_loop()  # made before the drop: nothing imported after it
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
loop.run_until_complete(main())
"""


async def test_a_user_not_allowed_on_the_socket_is_told_to_use_the_gateways_user_or_group(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", "http://127.0.0.1:9", rate=1.0))
    directory = socket_dir()
    directory.chmod(0o711)  # others may reach the socket: the socket's own mode is what refuses
    path = directory / "control.sock"
    try:
        async with ControlServer(path, Runtime(config, load_config(config)), tools=[]):
            path.chmod(0o000)
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", CLIENT, str(path)],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=ROOT,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "unavailable",
        f"control socket {path}: permission denied, got EACCES (Permission denied); run as the gateway's user or "
        "a member of its group (edgegw)",
    ]

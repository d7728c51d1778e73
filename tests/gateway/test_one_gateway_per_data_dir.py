"""One `edgegw run` per data directory: a second one stops before it opens the buffer, whenever it starts.

The control socket used to be the only guard, and it is bound only after the buffer is open and checked
(seconds to minutes with a backlog): a second gateway started in that window opened the same buffer,
then ran on without a socket, both reading the devices and delivering from one buffer.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway import app, cli, logs
from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.client import ControlClient
from gateway.control.server import ControlServer
from tests.control.running import config_text, eventually, socket_dir
from tests.support.orion_double import OrionDouble

# Another gateway in its window between taking the data directory and binding its socket: it holds
# the lock and has written its pid, as `edgegw run` does before it opens the buffer.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("held", flush=True)
time.sleep(60)
"""


@contextmanager
def gateway_config(tmp_path: Path, orion_url: str) -> Iterator[tuple[Path, Path]]:
    """A config with its own control socket (pytest's tmp_path can be too long for one); (config, socket)."""
    directory = socket_dir()
    path = directory / "control.sock"
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(tmp_path / "data", orion_url, rate=1.0).replace(
            'id = "gw-control"', f'id = "gw-control"\ncontrol_socket = "{path}"\nlog_format = "json"'
        )
    )
    try:
        yield config, path
    finally:
        logs.setup("info", "json")
        shutil.rmtree(directory, ignore_errors=True)


def locked_by_someone(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def errors() -> list[str]:
    return [line["message"] for line in logs.RING.lines(level="error")]


async def test_a_second_gateway_stops_at_once_while_another_holds_the_data_dir(
    orion_double: OrionDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lock = data / "gateway.lock"
    with gateway_config(tmp_path, orion_double.url) as (config, path):
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, str(lock), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert holder.stdout is not None
            assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
            assert await asyncio.wait_for(app.serve(config), 5) == 2
            assert errors()[-1] == (
                f"not started: data directory {data}: another gateway runs on it, got {lock} held by pid "
                f"{holder.pid}; stop that gateway first (systemctl stop edgegw), or give this one its own "
                "gateway.data_dir"
            )
            assert not (data / "buffer.db").exists()  # stopped before it opened the buffer
            assert not path.exists()
        finally:
            holder.kill()  # as kill -9: the kernel lets go of its lock, the file stays with its pid
            await holder.wait()
        assert lock.read_text() == f"{holder.pid}\n"

        task = asyncio.create_task(app.serve(config, status_interval_s=0.05))
        try:
            client = ControlClient(path, timeout_s=5.0)
            await eventually(lambda: asyncio.to_thread(path.exists), bool, "the control socket")
            assert (await client.call("status"))["gateway"] == "gw-control"
            await client.close()
            assert lock.read_text() == f"{os.getpid()}\n"
            assert locked_by_someone(lock)
            # the tools that read the data directory beside a running gateway take no such lock (an flock
            # taken by another descriptor of this process would be refused all the same)
            assert await asyncio.to_thread(cli.main, ["buffer", "stats", "-c", str(config)]) == 0
            assert "uplink" in capsys.readouterr().out
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(task, 10) == 0
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    assert not locked_by_someone(lock)  # let go at the stop, after the buffer closed
    assert lock.read_text() == ""


async def test_another_gateway_on_the_socket_once_the_buffer_is_open_stops_this_one(
    orion_double: OrionDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gateway of another data_dir sharing the control socket's path binds it while this one opens its
    # buffer: running on without the socket would leave the box with one gateway nobody can reach.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_config = other_dir / "gateway.toml"
    other_config.write_text(config_text(other_dir / "data", orion_double.url, rate=1.0))
    with gateway_config(tmp_path, orion_double.url) as (config, path):
        rival = ControlServer(path, Runtime(other_config, load_config(other_config)), tools=[])
        start = Runtime.start

        async def start_then_rival_binds(runtime: Runtime) -> None:
            await start(runtime)
            await rival.start()

        monkeypatch.setattr(Runtime, "start", start_then_rival_binds)
        try:
            assert await asyncio.wait_for(app.serve(config), 5) == 2
            assert errors()[-1] == (
                f"not started: control socket {path}: another gateway answers on it, got a connection; "
                "stop that gateway first, or give this one its own data_dir or [gateway] control_socket"
            )
            assert path.exists()  # the other one's socket is left alone
            client = ControlClient(path, timeout_s=5.0)
            assert (await client.call("tools")) == []  # and it still answers
            await client.close()
        finally:
            await rival.stop()
    assert not locked_by_someone(tmp_path / "data" / "gateway.lock")
    # its buffer was closed at that stop: its delivery loop is not running on behind it
    assert "buffer: closed" in " ".join(line["message"] for line in logs.RING.lines(level="info"))

"""The socket's life: mode 0660, a stale file replaced, a live one refused, removed at stop, killed clients harmless."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
from pathlib import Path

import pytest

from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.client import ControlClient
from gateway.control.protocol import ControlUnavailable
from gateway.control.server import ControlServer, ControlSocketError, ControlSocketInUse
from tests.control.running import config_text, eventually, running_gateway, socket_dir
from tests.support.orion_double import OrionDouble


def _runtime(tmp_path: Path, url: str) -> Runtime:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path / "data", url, rate=1.0))
    return Runtime(path, load_config(path))


async def test_the_socket_is_owner_and_group_only_and_removed_at_stop(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    old = os.umask(0o077)  # as systemd's UMask= gives it
    try:
        async with running_gateway(tmp_path, orion_double.url, rate=1.0) as gw:
            mode = os.stat(gw.socket).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
            path = gw.socket
    finally:
        os.umask(old)
    assert not path.exists()


async def test_a_stale_socket_is_replaced_and_a_live_one_refused(orion_double: OrionDouble, tmp_path: Path) -> None:
    directory = socket_dir()
    path = directory / "control.sock"
    try:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))  # bound, never listening, then closed: what a killed gateway leaves
        stale.close()
        runtime = _runtime(tmp_path, orion_double.url)
        async with ControlServer(path, runtime, tools=[]):
            second = ControlServer(path, runtime, tools=[])
            with pytest.raises(ControlSocketInUse) as refused:
                await second.start()
            assert str(refused.value) == (
                f"control socket {path}: another gateway answers on it, got a connection; stop that gateway "
                "first, or give this one its own data_dir or [gateway] control_socket"
            )
            assert path.exists()  # the refused one did not take it away
        path.write_text("not a socket")
        with pytest.raises(ControlSocketInUse) as in_the_way:
            await ControlServer(path, runtime, tools=[]).start()
        assert str(in_the_way.value) == (
            f"control socket {path}: something else is at that path, got a file; remove it or set [gateway] control_socket"
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_no_gateway_is_control_unavailable(tmp_path: Path) -> None:
    directory = socket_dir()
    try:
        client = ControlClient(directory / "control.sock", timeout_s=1.0)
        with pytest.raises(ControlUnavailable) as missing:
            await client.call("status")
        await client.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert missing.value.code == "unavailable"
    assert missing.value.message.startswith(
        f"control socket {directory / 'control.sock'}: the gateway is not answering"
    )
    assert missing.value.message.endswith("is edgegw running?")


async def test_a_client_killed_mid_request_disturbs_nobody(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        for _ in range(20):
            # half a request, then gone; a whole request whose reply is never read, then gone
            _, w = await asyncio.open_unix_connection(str(gw.socket))
            w.write(b'{"id": 1, "op": "lat')
            await w.drain()
            w.transport.abort()
            _, w = await asyncio.open_unix_connection(str(gw.socket))
            w.write(b'{"id": 1, "op": "latest", "args": {}}\n' * 50)
            await w.drain()
            w.transport.abort()
        status = await gw.client.call("status")
        assert status["control"]["bad_requests"] == {}
        await eventually(lambda: gw.client.call("latest"), lambda doc: doc["total"] == 3, "every gauge's reading")
        assert all(a["state"] == "running" for a in status["adapters"])


async def test_serve_opens_the_socket_reloads_on_sighup_and_removes_it_at_sigterm(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    from gateway import app, logs

    directory = socket_dir()
    path = directory / "control.sock"
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(tmp_path / "data", orion_double.url, rate=1.0).replace(
            'id = "gw-control"', f'id = "gw-control"\ncontrol_socket = "{path}"\nlog_format = "json"'
        )
    )
    task = asyncio.create_task(app.serve(config, status_interval_s=0.05))
    try:
        client = ControlClient(path, timeout_s=5.0)
        await eventually(lambda: asyncio.to_thread(path.exists), bool, "the control socket")
        assert (await client.call("status"))["gateway"] == "gw-control"
        config.write_text(config.read_text().replace("rate = 1.0", "rate = 2.0"))
        os.kill(os.getpid(), signal.SIGHUP)
        doc = await eventually(
            lambda: client.call("status"),
            lambda d: bool(d["adapters"]) and "2/s" in d["adapters"][0]["diagnostics"]["summary"],
            "the reloaded rate",
        )
        assert doc["adapters"][0]["diagnostics"]["summary"] == "river-level, 3 entities at 2/s"
        await client.close()
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
        assert not path.exists()
    finally:
        if not task.done():
            task.cancel()
        logs.setup("info", "json")
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_socket_path_too_long_is_a_clear_error(orion_double: OrionDouble, tmp_path: Path) -> None:
    long_path = Path("/tmp") / ("x" * 120) / "control.sock"
    server = ControlServer(long_path, _runtime(tmp_path, orion_double.url), tools=[])
    with pytest.raises(ControlSocketError) as refused:
        await server.start()
    assert str(refused.value) == (
        f"control socket {long_path}: path longer than 107 bytes, got {len(str(long_path))}; "
        "set [gateway] control_socket to a shorter path"
    )


async def test_serve_does_not_start_beside_a_gateway_answering_on_its_socket(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway import app, logs

    directory = socket_dir()
    path = directory / "control.sock"
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(tmp_path / "data", orion_double.url, rate=1.0).replace(
            'id = "gw-control"', f'id = "gw-control"\ncontrol_socket = "{path}"\nlog_format = "json"'
        )
    )
    other = tmp_path / "other"
    other.mkdir()
    try:
        async with ControlServer(path, _runtime(other, orion_double.url), tools=[]):
            assert await app.serve(config) == 2
        assert not (tmp_path / "data" / "buffer.db").exists()  # stopped before it opened the buffer
    finally:
        logs.setup("info", "json")
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_gateway_that_never_answers_is_unavailable_after_the_timeout() -> None:
    directory = socket_dir()
    path = directory / "control.sock"

    gone = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads until the client gives up, never answers
        writer.close()
        await writer.wait_closed()
        gone.set()

    server = await asyncio.start_unix_server(mute, path=str(path))
    try:
        client = ControlClient(path, timeout_s=0.2)
        with pytest.raises(ControlUnavailable) as silent:
            await client.call("status")
        await client.close()
        await asyncio.wait_for(gone.wait(), 2)  # the client hung up after its timeout
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(directory, ignore_errors=True)
    assert silent.value.message == (
        f"control socket {path}: no reply to status within 0.2 s; is the gateway busy or stopped?"
    )

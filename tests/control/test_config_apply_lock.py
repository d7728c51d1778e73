"""Config applies from every ConfigOps serialised by one flock beside the file; a crash between write and record healed.

The control server and the fleet service each make their own ConfigOps (the fleet one per bundle):
a web UI apply and a remote bundle at once used to interleave, leaving the file empty on disk for
a moment, "ok" for a text that was not live, and write_failed for one that was.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.control.config_versions import FILE, ConfigVersions
from gateway.control.ops_config import FIRST, UNRECORDED, ConfigOps, lock_path, parse_text
from gateway.control.protocol import ControlError
from gateway.storage.files import write_atomic
from tests.control.running import config_text, running_gateway
from tests.support.orion_double import OrionDouble
from tests.support.tmpfs import fill


class Poller(threading.Thread):
    """A reader of the config file (the web UI's config.get, `edgegw check-config`) polling through the race."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="config-reader")
        self.path = path
        self.stop = threading.Event()
        self.reads = 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                self.bad.append(repr(exc))
                continue
            self.reads += 1
            if not data.startswith(b"[gateway]"):
                self.bad.append(repr(data[:40]))


async def test_a_web_ui_apply_and_a_remote_bundle_at_once_end_with_the_last_recorded_version_live(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        web_text = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:web-")
        remote_text = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:remote-")
        fleet = ConfigOps(gw.runtime, clock=gw.server.clock)  # as FleetService.offer makes it: a lock of its own

        async def apply(ops: ConfigOps, text: str, actor: str) -> tuple[int, bool, bool]:
            result = await ops.apply(text, actor=actor, comment="")
            # in the step the answer is given: is what the caller sent on disk and running?
            return result["version"], gw.config_path.read_text() == text, gw.runtime.config == parse_text(text)

        reader = Poller(gw.config_path)
        reader.start()
        try:
            web, remote = await asyncio.gather(
                apply(gw.server.config_ops, web_text, "tanaka"),  # what config.apply from the web UI runs
                apply(fleet, remote_text, "remote-config"),
            )
        finally:
            reader.stop.set()
            await asyncio.to_thread(reader.join)
        versions = await gw.client.call("config.versions")
        sent = {web[0]: web_text, remote[0]: remote_text}
        told = {v: (await gw.client.call("config.version", version=v))["text"] for v in sent}
        live = gw.config_path.read_text()
        running = gw.runtime.config
    assert reader.bad == [] and reader.reads > 0  # never empty, never missing, never mixed
    assert web[1:] == remote[1:] == (True, True)  # no "ok" for a text that was not live
    assert sorted(sent) == [2, 3]
    assert [(v["version"], v["actor"]) for v in versions][2:] == [(1, "file")]
    assert told == sent  # each caller's version holds its own text
    assert live == sent[3]  # the last recorded version is the file
    assert running == parse_text(live)
    assert not [p.name for p in gw.config_path.parent.iterdir() if p.name.endswith(".tmp")]


async def test_an_apply_waits_while_another_process_holds_the_lock_and_reads_the_file_after(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        theirs = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:theirs-")
        ours = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:ours-")
        first = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:first-")
        await gw.client.call("config.apply", text=first, actor="tanaka")
        fd = os.open(lock_path(gw.config_path), os.O_RDWR | os.O_CREAT, 0o600)  # as another process's apply
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            applying = asyncio.create_task(gw.server.config_ops.apply(ours, actor="tanaka", comment="mine"))
            await asyncio.sleep(0)  # the apply ran up to its first wait: the lock
            assert not applying.done()
            write_atomic(gw.config_path, theirs.encode(), None, durable=True)  # the other writer, unrecorded
        finally:
            os.close(fd)
        assert await applying == {"version": 4, "reloaded": True}
        versions = await gw.client.call("config.versions")
        kept = await gw.client.call("config.version", version=3)
    assert [(v["version"], v["actor"], v["comment"]) for v in versions] == [
        (4, "tanaka", "mine"),
        (3, "file", UNRECORDED),  # read after the other writer let go, not before
        (2, "tanaka", ""),
        (1, "file", FIRST),
    ]
    assert kept["text"] == theirs
    assert gw.config_path.read_text() == ours


async def test_a_config_written_but_not_recorded_before_a_kill_is_recorded_at_the_next_start(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    before = config_text(data, orion_double.url, prefix="urn:ngsi-ld:WaterObserved:before-")
    applied = config_text(data, orion_double.url, prefix="urn:ngsi-ld:WaterObserved:applied-")
    cut_short = config_text(data, orion_double.url, prefix="urn:ngsi-ld:WaterObserved:cut-short-")
    # what a kill between write_atomic and store.record leaves: the file one apply ahead of the history
    store = ConfigVersions(data / FILE)
    store.record(before, actor="file", at=1.0, comment=FIRST)
    store.record(applied, actor="tanaka", at=2.0, comment="")
    store.close()
    async with running_gateway(tmp_path, orion_double.url, text=cut_short) as gw:
        assert (await gw.client.call("config.get"))["version"] is None
        after = config_text(data, orion_double.url, prefix="urn:ngsi-ld:WaterObserved:after-")
        assert await gw.client.call("config.apply", text=after, actor="suzuki", comment="next") == {
            "version": 4,
            "reloaded": True,
        }
        versions = await gw.client.call("config.versions")
        healed = await gw.client.call("config.version", version=3)
        assert await gw.client.call("config.rollback", version=3, actor="suzuki") == {"version": 5, "reloaded": True}
        back = gw.config_path.read_text()
    assert [(v["version"], v["actor"], v["comment"]) for v in versions] == [
        (4, "suzuki", "next"),
        (3, "file", UNRECORDED),
        (2, "tanaka", ""),
        (1, "file", FIRST),
    ]
    assert healed["text"] == back == cut_short


async def test_a_lock_file_that_cannot_be_opened_is_a_write_failure_naming_the_directory(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_bytes()
        lock_path(gw.config_path).mkdir()  # root in CI: a directory refuses even root, a mode would not
        new = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:b-")
        with pytest.raises(ControlError) as failed:
            await gw.client.call("config.apply", text=new, actor="tanaka")
        assert gw.config_path.read_bytes() == before
        assert await gw.client.call("config.versions") == []
    assert (failed.value.code, failed.value.message) == (
        "write_failed",
        f"config: {gw.config_path} not written, got Is a directory; the gateway's user needs write access to "
        f"{tmp_path} (systemd: ReadWritePaths=)",
    )


async def test_a_full_disk_under_the_config_is_a_write_failure_that_leaves_the_file_and_no_temp_file(
    orion_double: OrionDouble, tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    etc = tmpfs("1m", at=tmp_path / "etc")  # /etc/edgegw on a disk of its own, data_dir elsewhere
    text = config_text(tmp_path / "data", orion_double.url)
    async with running_gateway(etc, orion_double.url, text=text) as gw:
        fill(etc)
        new = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:b-")
        with pytest.raises(ControlError) as failed:
            await gw.client.call("config.apply", text=new, actor="tanaka")
        versions = await gw.client.call("config.versions")
        left = sorted(p.name for p in etc.iterdir())
        on_disk = gw.config_path.read_text()
    assert (failed.value.code, failed.value.message) == (
        "write_failed",
        f"config: {etc / 'gateway.toml'} not written, got No space left on device; the gateway's user needs write "
        f"access to {etc} (systemd: ReadWritePaths=)",
    )
    assert on_disk == text
    assert left == [".gateway.toml.lock", "filler", "gateway.toml"]
    assert [(v["version"], v["actor"], v["comment"]) for v in versions] == [(1, "file", FIRST)]  # live, so kept

"""Signed remote configuration: bad bundles refused, a bundle that breaks the uplink rolled back, every step audited.

A real Runtime (the gateway across reloads) applies the bundle through the control socket's
ConfigOps (config versions, atomic write, reload); the fleet service's clock is injected, so the
health window passes without waiting for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import Runtime
from gateway.audit.log import AuditLog
from gateway.config import load_config
from gateway.control.config_versions import FILE, ConfigVersions, sha256_text
from gateway.control.ops_config import FIRST, ConfigOps, lock_path, parse_text
from gateway.fleet import remote
from gateway.fleet.remote import BundleRefused, public_key_b64, sign_bundle, verify_bundle
from gateway.records import Command
from gateway.storage.files import write_atomic
from tests.fleet.conftest import Clock, until
from tests.support.orion_double import OrionDouble, TlsMaterial
from tests.support.ports import free_port

KEY = Ed25519PrivateKey.generate()
ISSUED = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def config_text(tmp_path: Path, orion_url: str, *, rate: float = 0.001) -> str:
    return f"""
[gateway]
id = "gw-fleet"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "gauges"
type = "simulated"
rate = {rate}

[[uplinks]]
name = "platform"
type = "orion"
url = "{orion_url}"
retry_initial_s = 0.05
retry_max_s = 0.2

[fleet.alarms]
rules = []

[fleet.remote_config]
public_key = "{public_key_b64(KEY)}"
health_window_s = 600
"""


def bundle(text: str, serial: int, key: Ed25519PrivateKey = KEY, gateway: str = "gw-fleet") -> bytes:
    return sign_bundle(key, gateway=gateway, serial=serial, config=text, issued_at=ISSUED)


def test_verification_refuses_what_is_not_signed_by_the_pinned_key_or_not_for_this_box() -> None:
    pinned = public_key_b64(KEY)
    good = bundle("x = 1", 5)
    assert verify_bundle(good, public_key=pinned, gateway="gw-fleet", last_serial=4).serial == 5
    with pytest.raises(BundleRefused) as info:
        verify_bundle(
            bundle("x = 1", 5, key=Ed25519PrivateKey.generate()), public_key=pinned, gateway="gw-fleet", last_serial=0
        )
    assert info.value.code == "bad_signature"
    assert str(info.value) == (
        "remote config: signature does not verify with the pinned key, got a bundle signed by another key or "
        "altered; nothing applied"
    )
    tampered = bytearray(good)
    doc = json.loads(bytes(tampered))
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["config"] = "x = 2"
    doc["payload"] = base64.b64encode(json.dumps(payload, sort_keys=True).encode()).decode()
    with pytest.raises(BundleRefused, match="signature does not verify"):
        verify_bundle(json.dumps(doc).encode(), public_key=pinned, gateway="gw-fleet", last_serial=0)
    with pytest.raises(BundleRefused, match="bundle is for gateway 'gw-other', got it on 'gw-fleet'"):
        verify_bundle(bundle("x", 9, gateway="gw-other"), public_key=pinned, gateway="gw-fleet", last_serial=0)
    with pytest.raises(BundleRefused, match="serial must be above 5, got 5; an old bundle is never applied"):
        verify_bundle(good, public_key=pinned, gateway="gw-fleet", last_serial=5)
    with pytest.raises(BundleRefused, match="not a config bundle"):
        verify_bundle(b"{}", public_key=pinned, gateway="gw-fleet", last_serial=0)


def remote_step(orion: OrionDouble) -> tuple[int, str] | None:
    """(serial, step) of the remote-config step the platform's Device entity shows."""
    for e in orion.entities.values():
        if e["type"] == "Device" and "remoteConfig" in e:
            value = e["remoteConfig"]["value"]
            return value["serial"], value["step"]
    return None


def url_of(runtime: Runtime) -> str:
    return str(runtime.config.uplinks[0].model_dump()["url"])


def steps_of(tmp_path: Path) -> list[tuple[str, int | None, str]]:
    return [(e["step"], e["serial"], e["detail"]) for e in remote.RemoteState(tmp_path / "data").doc["events"]]


def settled(serial: int) -> bool:
    """Bundle `serial`'s apply and rollback have ended in this process: each writes its audit entry last."""
    return not remote.running(f"remote-config:{serial}") and not remote.running(f"remote-config-rollback:{serial}")


def audit_actions(tmp_path: Path) -> list[str]:
    return [e.action for e in reversed(AuditLog(tmp_path / "data" / "web").entries(actor="remote-config"))]


async def test_a_bad_signature_is_refused_and_audited(orion_double: OrionDouble, tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        other = bundle(config_text(tmp_path, orion_double.url, rate=0.5), 1, key=Ed25519PrivateKey.generate())
        result = await fleet.offer(other, via="push")
        assert result["applied"] is False and result["code"] == "bad_signature"
        # the same, pushed as a platform command to the gateway's Device entity
        answer = await runtime.gateway.router.dispatch(
            Command(command_id="c1", entity_id="urn:ngsi-ld:Device:gw-fleet", name="configBundle", value=other.decode())
        )
        assert (answer.ok, answer.info) == (
            False,
            "remote config: signature does not verify with the pinned key, got a bundle signed by another key or "
            "altered; nothing applied",
        )
    assert path.read_text() == original
    assert audit_actions(tmp_path) == ["fleet.remote_config.refused", "fleet.remote_config.refused"]


async def test_a_bundle_that_breaks_the_uplink_is_rolled_back(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
        result = await first.fleet.offer(bundle(broken, 1), via="push")
        assert result == {"applied": True, "serial": 1}
        await until(lambda: runtime.gateway is not first and url_of(runtime) != orion_double.url)
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(5))  # the Device report waits for the broken uplink
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(300))
        assert runtime.gateway is second  # not yet: the window is 600 s
        await second.fleet.tick(clock.advance(300))
        await until(lambda: runtime.gateway is not second and url_of(runtime) == orion_double.url)
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        third = runtime.gateway
        assert third.fleet is not None
        await third.fleet.tick(clock.advance(5))
        await until(lambda: remote_step(orion_double) == (1, "rolled_back"))  # told to the platform
    assert path.read_text() == original
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
        "fleet.remote_config.rolling_back",
        "fleet.remote_config.rolled_back",
    ]
    steps = [e["step"] for e in remote.RemoteState(tmp_path / "data").doc["events"]]
    assert steps == ["verified", "applied", "rolling_back", "rolled_back"]


async def test_a_good_bundle_is_confirmed_once_the_uplink_delivers(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    async with runtime_on(path, config_text(tmp_path, orion_double.url)) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        new = config_text(tmp_path, orion_double.url, rate=0.002)
        assert (await first.fleet.offer(bundle(new, 7), via="fetch"))["applied"] is True
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        await until(lambda: not remote.running("remote-config:7"))  # its `applied` audit entry written: ticks judge
        second = runtime.gateway
        assert second is not first and second.fleet is not None
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].delivered > 0)
        await second.fleet.tick(clock.advance(5))
        assert second.fleet.remote_state.pending is None
        # the same bundle again is a replay
        assert (await second.fleet.offer(bundle(new, 7), via="fetch"))["code"] == "replayed"
    assert path.read_text() == new
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
        "fleet.remote_config.confirmed",
        "fleet.remote_config.refused",
    ]


async def test_a_bundle_fetched_over_https_on_the_interval_is_applied(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, tls_material: TlsMaterial, fetch_on_schedule: None
) -> None:
    served: list[bytes] = []
    app = web.Application()

    async def bundle_file(request: web.Request) -> web.Response:
        return web.Response(body=served[-1]) if served else web.Response(status=404)

    app.router.add_get("/gw-fleet/bundle.json", bundle_file)
    runner = web.AppRunner(app)
    await runner.setup()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(str(tls_material.server_cert), str(tls_material.server_key))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/gw-fleet/bundle.json"
    extra = f'url = "{url}"\ninterval_s = 60\ntls = {{ ca_file = "{tls_material.ca_file}" }}\n'
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path, orion_double.url) + extra)
    runtime = Runtime(path, load_config(path))
    await runtime.start()
    try:
        first = runtime.gateway
        assert first.fleet is not None
        await first.fleet.tick(clock.now)  # 404: nothing to apply yet, said in the log, retried at the interval
        assert runtime.gateway is first
        new = config_text(tmp_path, orion_double.url, rate=0.002) + extra
        served.append(bundle(new, 2))
        await first.fleet.tick(clock.advance(30))  # not yet due
        assert runtime.gateway is first
        await first.fleet.tick(clock.advance(30))
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        assert runtime.gateway is not first
    finally:
        await runtime.stop()
        await runner.cleanup()
    assert path.read_text() == new


def test_a_bundle_that_breaks_the_parser_is_refused_as_malformed() -> None:
    pinned = public_key_b64(KEY)
    with pytest.raises(BundleRefused, match="not a config bundle, got RecursionError") as deep:
        verify_bundle(b"[" * 100_000, public_key=pinned, gateway="gw-fleet", last_serial=0)
    payload = b'{"gateway": "gw-fleet", "serial": 1e400, "issued_at": "2026-07-01T03:00:00Z", "config": ""}'
    doc = {
        "format": json.loads(bundle("x", 1))["format"],
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(KEY.sign(payload)).decode(),
    }
    with pytest.raises(BundleRefused) as huge:
        verify_bundle(json.dumps(doc).encode(), public_key=pinned, gateway="gw-fleet", last_serial=0)
    assert str(huge.value) == "remote config: signed payload: serial must be an integer, got Infinity (number)"
    assert deep.value.code == huge.value.code == "bad_format"


async def test_a_bundle_is_fetched_whole_however_many_pieces_it_comes_in() -> None:
    big = bundle("# " + "x" * 300_000 + "\n", 3)  # ~400 KB: many reads on a real network
    bodies = {"/big": big, "/huge": b" " * (remote.MAX_BUNDLE_BYTES + 1)}

    async def piecewise(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        body = bodies[request.path]
        for at in range(0, len(body), 32_768):
            await resp.write(body[at : at + 32_768])
            await asyncio.sleep(0.001)  # each piece its own segment
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/{name}", piecewise)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        assert await remote.fetch(f"{base}/big") == big
        with pytest.raises(BundleRefused, match=rf"bundle too large, got more than {remote.MAX_BUNDLE_BYTES} bytes"):
            await remote.fetch(f"{base}/huge")
    finally:
        await runner.cleanup()


def versions_of(tmp_path: Path) -> list[tuple[int, str, str, str]]:
    """(version, actor, comment, text) of every config version recorded, newest first."""
    store = ConfigVersions(tmp_path / "data" / FILE)
    try:
        listed = [store.get(v.version) for v in store.list()]
        return [(v.version, v.actor, v.comment, v.text) for v in listed if v is not None]
    finally:
        store.close()


async def test_a_config_applied_while_the_bundle_waits_for_the_lock_is_what_its_rollback_restores(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    local = config_text(tmp_path, orion_double.url, rate=0.002)  # an admin's change, landing before the bundle
    async with runtime_on(path, config_text(tmp_path, orion_double.url)) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)  # an apply under way elsewhere
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            assert await first.fleet.offer(bundle(broken, 1), via="push") == {"applied": True, "serial": 1}
            write_atomic(path, local.encode(), None, durable=True)  # that apply's write, unrecorded
        finally:
            os.close(fd)
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        second = runtime.gateway
        assert second is not first and second.fleet is not None
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(600))
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        await until(lambda: runtime.gateway is not second)
        running = runtime.config
    assert path.read_text() == local  # the admin's change, not the text from before it
    assert running == parse_text(local)
    assert versions_of(tmp_path) == [
        (3, "remote-config", "rollback of remote bundle 1", local),
        (2, "remote-config", "remote bundle 1", broken),
        (1, "file", FIRST, local),  # the file the bundle replaced, read under the lock it was written under
    ]


async def test_a_config_applied_after_the_bundle_is_kept_when_the_health_window_ends(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.toml"
    async with runtime_on(path, config_text(tmp_path, orion_double.url)) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
        assert (await first.fleet.offer(bundle(broken, 1), via="push"))["applied"] is True
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        # the admin's own change on top of the bundle (the web UI's apply); its uplink still does not deliver
        newer = config_text(tmp_path, f"http://127.0.0.1:{free_port()}", rate=0.002)
        assert await ConfigOps(runtime, clock=clock).apply(newer, actor="tanaka", comment="mine") == {
            "version": 3,
            "reloaded": True,
        }
        third = runtime.gateway
        assert third.fleet is not None
        await third.fleet.tick(clock.advance(5))
        await until(lambda: third.loops[0].state.value == "backing-off")
        fleet_log = logging.getLogger("gateway.fleet.service")
        fleet_log.addHandler(caplog.handler)  # each reload set up the root's handlers again, without caplog's
        try:
            await third.fleet.tick(clock.advance(600))
            ends = {"fleet.remote_config.rolled_back", "fleet.remote_config.rollback_skipped"}
            await until(lambda: bool(ends & set(audit_actions(tmp_path))))
        finally:
            fleet_log.removeHandler(caplog.handler)
        assert runtime.gateway is third
    assert path.read_text() == newer
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
        "fleet.remote_config.rolling_back",
        "fleet.remote_config.rollback_skipped",
    ]
    state = remote.RemoteState(tmp_path / "data")
    detail = (
        "not rolled back: the live config is no longer bundle 1's, got version 3 (applied after it); it is kept. "
        "The config from before the bundle is version 1: roll back to it on the configuration page if it is wanted"
    )
    assert state.doc["events"][-1] == {"at": clock.now, "step": "rollback_skipped", "serial": 1, "detail": detail}
    assert state.pending is None
    assert [v[:3] for v in versions_of(tmp_path)] == [
        (3, "tanaka", "mine"),
        (2, "remote-config", "remote bundle 1"),
        (1, "file", FIRST),
    ]
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "rollback_skipped" in r.getMessage()] == [
        ("WARNING", f"remote config rollback_skipped: {detail}")
    ]


async def test_a_bundle_written_just_before_a_kill_is_still_rolled_back_by_the_next_start(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path, original, broken = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    # a kill between the bundle's write and the record of its reload: the box comes back up on it
    killed_mid_apply(path, original, on_disk=broken, guard_ran=True)
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(600))  # the old window's end: the new one starts now
        assert runtime.gateway is second
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(599))
        assert runtime.gateway is second
        await second.fleet.tick(clock.advance(1))
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        await until(lambda: runtime.gateway is not second)
    assert path.read_text() == original
    steps = [(e["step"], e["detail"]) for e in remote.RemoteState(tmp_path / "data").doc["events"]]
    assert [s for s, _ in steps] == ["verified", "applied", "rolling_back", "rolled_back"]
    assert steps[2] == ("rolling_back", "uplinks not delivering within the health window")


@contextlib.asynccontextmanager
async def runtime_on(path: Path, text: str | None = None) -> AsyncIterator[Runtime]:
    """A gateway started on `path` (first written with `text`, if given), stopped on the way out."""
    if text is not None:
        await asyncio.to_thread(path.write_text, text)
    runtime = Runtime(path, load_config(path))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def bundle_applied_then_stopped(tmp_path: Path, orion_url: str, text: str | None = None) -> tuple[Path, str, str]:
    """A gateway on a good config given bundle 1 (`text`; default one that breaks its uplink): applied and
    reloaded, then stopped.

    Returns the config's path, the good text and the bundle's.
    """
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_url)
    sent = text if text is not None else config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        assert (await fleet.offer(bundle(sent, 1), via="push"))["applied"] is True
        await until(lambda: (remote.RemoteState(fleet.data_dir).pending or {}).get("reloaded") is True)
    return path, original, sent


def killed_mid_apply(
    path: Path, original: str, *, on_disk: str | None = None, guard_ran: bool = False, rolling_back: bool = False
) -> None:
    """What a kill during bundle 1's apply leaves (after `bundle_applied_then_stopped`): no reload noted.

    Before the apply's guard ran (it waited for the config lock) pending is as offered and the file
    untouched; with `guard_ran`, `previous` and `written_at` are noted and the file is `on_disk`
    (default `original`: killed before the write). With `rolling_back`, as the previous release then
    left it once the window ended and a second kill cut its rollback short.
    """
    write_atomic(path, (original if on_disk is None else on_disk).encode(), None, durable=True)
    state = remote.RemoteState(path.parent / "data")
    assert state.pending is not None
    verified = state.doc["events"][0]
    assert verified["step"] == "verified"
    offered = verified["at"]
    state.doc["pending"] = {k: v for k, v in state.pending.items() if k != "version"} | {
        "applied_at": offered,
        "deadline": offered + 600,
        "previous": original if guard_ran else None,
        "previous_sha256": sha256_text(original) if guard_ran else None,
        "written_at": offered if guard_ran else None,
        "reloaded": False,
    }
    state.doc["events"] = [verified]
    if rolling_back:
        state.doc["pending"]["rolling_back"] = offered + 600
        state.event(offered + 600, "rolling_back", "uplinks not delivering within the health window", 1)
    state.save()


def _killed_while_rolling_back(data_dir: Path) -> None:
    """What a kill after the rollback began leaves: pending marked, no outcome recorded."""
    state = remote.RemoteState(data_dir)
    assert state.pending is not None
    state.doc["pending"] = state.pending | {"rolling_back": 1.0}
    state.event(1.0, "rolling_back", "uplinks not delivering within the health window", 1)
    state.save()


async def test_a_rollback_cut_short_by_a_kill_is_finished_by_the_next_start(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path, original, broken = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    _killed_while_rolling_back(tmp_path / "data")
    assert path.read_text() == broken  # the kill came before the rollback's write
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(1))  # well inside a new health window: the mark decides
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        await until(lambda: runtime.gateway is not second)
    assert path.read_text() == original
    state = remote.RemoteState(tmp_path / "data")
    assert state.pending is None
    assert [(e["step"], e["detail"]) for e in state.doc["events"]][-3:] == [
        ("rolling_back", "uplinks not delivering within the health window"),
        ("rolling_back", "a rollback cut short by a restart"),
        (
            "rolled_back",
            f"back to the previous config, version {ConfigVersions(tmp_path / 'data' / FILE).list(1)[0].version}",
        ),
    ]


async def test_a_rollback_killed_after_its_write_is_not_done_twice(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path, original, _ = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    _killed_while_rolling_back(tmp_path / "data")
    write_atomic(path, original.encode(), None, durable=True)  # the rollback's write landed before the kill
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(1))
        await until(lambda: "fleet.remote_config.rollback_skipped" in audit_actions(tmp_path))
        assert runtime.gateway is second  # nothing applied, nothing reloaded
        await second.fleet.tick(clock.advance(1))  # and the next tick leaves it at that
    assert path.read_text() == original
    state = remote.RemoteState(tmp_path / "data")
    assert state.pending is None
    assert [(e["step"], e["detail"]) for e in state.doc["events"]][-2:] == [
        ("rolling_back", "a rollback cut short by a restart"),
        (
            "rollback_skipped",
            "not rolled back: the live config is the one from before bundle 1 already; nothing to undo",
        ),
    ]

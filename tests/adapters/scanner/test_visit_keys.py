"""Visit-QR keys from the secret store: a bad one is this adapter's configuration error, not the gateway's end."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.aim import FramingConfig, Suffix, unframe
from adapters.scanner.classify import ScanKind
from adapters.scanner.config import ScannerAdapterConfig
from adapters.scanner.visit_qr import encode_visit_qr
from adapters.simulated.config import SimulatedConfig
from gateway import registry
from gateway.adapter_api import AdapterContext
from gateway.errors import ConfigError
from gateway.records import Reading
from gateway.secrets import SecretStore
from gateway.supervisor import Supervisor
from tests.adapters.scanner.test_adapter import until

KEY = bytes(range(32))
NOT_HEX = "this is not a key"  # a passphrase where the hex key belongs


def scanner(tmp_path: Path, keys: Mapping[str, str]) -> ScannerAdapter:
    cfg = ScannerAdapterConfig.model_validate(
        {"name": "lib", "type": "scanner", "stations": [{"id": "watch", "purpose": "visit"}], "visit_keys": keys}
    )
    return ScannerAdapter(cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path)))


async def nothing(reading: Reading) -> None:
    raise AssertionError(f"nothing is scanned here, got {reading}")


async def test_keys_that_are_not_hex_or_too_short_are_named_with_the_fix_and_never_shown(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.set("visit-k1", NOT_HEX)
    store.set("visit-k2", KEY[:8].hex())
    adapter = scanner(tmp_path, {"K1": "secret:visit-k1", "K2": "secret:visit-k2", "K3": "secret:visit-k3"})
    with pytest.raises(ConfigError) as err:
        await adapter.run(nothing)
    assert err.value.errors == [
        "visit_keys.K1: secret:visit-k1 must be a key in hex of at least 16 bytes, got text that is not hex "
        "(not shown); set it to 32 random bytes: openssl rand -hex 32 | edgegw secret set visit-k1 --stdin",
        "visit_keys.K2: secret:visit-k2 must be a key in hex of at least 16 bytes, got 8 bytes; "
        "set it to 32 random bytes: openssl rand -hex 32 | edgegw secret set visit-k2 --stdin",
        "visit_keys.K3: secret:visit-k3: not in the secret store; set it with `edgegw secret set visit-k3`",
    ]
    assert NOT_HEX not in str(err.value) and KEY[:8].hex() not in str(err.value)


async def test_a_good_key_verifies_visit_codes_once_running(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("visit-k1", KEY.hex().upper())
    adapter = scanner(tmp_path, {"K1": "secret:visit-k1"})
    code = unframe(encode_visit_qr("P-7", "K1", KEY) + "\r", FramingConfig(suffix=Suffix.CR))
    task = asyncio.create_task(adapter.run(nothing))
    try:
        await until(lambda: adapter.classify(code).kind is ScanKind.VISIT, "the visit code verified")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_bad_key_stops_this_adapter_only_and_says_why(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("visit-k1", NOT_HEX)
    lib = scanner(tmp_path, {"K1": "secret:visit-k1"})
    sim_cfg = SimulatedConfig.model_validate({"name": "river", "type": "simulated", "rate": 200})
    # built as the gateway builds its adapters, by their registered type
    sim = registry.load(registry.ADAPTER_GROUP, "simulated")(
        sim_cfg, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))
    )
    got: list[Reading] = []

    async def emit(reading: Reading) -> None:
        got.append(reading)

    supervisor = Supervisor(emit, backoff_initial_s=0.05, backoff_max_s=0.05)
    supervisor.start([(lib.config, lib), (sim_cfg, sim)])
    try:
        await until(lambda: supervisor.status()[0].restarts >= 2 and len(got) >= 3, "two restarts, three readings")
    finally:
        await supervisor.stop(timeout_s=2)
    status = {s.name: s for s in supervisor.status()}
    assert status["lib"].last_error.startswith(
        "ConfigError: visit_keys.K1: secret:visit-k1 must be a key in hex of at least 16 bytes"
    )
    assert {r.source.adapter for r in got} == {"river"}

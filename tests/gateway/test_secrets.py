"""Secrets are stored encrypted with a root-only key and referenced from the config, never in clear."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from gateway.errors import ConfigError
from gateway.secrets import SecretRef, SecretStore, resolve


def test_store_round_trip_encrypted_and_private(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.set("orion_token", "s3cr3t-トークン")
    assert resolve("secret:orion_token", tmp_path) == "s3cr3t-トークン"
    assert b"s3cr3t" not in (tmp_path / "secrets.enc").read_bytes()
    for name in ("secrets.enc", "secrets.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert store.names() == ["orion_token"]


def test_missing_secret_and_foreign_key_are_clear_errors(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    with pytest.raises(ConfigError, match=r"secret:b: not in the secret store; set it with `edgegw secret set b`"):
        resolve("secret:b", tmp_path)
    (tmp_path / "secrets.key").write_bytes(b"A" * 43 + b"=")  # a valid Fernet key, but another one
    with pytest.raises(
        ConfigError, match=r"cannot be decrypted with .*secrets\.key; the key file does not belong to it"
    ):
        resolve("secret:a", tmp_path)


def _set_many(directory: str, prefix: str, n: int) -> None:
    for i in range(n):
        SecretStore(Path(directory)).set(f"{prefix}{i}", f"value-{prefix}{i}")


def test_writers_in_several_processes_lose_no_secret(tmp_path: Path) -> None:
    # the gateway making its keys at start, the web UI and `edgegw secret set` at the same moment
    SecretStore(tmp_path).set("first", "kept")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_set_many, [(str(tmp_path), f"p{k}-", 15) for k in range(4)])
    store = SecretStore(tmp_path)
    assert store.names() == sorted(["first", *(f"p{k}-{i}" for k in range(4) for i in range(15))])
    assert store.get("p3-14") == "value-p3-14" and store.get("first") == "kept"
    assert not list(tmp_path.glob("*.tmp"))  # no half-written store left behind


def test_update_changes_the_current_value_and_none_means_absent(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    assert store.update("ring", lambda current: current) is None  # absent, left absent: nothing written
    assert not store.store_path.exists()
    assert store.update("ring", lambda current: (current or "") + "a") == "a"
    assert store.update("ring", lambda current: (current or "") + "b") == "ab"
    inode = store.store_path.stat().st_ino
    assert store.update("ring", lambda current: current) == "ab"
    assert store.store_path.stat().st_ino == inode  # unchanged: the store is not rewritten
    with pytest.raises(ZeroDivisionError):
        store.update("ring", lambda current: str(1 / 0))
    assert store.get("ring") == "ab"  # a change that fails writes nothing
    assert store.update("ring", lambda current: None) is None
    assert store.names() == []  # None deletes


def test_get_or_create_makes_a_value_once(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    made: list[str] = []

    def make() -> str:
        made.append("k1")
        return "k1"

    assert store.get_or_create("key", make) == "k1"
    assert store.get_or_create("key", make) == "k1"
    assert made == ["k1"] and SecretStore(tmp_path).get("key") == "k1"


def _increment(directory: str, start: Barrier, results: Queue[str], times: int) -> None:
    store = SecretStore(Path(directory))
    start.wait()
    for _ in range(times):
        store.update("counter", lambda current: str(int(current or "0") + 1))
    results.put("done")


def _get_or_create(directory: str, start: Barrier, results: Queue[str]) -> None:
    store = SecretStore(Path(directory))
    start.wait()
    results.put(store.get_or_create("shared_key", lambda: os.urandom(16).hex()))


def _in_four_processes(target: Callable[..., None], *args: object) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args[:1], start, results, *args[1:])) for _ in range(4)]
    for proc in procs:
        proc.start()
    out: list[str] = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    return out


def test_updates_racing_in_four_processes_lose_no_change(tmp_path: Path) -> None:
    # a get() then a set() here lost increments: each process wrote back the value it had read
    SecretStore(tmp_path).set("other", "kept")
    _in_four_processes(_increment, str(tmp_path), 25)
    store = SecretStore(tmp_path)
    assert store.get("counter") == "100" and store.get("other") == "kept"


def test_get_or_create_racing_in_four_processes_keeps_one_value(tmp_path: Path) -> None:
    # two processes starting together must not each make (and one of them then use) its own key
    values = _in_four_processes(_get_or_create, str(tmp_path))
    assert len(set(values)) == 1 and SecretStore(tmp_path).get("shared_key") == values[0]


def test_a_store_without_its_key_is_not_given_a_new_one(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.key").rename(tmp_path / "kept-apart.key")  # e.g. a restore without include_secret_key
    with pytest.raises(ConfigError, match=r"no secret store key at .*secrets\.key, but .*secrets\.enc exists"):
        SecretStore(tmp_path).set("b", "2")
    assert not (tmp_path / "secrets.key").exists()  # the right key can still be put back
    (tmp_path / "kept-apart.key").rename(tmp_path / "secrets.key")
    SecretStore(tmp_path).set("b", "2")
    assert SecretStore(tmp_path).names() == ["a", "b"]


def test_env_reference(tmp_path: Path) -> None:
    os.environ["EDGEGW_TEST_SECRET"] = "from-env"
    try:
        assert resolve("env:EDGEGW_TEST_SECRET", tmp_path) == "from-env"
    finally:
        del os.environ["EDGEGW_TEST_SECRET"]
    with pytest.raises(ConfigError, match="env:EDGEGW_TEST_SECRET: the environment variable is not set"):
        resolve("env:EDGEGW_TEST_SECRET", tmp_path)


def test_a_secret_in_clear_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="never the secret in clear"):
        TypeAdapter(SecretRef).validate_python("hunter2")
    assert TypeAdapter(SecretRef).validate_python("secret:mqtt_password") == "secret:mqtt_password"


def test_cli_sets_a_secret_from_stdin(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "secret", "set", "orion_token", "--stdin", "-c", str(cfg)],
        input="tok-123\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert 'reference it as "secret:orion_token"' in run.stdout
    assert resolve("secret:orion_token", tmp_path / "data") == "tok-123"

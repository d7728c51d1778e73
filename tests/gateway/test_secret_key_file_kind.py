"""A `secrets.key` (or `secrets.enc`) that is no regular file: one clear line from every way into the store.

A mistaken `mkdir secrets.key`, or a restore that unpacked a folder under the key's name, made `edgegw run`
stop with "Please report this traceback" (IsADirectoryError), and `edgegw secret` and `edgegw pseudonym`
say "run it as the gateway's user (or root)", which sent the technician after the wrong problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from tests.gateway.secret_files import edgegw, every_store_command, store_box, ways_into


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A gateway config whose data directory holds a secret store with one secret, its key now a directory."""
    config = store_box(tmp_path)
    data = tmp_path / "data"
    (data / "secrets.key").unlink()
    (data / "secrets.key").mkdir()
    return config


def key_is_a_directory(data: Path) -> str:
    return (
        f"{data / 'secrets.key'}: not a secret store key, got a directory; move it aside and put back the key "
        f"file that belongs to {data / 'secrets.enc'} (kept apart from backups)"
    )


def test_edgegw_run_says_the_key_is_a_directory_in_one_line_and_exits_2(box: Path) -> None:
    run = edgegw("run", "-c", str(box))
    assert (run.returncode, run.stderr) == (2, f"{key_is_a_directory(box.parent / 'data')}\n")


@every_store_command
def test_every_command_says_the_key_is_a_directory_and_exits_2(box: Path, command: tuple[str, ...], what: str) -> None:
    run = edgegw(*command, "-c", str(box), stdin="pw\n")
    assert (run.returncode, run.stderr) == (2, f"{what}: {key_is_a_directory(box.parent / 'data')}\n")


def test_every_way_into_the_store_says_the_key_is_a_directory(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.key").unlink()
    (tmp_path / "secrets.key").mkdir()
    store = SecretStore(tmp_path)
    for name, use in ways_into(store).items():
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [key_is_a_directory(tmp_path)], name
    assert (tmp_path / "secrets.key").is_dir()  # left as it is: it may hold what was meant to be restored


def test_a_key_directory_without_a_store_may_be_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").mkdir()
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).set("a", "1")
    assert info.value.errors == [
        f"{tmp_path / 'secrets.key'}: not a secret store key, got a directory; move it aside: a new one is made "
        "with the first secret set"
    ]


@pytest.mark.timeout(20)
def test_a_named_pipe_as_key_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # opened as it was, a FIFO blocked the gateway's start for good, waiting for someone to write to it
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.key").unlink()
    os.mkfifo(tmp_path / "secrets.key")
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).get("a")
    assert info.value.errors == [
        f"{tmp_path / 'secrets.key'}: not a secret store key, got a named pipe; move it aside and put back the key "
        f"file that belongs to {tmp_path / 'secrets.enc'} (kept apart from backups)"
    ]


def test_a_store_that_is_a_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.enc").unlink()
    (tmp_path / "secrets.enc").mkdir()
    store = SecretStore(tmp_path)
    for use in (store.names, store.migrate, lambda: store.get("a"), lambda: store.set("b", "2")):
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [
            f"{tmp_path / 'secrets.enc'}: not a secret store, got a directory; move it aside and restore secrets.enc "
            "from a backup (with the key file that belongs to it)"
        ]

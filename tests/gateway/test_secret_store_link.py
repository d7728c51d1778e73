"""A `secrets.enc` that is a symbolic link to a file that is not there (a store kept on a medium that is not
mounted, a restore that brought the link without its target), or links that lead round in a loop: named as such,
as the key file's link is, from every way in; no store (nor key) is ever made in its place.

Before, such a link read as "no store": `edgegw run` started without its secrets, `edgegw secret list` printed
nothing, and `edgegw secret set` wrote a new store of one secret over the link, so the store it pointed to no
longer had a name once its medium was back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from tests.gateway.secret_files import edgegw, every_store_command, store_box, ways_into

RESTORE = "restore secrets.enc from a backup (with the key file that belongs to it)"


def dangling(data: Path, target: Path) -> str:
    return (
        f"{data / 'secrets.enc'}: not a secret store, got a symbolic link to {target}, which is not there; "
        f"put {target} back, or move it aside and {RESTORE}"
    )


def loop(data: Path) -> str:
    return (
        f"{data / 'secrets.enc'}: not a secret store, got a symbolic link that leads round in a loop; move it aside "
        f"and {RESTORE}"
    )


def unmount(data: Path, target: Path) -> None:
    """The store moved to `target` and linked in its place, then `target` taken away (its medium unmounted)."""
    store = data / "secrets.enc"
    store.unlink()
    store.symlink_to(target)


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A gateway config whose data directory holds a store with one secret, the store a link to a missing file."""
    config = store_box(tmp_path)
    unmount(tmp_path / "data", tmp_path / "usb" / "secrets.enc")
    return config


def test_edgegw_run_names_the_missing_target_in_one_line_and_exits_2(box: Path) -> None:
    run = edgegw("run", "-c", str(box))
    target = box.parent / "usb" / "secrets.enc"
    assert (run.returncode, run.stderr) == (2, f"{dangling(box.parent / 'data', target)}\n")


@every_store_command
def test_every_command_names_the_missing_target(box: Path, command: tuple[str, ...], what: str) -> None:
    run = edgegw(*command, "-c", str(box), stdin="pw\n")
    data, target = box.parent / "data", box.parent / "usb" / "secrets.enc"
    assert (run.returncode, run.stderr) == (2, f"{what}: {dangling(data, target)}\n")
    assert (data / "secrets.enc").is_symlink()  # not replaced by a store of the one secret set
    assert not target.parent.exists()


def test_every_way_into_the_store_names_the_missing_target(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    key = (tmp_path / "secrets.key").read_bytes()
    target = tmp_path / "elsewhere.enc"
    unmount(tmp_path, target)
    for name, use in ways_into(SecretStore(tmp_path)).items():
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [dangling(tmp_path, target)], name
    assert (tmp_path / "secrets.enc").is_symlink()
    assert not target.exists()  # no store made through the link
    assert (tmp_path / "secrets.key").read_bytes() == key


def test_no_key_nor_store_is_made_beside_a_dangling_link_without_a_key(tmp_path: Path) -> None:
    # a new key would never open the store the link points to, and would stand in the way of the right one
    store, target = tmp_path / "secrets.enc", tmp_path / "elsewhere.enc"
    store.symlink_to(target)
    for use in (lambda: SecretStore(tmp_path).set("a", "1"), lambda: SecretStore(tmp_path).get_or_create("a", str)):
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [dangling(tmp_path, target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.enc", "secrets.lock"]
    assert not target.exists()


def test_a_key_that_does_not_fit_names_the_store_it_belongs_to(tmp_path: Path) -> None:
    # not "a new one is made with the first secret set": with the link there, none would be
    SecretStore(tmp_path).set("a", "1")
    unmount(tmp_path, tmp_path / "elsewhere.enc")
    (tmp_path / "secrets.key").write_bytes(b"not-a-fernet-key\n")
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).get("a")
    assert info.value.errors == [
        f"{tmp_path / 'secrets.key'}: not a secret store key, got 16 bytes (expected 32 url-safe base64-encoded "
        f"bytes, 44 characters); put back the key file that belongs to {tmp_path / 'secrets.enc'} (kept apart from "
        "backups)"
    ]


def test_a_relative_link_and_a_chain_of_links_name_the_file_that_is_missing(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "current.enc").symlink_to("2026.enc")
    store = tmp_path / "secrets.enc"
    store.unlink()
    store.symlink_to("stores/current.enc")
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).names()
    assert info.value.errors == [dangling(tmp_path, tmp_path / "stores" / "2026.enc")]


def test_a_link_loop_is_named_on_every_way_in(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    store, other = tmp_path / "secrets.enc", tmp_path / "other.enc"
    store.unlink()
    store.symlink_to(other)
    other.symlink_to(store)
    for name, use in ways_into(SecretStore(tmp_path)).items():
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [loop(tmp_path)], name
    assert store.is_symlink() and other.is_symlink()


@every_store_command
def test_every_command_names_a_link_loop(box: Path, command: tuple[str, ...], what: str) -> None:
    data = box.parent / "data"
    (data / "secrets.enc").unlink()
    (data / "secrets.enc").symlink_to("secrets.enc")
    run = edgegw(*command, "-c", str(box), stdin="pw\n")
    assert (run.returncode, run.stderr) == (2, f"{what}: {loop(data)}\n")


def test_a_link_to_a_store_that_is_there_is_used_and_kept(tmp_path: Path) -> None:
    # guard: a store kept elsewhere and linked in place keeps working once its target is back
    SecretStore(tmp_path).set("a", "1")
    store, target = tmp_path / "secrets.enc", tmp_path / "usb" / "secrets.enc"
    target.parent.mkdir()
    store.rename(target)
    store.symlink_to(target)
    assert SecretStore(tmp_path).get("a") == "1"
    assert SecretStore(tmp_path).schema_version() == 1

"""A `secrets.key` that is a symbolic link to a file that is not there (a key kept on a medium that is not
mounted, a restore that brought the link without its target): named as such, with the target, from every way in;
a key is never made through it.

Before, the store behaved as if it had no key: `edgegw secret list` printed nothing, `edgegw run` started and
said "no secret store key … run `edgegw secret set <name>` first" at the first secret, and that command then
failed with "No such file or directory; run it as the gateway's user (or root)".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from tests.gateway.secret_files import edgegw, every_store_command, store_box, ways_into


def dangling(data: Path, target: Path) -> str:
    return (
        f"{data / 'secrets.key'}: not a secret store key, got a symbolic link to {target}, which is not there; "
        f"put {target} back, or move it aside and put back the key file that belongs to {data / 'secrets.enc'} "
        "(kept apart from backups)"
    )


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A gateway config whose data directory holds a store with one secret, its key a link to a missing file."""
    config = store_box(tmp_path)
    data = tmp_path / "data"
    (data / "secrets.key").unlink()
    (data / "secrets.key").symlink_to(tmp_path / "usb" / "secrets.key")
    return config


def test_edgegw_run_names_the_missing_target_in_one_line_and_exits_2(box: Path) -> None:
    run = edgegw("run", "-c", str(box))
    target = box.parent / "usb" / "secrets.key"
    assert (run.returncode, run.stderr) == (2, f"{dangling(box.parent / 'data', target)}\n")


@every_store_command
def test_every_command_names_the_missing_target(box: Path, command: tuple[str, ...], what: str) -> None:
    run = edgegw(*command, "-c", str(box), stdin="pw\n")
    target = box.parent / "usb" / "secrets.key"
    assert (run.returncode, run.stderr) == (2, f"{what}: {dangling(box.parent / 'data', target)}\n")
    assert not target.parent.exists()


def test_every_way_into_the_store_names_the_missing_target(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    key, target = tmp_path / "secrets.key", tmp_path / "elsewhere.key"
    key.unlink()
    key.symlink_to(target)
    store = SecretStore(tmp_path)
    for name, use in ways_into(store).items():
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [dangling(tmp_path, target)], name
    assert key.is_symlink()
    assert not target.exists()  # no key made through the link


def test_no_key_is_made_through_a_dangling_link_on_a_new_box(tmp_path: Path) -> None:
    key, target = tmp_path / "secrets.key", tmp_path / "elsewhere.key"
    key.symlink_to(target)
    store = SecretStore(tmp_path)
    for use in (store.names, lambda: store.set("a", "1")):
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [
            f"{key}: not a secret store key, got a symbolic link to {target}, which is not there; put {target} back, "
            "or move it aside: a new one is made with the first secret set"
        ]
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.key", "secrets.lock"]


def test_a_relative_link_and_a_chain_of_links_name_the_file_that_is_missing(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    key = tmp_path / "secrets.key"
    key.unlink()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "current.key").symlink_to("2026.key")
    key.symlink_to("keys/current.key")
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).get("a")
    assert info.value.errors == [dangling(tmp_path, tmp_path / "keys" / "2026.key")]


def test_a_link_to_a_key_that_is_there_is_used(tmp_path: Path) -> None:
    # guard: a key kept elsewhere and linked in place keeps working once its target is back
    SecretStore(tmp_path).set("a", "1")
    key, target = tmp_path / "secrets.key", tmp_path / "usb" / "secrets.key"
    target.parent.mkdir()
    key.rename(target)
    key.symlink_to(target)
    target.rename(tmp_path / "unmounted.key")
    with pytest.raises(ConfigError):
        SecretStore(tmp_path).get("a")
    (tmp_path / "unmounted.key").rename(target)
    assert SecretStore(tmp_path).get("a") == "1"


def test_a_link_loop_is_named_on_every_way_in(tmp_path: Path) -> None:
    """Links leading round in a loop (a restore of two links onto each other) raised a bare ELOOP OSError."""
    SecretStore(tmp_path).set("a", "1")
    key, other = tmp_path / "secrets.key", tmp_path / "other.key"
    key.unlink()
    key.symlink_to(other)
    other.symlink_to(key)
    for name, use in ways_into(SecretStore(tmp_path)).items():
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [
            f"{key}: not a secret store key, got a symbolic link that leads round in a loop; move it aside and put "
            f"back the key file that belongs to {tmp_path / 'secrets.enc'} (kept apart from backups)"
        ], name

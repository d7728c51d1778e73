"""The secret store written by root (`sudo edgegw pseudonym rotate`, `sudo edgegw secret set`) stays the
gateway's: every file it writes keeps the owner of the file it replaces, or takes the data directory's.

Before, root's rotation replaced secrets.enc with a root-owned 0600 file, and the gateway (User=edgegw) could
read no secret at all after its restart: not its pseudonym keys, not one uplink password. The gateway's user
is played by uid 65534, with a real switch of user (setpriv) in a process of its own.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.processing import pseudonym_keys
from gateway.secrets import SecretStore
from tests.gateway.secret_files import GATEWAY_USER, data_dir, needs_root, run_as

__all__ = ["data_dir"]  # the fixture, shared with the other file tests
pytestmark = needs_root


def as_gateway(data_dir: Path, code: str) -> str:
    """`code` run by the gateway's user with `data` (its data directory) and `SecretStore` at hand; its output."""
    done = run_as(GATEWAY_USER, data_dir, code)
    assert done.returncode == 0, done.stderr
    return done.stdout


def owners(data_dir: Path) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o777) for p in sorted(data_dir.iterdir())}


GATEWAYS = (GATEWAY_USER, GATEWAY_USER, 0o600)


def test_a_rotation_by_root_leaves_every_secret_readable_by_the_gateway(data_dir: Path) -> None:
    # the gateway made its first key and has an uplink password
    as_gateway(
        data_dir,
        """
        from gateway.processing.pseudonym_keys import PseudonymKeyStore
        from gateway.records import utc_now
        PseudonymKeyStore(data).load(utc_now())
        SecretStore(data).set("uplink.password", "s3cret-pw")
        """,
    )
    ns = argparse.Namespace(pseudonym_command="rotate", valid_from=None, data_dir=str(data_dir), config=None)
    assert pseudonym_keys.run(ns) == 0  # as root, as `sudo edgegw pseudonym rotate`
    assert owners(data_dir) == {"secrets.enc": GATEWAYS, "secrets.key": GATEWAYS, "secrets.lock": GATEWAYS}
    # the gateway restarts: both keys, and the password
    assert (
        as_gateway(
            data_dir,
            """
        from gateway.processing.pseudonym_keys import PseudonymKeyStore
        from gateway.records import utc_now
        keys = [k.key_id for k in PseudonymKeyStore(data).load(utc_now()).keys]
        print(keys, SecretStore(data).get("uplink.password"))
        """,
        )
        == "['k1', 'k2'] s3cret-pw\n"
    )


def test_a_store_root_makes_first_is_the_gateways_and_the_gateway_can_change_it(data_dir: Path) -> None:
    # `sudo edgegw secret set` on a new box, before the gateway ever ran: key file, lock file and store are new
    SecretStore(data_dir).set("uplink.password", "s3cret-pw")
    assert owners(data_dir) == {"secrets.enc": GATEWAYS, "secrets.key": GATEWAYS, "secrets.lock": GATEWAYS}
    # the gateway reads it, and takes the lock to add a secret of its own
    assert (
        as_gateway(
            data_dir,
            """
        store = SecretStore(data)
        store.set("wifilog.keys", "{}")
        print(store.get("uplink.password"), store.names())
        """,
        )
        == "s3cret-pw ['uplink.password', 'wifilog.keys']\n"
    )


def test_a_store_replaced_by_root_keeps_the_owner_of_the_file_it_replaces(data_dir: Path) -> None:
    # the file's owner counts before the directory's: one an admin gave to someone on purpose stays theirs
    SecretStore(data_dir).set("a", "1")
    os.chown(data_dir, 0, 0)
    os.chown(data_dir / "secrets.enc", GATEWAY_USER, 0)
    SecretStore(data_dir).set("b", "2")
    assert owners(data_dir)["secrets.enc"] == (GATEWAY_USER, 0, 0o600)
    assert SecretStore(data_dir).names() == ["a", "b"]

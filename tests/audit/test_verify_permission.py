"""`audit verify` by the gateway's user on a file of the log left root's: a permission problem, said as one.

Before, an audit.head root had replaced (`sudo edgegw locker open`) read as "unreadable, got a file that is not a
head record; entries at the end may have been deleted": a tamper alarm for a chown. The gateway's user is played
by uid 65534 (setpriv), root by this test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from tests.gateway.secret_files import GATEWAY_USER, data_dir, edgegw, needs_root, run_as, write_config

__all__ = ["data_dir"]  # the fixture
pytestmark = needs_root


@pytest.fixture
def config(data_dir: Path) -> Path:
    """A box whose audit log, written by the gateway's user, holds two entries."""
    made = run_as(
        GATEWAY_USER,
        data_dir,
        """
        from gateway.audit.log import AuditLog
        log = AuditLog(data / "web")
        log.append(actor="alice", action="login", at=1.0)
        log.append(actor="alice", action="logout", at=2.0)
        """,
    )
    assert made.returncode == 0, made.stderr
    return write_config(data_dir.parent / "gw.toml", data_dir)


@pytest.mark.parametrize("name", ["audit.head", "audit.db"])
def test_a_file_left_roots_is_named_with_its_owner_and_the_chown(config: Path, data_dir: Path, name: str) -> None:
    path = data_dir / "web" / name
    os.chown(path, 0, 0)
    done = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"audit verify: {path}: not readable by user nobody, got a file owned by root:root (mode 0600); "
        f"give it to the owner of {path.parent}: run `sudo chown -h nobody:nogroup {path}`\n"
    )
    assert "deleted" not in done.stderr
    os.chown(path, GATEWAY_USER, GATEWAY_USER)  # the fix it says
    done = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert (done.returncode, done.stdout) == (0, f"audit log {data_dir / 'web' / 'audit.db'}: OK, 2 entries verified\n")


def test_root_still_verifies_it_and_a_real_deletion_is_still_found(config: Path, data_dir: Path) -> None:
    os.chown(data_dir / "web" / "audit.head", 0, 0)
    assert AuditLog(data_dir / "web", create=False).verify().ok
    done = run_as(
        GATEWAY_USER,
        data_dir,
        """
        import sqlite3
        db = sqlite3.connect(data / "web" / "audit.db")
        db.execute("DELETE FROM entries WHERE id = 2")
        db.commit()
        """,
    )
    assert done.returncode == 0, done.stderr
    assert AuditLog(data_dir / "web", create=False).verify().problems == [
        "audit entry 2: deleted (the log ends at entry 1, but entry 2 was written)"
    ]

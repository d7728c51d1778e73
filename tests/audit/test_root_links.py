"""The audit log run as root (`sudo edgegw user …`, `sudo edgegw web`) in the state directory the gateway's user owns:
a link that user puts there never has root make, truncate or write anything outside it.

Each test plants what the gateway's user could (a symbolic link, a hard link) where the log opens its own files,
runs the AuditLog as root, and looks at the "victim": a root file or directory outside the state directory, standing
for /etc/sudoers.d or /etc/shadow.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from gateway.audit.log import AUDIT_FILE, HEAD_FILE, LOCK_FILE, AuditError, AuditLog

SERVICE_USER = (4321, 4322)  # uid, gid: edgegw on the box, not root
SECRET = b"root:$6$not-for-the-service-user\n"
T0 = 1_796_000_000.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on root's run (as in CI)")


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(the web state directory, the victim directory): data/ and data/web/ the service user's, victim/ root's."""
    data = tmp_path / "data"
    web = data / "web"
    web.mkdir(parents=True)
    for p in (data, web):
        os.chown(p, *SERVICE_USER)
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "shadow").write_bytes(SECRET)
    return web, victim


def append(audit: AuditLog, n: int = 1) -> int:
    return audit.append(actor="web", action="login.failed", target="taro", address="192.0.2.10", at=T0 + n)


def refusal(path: Path, wanted: str, got: str) -> str:
    return re.escape(f"audit log {path}: must be {wanted}, got {got}; root uses no link")


def dir_refusal(web: Path, victim: Path) -> str:
    return re.escape(
        f"audit log {web}: must be a directory, got a symbolic link to {victim}; root follows a link only where no one "
        f"else may change it, and uid {SERVICE_USER[0]} may change {web.parent}: nothing was written through it"
    )


def db_wanted(web: Path) -> str:
    return f"a file of root or of uid {SERVICE_USER[0]} (the owner of {web})"


def test_a_state_directory_that_is_a_link_is_refused_and_nothing_is_made_where_it_leads(
    box: tuple[Path, Path],
) -> None:
    web, victim = box
    web.rmdir()
    web.symlink_to(victim)
    with pytest.raises(AuditError, match=dir_refusal(web, victim)) as caught:
        AuditLog(web)
    assert "[web] state_dir" in str(caught.value)
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]


def test_a_state_directory_swapped_for_a_link_after_the_start_gets_no_lock_nor_head(box: tuple[Path, Path]) -> None:
    web, victim = box
    audit = AuditLog(web)  # `sudo edgegw web` at its start
    append(audit)
    web.rename(web.with_name("web.moved"))
    web.symlink_to(victim)
    with pytest.raises(AuditError, match=dir_refusal(web, victim)):
        append(audit, 2)  # a failed login, which anyone may cause
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_never_made(box: tuple[Path, Path]) -> None:
    web, victim = box
    audit = AuditLog(web)
    target = victim / "sudoers"
    (web / LOCK_FILE).symlink_to(target)
    with pytest.raises(
        AuditError, match=refusal(web / LOCK_FILE, "the log's lock file", f"a symbolic link to {target}")
    ):
        append(audit)
    assert not target.exists()
    assert (victim / "shadow").read_bytes() == SECRET


def test_a_link_under_the_head_files_temporary_name_is_removed_never_written_through(box: tuple[Path, Path]) -> None:
    web, victim = box
    audit = AuditLog(web)
    append(audit)
    # the name is foreseeable: the server's pid and the thread that appends
    tmp = web / f".{HEAD_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.symlink_to(victim / "shadow")
    append(audit, 2)
    assert (victim / "shadow").read_bytes() == SECRET
    assert not (web / HEAD_FILE).is_symlink() and not tmp.exists()
    assert audit.verify().ok and audit.count() == 2


def test_a_head_that_is_a_link_is_read_as_untrusted_and_replaced_not_followed(box: tuple[Path, Path]) -> None:
    web, victim = box
    audit = AuditLog(web)
    append(audit)
    (web / HEAD_FILE).unlink()
    (web / HEAD_FILE).symlink_to(victim / "shadow")
    verdict = audit.verify()
    assert verdict.problems == [
        f"audit log: {web / HEAD_FILE}: unreadable, got a file that is not a head record; entries at the end may "
        "have been deleted"
    ]
    append(audit, 2)  # its own head replaces the link itself
    assert not (web / HEAD_FILE).is_symlink() and audit.verify().ok
    assert (victim / "shadow").read_bytes() == SECRET


def test_a_database_that_is_a_link_is_refused_and_its_target_never_made(box: tuple[Path, Path]) -> None:
    web, victim = box
    target = victim / "cron-job"
    (web / AUDIT_FILE).symlink_to(target)
    with pytest.raises(AuditError, match=refusal(web / AUDIT_FILE, db_wanted(web), f"a symbolic link to {target}")):
        AuditLog(web)
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]


def test_a_database_swapped_for_a_link_after_the_start_is_refused_before_sqlite_opens_it(
    box: tuple[Path, Path],
) -> None:
    web, victim = box
    audit = AuditLog(web)
    append(audit)
    target = victim / "cron-job"
    (web / AUDIT_FILE).rename(web / "audit.db.moved")
    (web / AUDIT_FILE).symlink_to(target)
    with pytest.raises(AuditError, match=refusal(web / AUDIT_FILE, db_wanted(web), f"a symbolic link to {target}")):
        append(audit, 2)
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]


def test_a_database_that_is_a_hard_link_to_roots_file_is_refused_unwritten(box: tuple[Path, Path]) -> None:
    web, victim = box
    empty = victim / "empty"  # SQLite takes an empty file for a new database, and would write one into it
    empty.write_bytes(b"")
    os.link(empty, web / AUDIT_FILE)
    got = "a file with 2 names (a hard link to another file)"
    with pytest.raises(AuditError, match=refusal(web / AUDIT_FILE, db_wanted(web), got)):
        AuditLog(web)
    assert empty.read_bytes() == b""


def test_a_log_handed_to_the_gateways_user_still_opens_as_root(box: tuple[Path, Path]) -> None:
    """What hand_over does after every root write: the service user's own files are the log's, not a planted one."""
    web, _ = box
    append(AuditLog(web))
    for p in web.iterdir():
        os.chown(p, *SERVICE_USER, follow_symlinks=False)
    again = AuditLog(web)
    append(again, 2)
    assert again.verify().ok and again.count() == 2

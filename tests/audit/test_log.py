"""AuditLog on a real sqlite file: the HMAC chain, tampering made with raw sqlite, retention anchors."""

from __future__ import annotations

import base64
import sqlite3
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.log import GENESIS, KEY_NAME, PURGE_ACTION, SCHEMA_VERSION, AuditLog
from gateway.secrets import SecretStore

T0 = 1_796_000_000.0


def filled(state_dir: Path, n: int) -> AuditLog:
    log = AuditLog(state_dir)
    for i in range(n):
        log.append(
            actor="tanaka" if i % 2 else "cli:root",
            action="login" if i % 3 else "config.apply",
            target=f"t{i}",
            detail={"n": i, "note": "設定を適用"},
            address="192.0.2.10",
            at=T0 + i,
        )
    return log


def raw(log: AuditLog) -> sqlite3.Connection:
    return sqlite3.connect(log.path, isolation_level=None)


def test_append_and_read_back(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    newest = log.entries(limit=2)
    assert [e.id for e in newest] == [5, 4]
    e = newest[0]
    assert (e.at, e.actor, e.action, e.target, dict(e.detail), e.address) == (
        T0 + 4,
        "cli:root",
        "login",
        "t4",
        {"n": 4, "note": "設定を適用"},
        "192.0.2.10",
    )
    assert [x.id for x in log.entries(limit=10, offset=3)] == [2, 1]
    assert [x.id for x in log.entries(actor="tanaka")] == [4, 2]
    assert [x.id for x in log.entries(action="config.apply")] == [4, 1]
    assert log.count() == 5 and log.count(actor="tanaka", action="login") == 1
    assert log.entries(limit=1, offset=0)[0].prev_mac == log.entries(limit=1, offset=1)[0].mac
    assert log.entries(limit=1, offset=4)[0].prev_mac == GENESIS


def test_schema_version_file_mode_and_key(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "web")
    assert log.schema_version() == SCHEMA_VERSION == 1
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert KEY_NAME not in SecretStore(tmp_path / "web" / "secrets").names()  # made at first use, not before
    log.append(actor="a", action="login", at=T0)
    store = SecretStore(tmp_path / "web" / "secrets")
    assert store.names() == [KEY_NAME]
    assert len(base64.b64decode(store.get(KEY_NAME))) == 32
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    with raw(log) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_clean_log_verifies(tmp_path: Path) -> None:
    assert AuditLog(tmp_path).verify().ok
    verdict = filled(tmp_path, 20).verify()
    assert (verdict.ok, verdict.problems, verdict.checked) == (True, [], 20)


def test_edited_row(tmp_path: Path) -> None:
    log = filled(tmp_path, 20)
    with raw(log) as db:
        db.execute("UPDATE entries SET actor = 'someone else' WHERE id = 17")
    verdict = log.verify()
    assert not verdict.ok
    assert verdict.problems == ["audit entry 17: edited (its MAC does not match its contents)"]


def test_edited_detail_and_time(tmp_path: Path) -> None:
    log = filled(tmp_path, 6)
    with raw(log) as db:
        db.execute("""UPDATE entries SET detail_json = '{"n":99}' WHERE id = 2""")
        db.execute("UPDATE entries SET at = at + 1 WHERE id = 4")
    assert log.verify().problems == [
        "audit entry 2: edited (its MAC does not match its contents)",
        "audit entry 4: edited (its MAC does not match its contents)",
    ]


def test_deleted_rows(tmp_path: Path) -> None:
    log = filled(tmp_path, 20)
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE id = 5")
        db.execute("DELETE FROM entries WHERE id BETWEEN 9 AND 11")
    assert log.verify().problems == [
        "audit entry 5: deleted (entry 6 follows entry 4)",
        "audit entries 9 to 11: deleted (entry 12 follows entry 8)",
    ]


def test_deleted_first_rows(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE id <= 3")
    assert log.verify().problems == [
        "audit entries 1 to 3: deleted (the log starts at entry 4 without a purge record for the entries before it)"
    ]


def test_deleted_and_renumbered_to_hide_the_gap(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE id = 4")
        db.execute("UPDATE entries SET id = -id WHERE id > 4")
        db.execute("UPDATE entries SET id = -id - 1 WHERE id < 0")
    assert log.verify().problems == [
        "audit entry 4: deleted (the entries after them were renumbered to hide the gap)",
        "audit entries 4 to 9: renumbered (their MACs match numbers 5 to 10)",
    ]


def test_inserted_row_at_the_end(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    with raw(log) as db:
        (last_mac,) = db.execute("SELECT mac FROM entries WHERE id = 5").fetchone()
        db.execute(
            "INSERT INTO entries VALUES (6, ?, 'mallory', 'login', '', '{}', '192.0.2.66', ?, ?)",
            (T0 + 9, last_mac, "ab" * 32),
        )
    assert log.verify().problems == ["audit entry 6: edited or inserted (its MAC does not match its contents)"]


def test_inserted_row_in_the_middle(tmp_path: Path) -> None:
    log = filled(tmp_path, 8)
    with raw(log) as db:
        (mac3,) = db.execute("SELECT mac FROM entries WHERE id = 3").fetchone()
        db.execute("UPDATE entries SET id = -id WHERE id > 3")
        db.execute("UPDATE entries SET id = -id + 1 WHERE id < 0")
        db.execute(
            "INSERT INTO entries VALUES (4, ?, 'mallory', 'login', '', '{}', '192.0.2.66', ?, ?)",
            (T0 + 3.5, mac3, "cd" * 32),
        )
    assert log.verify().problems == [
        "audit entry 4: inserted (its MAC does not match, and entry 5 is chained to entry 3 before it)",
        "audit entries 5 to 9: renumbered (their MACs match numbers 4 to 8)",
    ]


def test_swapped_rows_are_found(tmp_path: Path) -> None:
    log = filled(tmp_path, 6)
    with raw(log) as db:
        db.execute("UPDATE entries SET id = 100 WHERE id = 3")
        db.execute("UPDATE entries SET id = 3 WHERE id = 4")
        db.execute("UPDATE entries SET id = 4 WHERE id = 100")
    verdict = log.verify()
    assert not verdict.ok
    assert verdict.problems[0].startswith("audit entry 3: ")


def test_another_key_is_said_once(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    SecretStore(tmp_path / "secrets").set(KEY_NAME, base64.b64encode(b"\x01" * 32).decode())
    assert AuditLog(tmp_path).verify().problems == [
        f"audit log: no entry matches the key {KEY_NAME} in {tmp_path / 'secrets'}, got 5 entries; "
        "the key was replaced or the log belongs to another key (restore both from the same backup)"
    ]
    assert log.verify().ok  # the first instance still holds the old key in memory


def test_missing_key(tmp_path: Path) -> None:
    filled(tmp_path, 3)
    (tmp_path / "secrets" / "secrets.enc").unlink()
    (tmp_path / "secrets" / "secrets.key").unlink()
    verdict = AuditLog(tmp_path).verify()
    assert verdict.problems == [
        f"audit log: the key {KEY_NAME} is missing from {tmp_path / 'secrets'}, got 3 entries that cannot be "
        "verified; restore the secret store from the backup"
    ]


def test_purge_leaves_an_anchor_and_the_log_verifies(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    assert log.purge(T0 + 4, now=T0 + 100) == 4
    anchor = log.entries(limit=1)[0]
    assert (anchor.id, anchor.action, anchor.actor) == (11, PURGE_ACTION, "retention")
    assert {k: anchor.detail[k] for k in ("first_id", "last_id", "count")} == {"first_id": 1, "last_id": 4, "count": 4}
    assert [e.id for e in log.entries(limit=100)][-1] == 5
    assert log.verify().ok
    assert log.purge(T0 + 4, now=T0 + 101) == 0  # nothing older is left
    log.append(actor="tanaka", action="logout", at=T0 + 200)
    assert log.purge(T0 + 150, now=T0 + 300) == 7  # every entry up to and including the first anchor
    assert log.verify().ok
    assert log.purge(T0 + 1000, now=T0 + 1000) == 2  # everything: the new anchor alone still chains
    assert log.count() == 1 and log.verify().ok
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE action = ?", (PURGE_ACTION,))
        db.execute(
            "INSERT INTO entries VALUES (30, ?, 'tanaka', 'login', '', '{}', '', ?, ?)", (T0, GENESIS, "00" * 32)
        )
    assert not log.verify().ok


def test_deleting_after_a_purge_is_still_found(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    log.purge(T0 + 4, now=T0 + 100)
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE id = 5")
    assert log.verify().problems == [
        "audit entry 5: deleted (the log starts at entry 6 without a purge record for the entries before it)"
    ]


def test_appends_from_threads_and_two_instances_keep_one_chain(tmp_path: Path) -> None:
    a, b = AuditLog(tmp_path), AuditLog(tmp_path)

    def write(log: AuditLog, who: str) -> None:
        for i in range(15):
            log.append(actor=who, action="login", at=T0 + i)

    threads = [threading.Thread(target=write, args=(log, f"u{i}")) for i, log in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = a.verify()
    assert verdict.ok and verdict.checked == 60


MUTATIONS = st.sampled_from(["edit", "delete", "insert_end", "insert_middle", "edit_prev_mac"])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=3, max_value=12), data=st.data(), mutation=MUTATIONS)
def test_any_single_tampering_is_found_and_named(n: int, data: st.DataObject, mutation: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        log = filled(Path(d), n)
        k = data.draw(st.integers(min_value=1, max_value=n), label="row")
        with raw(log) as db:
            if mutation == "edit":
                column = data.draw(st.sampled_from(["actor", "action", "target", "address"]), label="column")
                db.execute(f"UPDATE entries SET {column} = {column} || 'x' WHERE id = ?", (k,))
            elif mutation == "edit_prev_mac":
                db.execute("UPDATE entries SET prev_mac = ? WHERE id = ?", ("ee" * 32, k))
            elif mutation == "delete":
                db.execute("DELETE FROM entries WHERE id = ?", (k,))
            elif mutation == "insert_end":
                (mac,) = db.execute("SELECT mac FROM entries WHERE id = ?", (n,)).fetchone()
                db.execute(
                    "INSERT INTO entries VALUES (?, 0, 'm', 'login', '', '{}', '', ?, ?)", (n + 1, mac, "0" * 64)
                )
            else:
                (mac,) = db.execute("SELECT mac FROM entries WHERE id = ?", (k,)).fetchone()
                db.execute("UPDATE entries SET id = -id WHERE id > ?", (k,))
                db.execute("UPDATE entries SET id = -id + 1 WHERE id < 0")
                db.execute(
                    "INSERT INTO entries VALUES (?, 0, 'm', 'login', '', '{}', '', ?, ?)", (k + 1, mac, "0" * 64)
                )
        verdict = log.verify()
        assert not verdict.ok
        first = verdict.problems[0]
        if mutation in ("edit", "edit_prev_mac"):
            assert first in (
                f"audit entry {k}: edited (its MAC does not match its contents)",
                f"audit entry {k}: edited or inserted (its MAC does not match its contents)",
            )
        elif mutation == "delete":
            if k == n:  # the chain cannot see it; audit.head can
                assert first == f"audit entry {n}: deleted (the log ends at entry {n - 1}, but entry {n} was written)"
            elif k == 1:
                assert first == (
                    "audit entry 1: deleted (the log starts at entry 2 without a purge record for the entries before it)"
                )
            else:
                assert first == f"audit entry {k}: deleted (entry {k + 1} follows entry {k - 1})"
        elif mutation == "insert_end":
            assert first == f"audit entry {n + 1}: edited or inserted (its MAC does not match its contents)"
        else:
            assert first.startswith(f"audit entry {k + 1}: ")
            assert "inserted" in first


def test_deleting_the_newest_entries_is_found_through_the_head_record(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE id >= 8")
    assert log.verify().problems == [
        "audit entries 8 to 10: deleted (the log ends at entry 7, but entry 10 was written)"
    ]
    log.append(actor="tanaka", action="login", at=T0 + 50)  # the next entry does not take over their numbers
    assert log.verify().problems == ["audit entries 8 to 10: deleted (entry 11 follows entry 7)"]


def test_a_missing_or_forged_head_record_is_said(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    head = tmp_path / "audit.head"
    assert stat.S_IMODE(head.stat().st_mode) == 0o600
    head.unlink()
    assert log.verify().problems == [
        f"audit log: {head} (the record of the newest entry) is missing; entries at the end may have been deleted"
    ]
    head.write_text('{"id": 2, "mac": "00", "seal": "00"}')
    assert log.verify().problems == [
        f"audit log: {head}: edited (its seal does not match the key); entries at the end may have been deleted"
    ]
    head.write_text("not json")
    assert log.verify().problems == [
        f"audit log: {head}: unreadable, got a file that is not a head record; entries at the end may have been deleted"
    ]


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs."""


def test_a_crash_between_the_first_entry_and_its_head_is_no_deleted_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path)
    real_write_head = AuditLog._write_head

    def dies_after_the_commit(self: AuditLog, key: bytes, entry_id: int, mac: str) -> None:
        if entry_id > 0:  # the head written after the commit: the process is gone before it
            raise Killed
        real_write_head(self, key, entry_id, mac)

    monkeypatch.setattr(AuditLog, "_write_head", dies_after_the_commit)
    with pytest.raises(Killed):
        log.append(actor="admin1", action="user.add", target="taro", detail={}, at=1.0)
    monkeypatch.undo()
    again = AuditLog(tmp_path)  # the next start
    verdict = again.verify()
    assert verdict.ok and verdict.checked == 1, verdict.problems  # a head that lags, as after any append
    again.append(actor="admin1", action="user.add", target="hanako", detail={}, at=2.0)
    assert again.verify().ok and again.verify().checked == 2
    (tmp_path / "audit.head").unlink()  # taking the head away is still said
    assert not again.verify().ok


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    from gateway.audit.log import AuditError

    AuditLog(tmp_path)
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(AuditError) as exc:
        AuditLog(tmp_path)
    assert str(exc.value) == (
        f"{tmp_path / 'audit.db'}: schema version newer than this edgegw knows (1), got version 7; upgrade edgegw"
    )


def test_a_purge_after_the_newest_entries_were_deleted_keeps_the_gap(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    with raw(log) as db:
        db.execute("DELETE FROM entries WHERE id >= 8")
    assert log.purge(T0 + 3, now=T0 + 100) == 3
    assert log.entries(limit=1)[0].id == 11
    assert log.verify().problems == ["audit entries 8 to 10: deleted (entry 11 follows entry 7)"]


def test_an_emptied_log_is_found(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    with raw(log) as db:
        db.execute("DELETE FROM entries")
    verdict = log.verify()
    assert (verdict.ok, verdict.checked, verdict.problems) == (
        False,
        0,
        ["audit entries 1 to 4: deleted (the log is empty, but entry 4 was written)"],
    )

"""Edits of audit.db that change a value's SQLite type: verify names the entry instead of raising, show reads it.

Regression of a review: entry 2's `at` set to 9e999 (Inf) or its actor to a BLOB made `verify` raise (and the CLI
print a traceback with no problem list), so deleting entries and then editing one value this way hid every finding
behind a crash. A second finding: `verify` of an emptied log with the key missing made a new key (a read-only check
writing the secret store) and blamed the head's seal instead of the missing key.
"""

from __future__ import annotations

import math
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.audit.cli import _line
from gateway.audit.log import KEY_NAME, AuditLog
from gateway.cli import main

T0 = 1_796_000_000.0
COLUMNS = ("id", "at", "actor", "action", "target", "detail_json", "address", "prev_mac", "mac")


def filled(state_dir: Path, n: int) -> AuditLog:
    log = AuditLog(state_dir)
    for i in range(n):
        log.append(actor="alice", action="login", detail={"n": i}, address="192.0.2.1", at=T0 + i)
    return log


def without_not_null(db: sqlite3.Connection) -> None:
    """The table rebuilt without NOT NULL, as whoever edits the file can: a NULL then fits in any column."""
    db.executescript(
        """
        ALTER TABLE entries RENAME TO entries_old;
        CREATE TABLE entries (id INTEGER PRIMARY KEY, at REAL, actor TEXT, action TEXT, target TEXT,
                              detail_json TEXT, address TEXT, prev_mac TEXT, mac TEXT);
        INSERT INTO entries SELECT * FROM entries_old;
        DROP TABLE entries_old;
        """
    )


def tamper(log: AuditLog, sql: str, *params: object) -> None:
    db = sqlite3.connect(log.path, isolation_level=None)
    try:
        db.execute(sql, params)
    finally:
        db.close()


EDITED_2 = "audit entry 2: edited (its MAC does not match its contents)"


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("UPDATE entries SET at = 9e999 WHERE id = 2", ()),
        ("UPDATE entries SET at = -9e999 WHERE id = 2", ()),
        ("UPDATE entries SET at = 1e300 WHERE id = 2", ()),
        ("UPDATE entries SET at = 'yesterday' WHERE id = 2", ()),
        ("UPDATE entries SET actor = CAST('alice' AS BLOB) WHERE id = 2", ()),
        ("UPDATE entries SET detail_json = ? WHERE id = 2", (b'{"n":1}',)),
        ("UPDATE entries SET prev_mac = CAST(prev_mac AS BLOB) WHERE id = 2", ()),
        ("UPDATE entries SET address = CAST(X'C0FF' AS TEXT) WHERE id = 2", ()),  # text that is not UTF-8
    ],
)
def test_a_value_of_another_type_is_an_edit_never_a_crash(tmp_path: Path, sql: str, params: tuple[object]) -> None:
    log = filled(tmp_path, 3)
    tamper(log, sql, *params)
    verdict = log.verify()
    assert (verdict.ok, verdict.problems, verdict.checked) == (False, [EDITED_2], 3)
    shown = [_line(e) for e in log.entries(limit=5)]  # `edgegw audit show` prints every entry, the edited one too
    assert [line.split()[0] for line in shown] == ["3", "2", "1"]


def test_a_null_in_a_rebuilt_table_is_an_edit(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    db = sqlite3.connect(log.path, isolation_level=None)
    try:
        without_not_null(db)
        db.execute("UPDATE entries SET at = NULL, actor = NULL WHERE id = 2")
    finally:
        db.close()
    assert log.verify().problems == [EDITED_2]
    entry = log.entries(limit=5)[1]
    assert (entry.at, entry.actor, dict(entry.unreadable)) == (
        None,
        "(unreadable: NULL)",
        {"at": "(unreadable: NULL)", "actor": "(unreadable: NULL)"},
    )


def test_unreadable_values_are_shown_as_such(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    tamper(log, "UPDATE entries SET at = 9e999, actor = CAST('alice' AS BLOB) WHERE id = 2")
    tamper(log, "UPDATE entries SET at = 'yesterday', address = CAST(X'C0FF' AS TEXT) WHERE id = 3")
    tamper(log, "UPDATE entries SET at = 1e300 WHERE id = 4")  # a number, but no calendar's
    fourth, third, second, first = log.entries(limit=5)
    assert (fourth.at, dict(fourth.unreadable)) == (None, {"at": "(unreadable: 1e+300)"})
    assert (second.at, second.actor, dict(second.unreadable)) == (
        None,
        "(unreadable: 5 bytes x'616c696365')",
        {"at": "(unreadable: inf)", "actor": "(unreadable: 5 bytes x'616c696365')"},
    )
    assert (third.at, third.address, dict(third.unreadable)) == (
        None,
        "(unreadable: 2 bytes x'c0ff')",
        {"at": "(unreadable: 'yesterday')", "address": "(unreadable: 2 bytes x'c0ff')"},
    )
    assert (first.at, first.actor, dict(first.unreadable)) == (T0, "alice", {})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[web]\nstate_dir = "{tmp_path / "webstate"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    return cfg


def test_cli_verify_lists_every_problem_and_show_reads_the_entries(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = filled(tmp_path / "webstate", 6)
    tamper(log, "DELETE FROM entries WHERE id = 4")
    tamper(log, "UPDATE entries SET at = 9e999, actor = CAST('alice' AS BLOB) WHERE id = 2")
    assert main(["audit", "verify", "-c", str(config)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"audit log {log.path}: 2 problem(s) in 5 entries\n"
        f"  {EDITED_2}\n"
        "  audit entry 4: deleted (entry 5 follows entry 3)\n",
    )
    assert main(["audit", "show", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[3] == (
        "     2  (unreadable: inf)  (unreadable: 5 bytes x'616c696365')  login  from 192.0.2.1  {\"n\": 1}"
    )


def test_verify_of_an_emptied_log_without_its_key_says_the_key_is_missing_and_writes_nothing(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    tamper(log, "DELETE FROM entries")
    secrets = tmp_path / "secrets"
    for name in ("secrets.enc", "secrets.key"):
        (secrets / name).unlink()
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    fresh = AuditLog(tmp_path)
    verdict = fresh.verify()
    assert (verdict.ok, verdict.checked, verdict.problems) == (
        False,
        0,
        [
            f"audit log: the key {KEY_NAME} is missing from {secrets}, got no entries and {tmp_path / 'audit.head'}, "
            "which is written with the first entry; restore the secret store from the backup"
        ],
    )
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before
    assert KEY_NAME not in fresh.secrets.names()


# -- any single-cell edit -----------------------------------------------------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),  # NaN is stored as NULL, infinities as they are
    st.text(max_size=20),
    st.binary(max_size=20),
    st.builds(lambda b: ("not utf-8", b), st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b))),
)


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def names(problem: str, entry_id: int) -> bool:
    if re.search(rf"\bentry {entry_id}\b", problem):
        return True
    return any(int(a) <= entry_id <= int(b) for a, b in re.findall(r"\bentries (-?\d+) to (-?\d+)\b", problem))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=1, max_value=6), data=st.data())
def test_any_single_cell_edit_is_named_never_raised(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        log = filled(Path(d), n)
        k = data.draw(st.integers(min_value=1, max_value=n), label="entry")
        column = data.draw(st.sampled_from(COLUMNS), label="column")
        if column == "id":
            value: object = data.draw(
                st.integers(min_value=-(2**63), max_value=2**63 - 1).filter(lambda v: not 1 <= v <= n), label="id"
            )
        else:
            value = data.draw(VALUES, label="value")
        db = sqlite3.connect(log.path, isolation_level=None)
        try:
            before = db.execute(f"SELECT typeof({column}), hex({column}) FROM entries WHERE id = ?", (k,)).fetchone()
            if value is None or (isinstance(value, float) and math.isnan(value)):
                without_not_null(db)
            if isinstance(value, tuple):
                db.execute(f"UPDATE entries SET {column} = CAST(? AS TEXT) WHERE id = ?", (value[1], k))
            else:
                db.execute(f"UPDATE entries SET {column} = ? WHERE id = ?", (value, k))
            now_id = value if isinstance(value, int) and column == "id" else k
            after = db.execute(
                f"SELECT typeof({column}), hex({column}) FROM entries WHERE id = ?", (now_id,)
            ).fetchone()
        finally:
            db.close()
        assume(after != before)  # e.g. '1796000000.0' set into `at` is stored as the same number
        verdict = log.verify()
        assert not verdict.ok
        assert any(names(p, k) or names(p, now_id) for p in verdict.problems), verdict.problems
        assert len(log.entries(limit=n + 1)) == n

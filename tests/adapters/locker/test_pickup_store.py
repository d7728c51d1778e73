"""The pickup store on its own: codes as HMACs, one active assignment per compartment, schema version, reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.locker.pickup import CodeCheck, PickupError, PickupState, PickupStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def store(tmp_path: Path, clock: Clock, **kw: int) -> PickupStore:
    return PickupStore(tmp_path / "locker-x.db", clock=clock, **kw)


def test_a_code_key_left_empty_by_a_crash_is_made_again_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "locker-x.key").write_bytes(b"")  # an older release killed between creating and writing it
    clock = Clock()
    s = store(tmp_path, clock)
    key = (tmp_path / "locker-x.key").read_bytes()
    assert len(key) == 32 and (tmp_path / "locker-x.key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.glob("locker-x.key.bad-*")] != []  # the empty one kept aside, not lost
    assert "0 bytes, not 32 (left by a crash while it was made)" in caplog.text
    _, code = s.assign("A-01", email="p@example.jp", reference="R-1", valid_s=3600)
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    s.close()
    store(tmp_path, clock).close()
    assert (tmp_path / "locker-x.key").read_bytes() == key  # kept from then on
    assert not list(tmp_path.glob(".locker-x.key.*.tmp"))


def test_code_is_kept_only_as_a_keyed_hash_and_the_address_erased_after_pickup(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    a, code = s.assign("A-01", email="p@example.jp", reference="R-1", valid_s=3600)
    raw = (tmp_path / "locker-x.db").read_bytes() + (tmp_path / "locker-x.db-wal").read_bytes()
    assert code.encode() not in raw
    assert (tmp_path / "locker-x.key").stat().st_mode & 0o777 == 0o600
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    assert s.seen_open(a.id) is not None  # the door seen open: the code is spent
    assert s.check_code("A-01", code)[0] is CodeCheck.NO_CODE  # spent
    done = s.collected("A-01")
    assert done is not None and done.event_pending and done.has_email
    s.event_sent(a.id)
    after = s.get(a.id)
    assert after is not None and after.state is PickupState.COLLECTED and not after.has_email
    assert s.active() == {}
    s.close()


def test_one_active_assignment_per_compartment_and_unique_codes(tmp_path: Path) -> None:
    s = store(tmp_path, Clock(), code_length=4)
    codes = {s.assign(f"A-{i:02d}", email="p@example.jp", reference="R", valid_s=60)[1] for i in range(200)}
    assert len(codes) == 200
    with pytest.raises(PickupError, match="compartment A-00: is not free, got state reserved; pick a free one"):
        s.assign("A-00", email="q@example.jp", reference="R", valid_s=60)
    s.close()


def test_wrong_codes_lock_then_reset_and_expiry(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock, max_wrong=2)
    _, code = s.assign("A-01", email="p@example.jp", reference="R", valid_s=60)
    assert [s.check_code("A-01", "0")[0] for _ in range(3)] == [CodeCheck.WRONG, CodeCheck.LOCKED, CodeCheck.LOCKED]
    assert s.check_code("A-01", code)[0] is CodeCheck.LOCKED
    s.reset_tries("A-01")
    clock.now += 61
    assert [a.label for a in s.expire()] == ["A-01"]
    assert s.check_code("A-01", code)[0] is CodeCheck.EXPIRED
    assert s.active()["A-01"].state is PickupState.OVERDUE
    s.close()


def test_a_right_code_whose_door_failed_works_again(tmp_path: Path) -> None:
    s = store(tmp_path, Clock())
    _, code = s.assign("A-01", email="p@example.jp", reference="R", valid_s=60)
    check, a = s.check_code("A-01", code)
    assert check is CodeCheck.OK and a is not None
    s.unspend(a.id, code)
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    s.close()


def test_state_survives_reopening_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    _, code = s.assign("A-01", email="p@example.jp", reference="R", valid_s=60)
    s.check_code("A-01", "000")
    s.close()
    s = store(tmp_path, clock)
    assert s.active()["A-01"].wrong == 1
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    s.close()
    db = sqlite3.connect(tmp_path / "locker-x.db")
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(PickupError, match="schema version newer than this edgegw knows \\(2\\), got version 9"):
        store(tmp_path, clock)

"""The pickup store: a used code's assignment is collected only once its door was seen open; until then it can be
given back (also after a reopen, from its kept hash). Rows the previous release left `opened` count as seen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.locker.pickup import CodeCheck, PickupState, PickupStore
from tests.adapters.locker.test_pickup_store import Clock, store


def test_a_used_code_is_collected_only_after_its_door_was_seen_open(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    a, code = s.assign("A-01", email="p@example.jp", reference="R", valid_s=60)
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    assert s.collected("A-01") is None  # the door never seen open: no pickup
    assert s.check_code("A-01", code)[0] is CodeCheck.UNCONFIRMED  # not spent, not usable
    assert s.check_code("A-01", "000")[0] is CodeCheck.WRONG  # a wrong one still counts
    s.close()
    s = store(tmp_path, clock)  # a restart: the row is found again
    assert [u.id for u in s.unconfirmed()] == [a.id]
    seen = s.seen_open(a.id)
    assert seen is not None and seen.state is PickupState.OPENED
    assert s.seen_open(a.id) is None and s.give_back(a.id) is None  # decided once
    assert s.unconfirmed() == []
    assert s.check_code("A-01", code)[0] is CodeCheck.NO_CODE  # spent now
    done = s.collected("A-01")
    assert done is not None and done.state is PickupState.COLLECTED
    s.close()


def test_a_used_code_whose_door_was_not_seen_open_is_given_back(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    a, code = s.assign("A-01", email="p@example.jp", reference="R", valid_s=60)
    s.check_code("A-01", code)
    s.close()
    s = store(tmp_path, clock)  # after a restart the clear code is gone: the kept hash is what comes back
    back = s.give_back(a.id)
    assert back is not None and back.state is PickupState.RESERVED and back.opened_at is None
    assert s.collected("A-01") is None
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    s.close()


def test_rows_the_previous_release_left_opened_count_as_seen_open(tmp_path: Path) -> None:
    """The previous release dropped the hash with the code check and kept `opened` only once its status showed
    the door open (but for a kill between the two): such a row completes its pickup when the door closes."""
    clock = Clock()
    s = store(tmp_path, clock)
    a, code = s.assign("A-01", email="p@example.jp", reference="R", valid_s=60)
    s.close()
    db = sqlite3.connect(tmp_path / "locker-x.db")
    db.execute("UPDATE assignments SET state='opened', code_hash=NULL, opened_at=1 WHERE id=?", (a.id,))
    db.commit()
    db.close()
    s = PickupStore(tmp_path / "locker-x.db", clock=clock)
    assert s.unconfirmed() == []
    assert s.check_code("A-01", code)[0] is CodeCheck.NO_CODE
    done = s.collected("A-01")
    assert done is not None and done.state is PickupState.COLLECTED and done.event_pending
    s.close()

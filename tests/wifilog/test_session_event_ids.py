"""The WifiSessionEvent entity id is keyed with the key of the period holding the session, not a plain hash of
(NAS, session id) nor a key of the box that outlives the period: some controllers build the Acct-Session-Id from
the client MAC (Cisco AireOS `<hex>/<MAC>/<n>`), and a platform could then confirm a MAC it knows behind an event.
Stable for a session on one box: across a restart and a month boundary (its Stop may come in the next period),
so replays overwrite the same entity; gone with the period's erasure."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.processing.api import ProcessorContext
from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.runner import SESSION_EVENT_ID, SYSLOG_SESSION_ID, SessionEventsOut, session_key

START = datetime(2026, 11, 30, 14, 50, tzinfo=UTC)  # 23:50 JST on the last day of November
STOP = datetime(2026, 11, 30, 15, 20, tzinfo=UTC)  # 00:20 JST, December: the next period
MAC = "aa:bb:cc:dd:ee:01"
CISCO_SID = f"5f3a21c4/{MAC}/1234"
LEGACY_LOOKUP_SECRET = "wifilog.session-lookup"  # the previous release's one lookup key, never made again


def event(kind: EventKind, time: datetime, sid: str = CISCO_SID) -> SessionEvent:
    return SessionEvent(nas="wlc1", session_id=sid, kind=kind, time=time, client_mac=MAC, ap_mac=None)


async def entity_id(data_dir: Path, ev: SessionEvent) -> str | None:
    """The event stored and sent as a Wi-Fi adapter does, by a store and queue made anew (a restart); None when
    the log has no key for it."""
    store = WifiLogStore(data_dir)
    try:
        store.apply([ev])
        [key] = store.session_keys(SESSION_EVENT_ID, [(ev.nas, ev.session_id)])
    finally:
        store.close()
    out = SessionEventsOut("wifi", ProcessorContext(gateway_id="g", data_dir=str(data_dir)))
    return None if key is None else out.reading(ev, STOP, key).entity_id


async def test_the_entity_id_needs_the_box_key_and_stays_for_the_session(tmp_path: Path) -> None:
    box_a, box_b = tmp_path / "a", tmp_path / "b"
    start = await entity_id(box_a, event(EventKind.START, START))
    assert start is not None
    # the Stop in the next month, after a restart: the same entity, keyed by November's key
    assert await entity_id(box_a, event(EventKind.STOP, STOP)) == start
    assert start.startswith("urn:ngsi-ld:WifiSessionEvent:") and len(start.rpartition(":")[2]) == 24
    # what a platform could compute from the session id it guessed: not it
    plain = hashlib.sha256(f"wlc1\0{CISCO_SID}".encode()).hexdigest()[:24]
    assert not start.endswith(plain)
    # another box, the same NAS and session id: another entity
    assert await entity_id(box_b, event(EventKind.START, START)) != start


def test_each_period_has_its_own_key_and_its_erasure_takes_it(tmp_path: Path) -> None:
    december = START + timedelta(days=2)
    store = WifiLogStore(tmp_path, retention_months=1)
    try:
        store.apply([event(EventKind.START, START), event(EventKind.START, december, sid="S-december")])
        sessions = [("wlc1", CISCO_SID), ("wlc1", "S-december"), ("wlc1", "never-stored")]
        november_key, december_key, none = store.session_keys(SESSION_EVENT_ID, sessions)
        assert november_key is not None and december_key is not None and november_key != december_key
        assert none is None
        [certificate] = store.expire(datetime(2027, 1, 1, tzinfo=UTC))  # November's retention is over
        assert certificate["period"] == "2026-11"
        assert store.session_keys(SESSION_EVENT_ID, sessions) == [None, december_key, None]
    finally:
        store.close()
    # the next store, which reads the keys from the file and the secret store anew: the same
    store = WifiLogStore(tmp_path, retention_months=1)
    try:
        assert store.session_keys(SESSION_EVENT_ID, sessions) == [None, december_key, None]
    finally:
        store.close()


def test_the_box_key_is_only_for_ids_that_stay_on_the_box(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only for ids kept on the box") as caught:
        session_key(SecretStore(tmp_path), SESSION_EVENT_ID)
    assert str(caught.value) == (
        "session_key: only for ids kept on the box, got 'edgegw wifilog session event entity id'; an id that leaves "
        "the box is keyed by its session's period (WifiLogStore.session_keys), so that the period's erasure takes "
        "its key"
    )
    # the syslog receiver's session ids: a key of the box, stable, and not the old releases' lookup key
    first = session_key(SecretStore(tmp_path), SYSLOG_SESSION_ID)
    assert session_key(SecretStore(tmp_path), SYSLOG_SESSION_ID) == first and len(first) == 32
    assert SecretStore(tmp_path).names() == ["wifilog.session-ids"]
    store = WifiLogStore(tmp_path)
    try:
        store.apply([event(EventKind.START, START)])
    finally:
        store.close()
    assert LEGACY_LOOKUP_SECRET not in SecretStore(tmp_path).names()

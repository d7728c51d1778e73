"""The WifiSessionEvent entity id is keyed with the box's Wi-Fi log lookup key, not a plain hash of (NAS,
session id): some controllers build the Acct-Session-Id from the client MAC (Cisco AireOS `<hex>/<MAC>/<n>`),
and a platform could then confirm a MAC it knows behind an event. Stable for a session on one box: across a
restart and a month boundary (its Stop may come in the next period), so replays overwrite the same entity."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from gateway.processing.api import ProcessorContext
from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogStore
from gateway.wifilog.runner import SessionEventsOut
from gateway.wifilog.store import LOOKUP_SECRET

START = datetime(2026, 11, 30, 14, 50, tzinfo=UTC)  # 23:50 JST on the last day of November
STOP = datetime(2026, 11, 30, 15, 20, tzinfo=UTC)  # 00:20 JST, December: the next period
MAC = "aa:bb:cc:dd:ee:01"
CISCO_SID = f"5f3a21c4/{MAC}/1234"


def event(kind: EventKind, time: datetime) -> SessionEvent:
    return SessionEvent(nas="wlc1", session_id=CISCO_SID, kind=kind, time=time, client_mac=MAC, ap_mac=None)


async def entity_id(data_dir: Path, ev: SessionEvent) -> str:
    out = SessionEventsOut("wifi", ProcessorContext(gateway_id="g", data_dir=str(data_dir)))
    return out.reading(ev, STOP).entity_id


async def test_the_entity_id_needs_the_box_key_and_stays_for_the_session(tmp_path: Path) -> None:
    box_a, box_b = tmp_path / "a", tmp_path / "b"
    start = await entity_id(box_a, event(EventKind.START, START))
    # the Stop in the next month, from a SessionEventsOut built anew (a restart): the same entity
    assert await entity_id(box_a, event(EventKind.STOP, STOP)) == start
    assert start.startswith("urn:ngsi-ld:WifiSessionEvent:") and len(start.rpartition(":")[2]) == 24
    # what a platform could compute from the session id it guessed: not it
    plain = hashlib.sha256(f"wlc1\0{CISCO_SID}".encode()).hexdigest()[:24]
    assert not start.endswith(plain)
    # another box, the same NAS and session id: another entity
    assert await entity_id(box_b, event(EventKind.START, START)) != start


async def test_the_store_opens_a_lookup_key_the_session_events_made_first(tmp_path: Path) -> None:
    # SessionEventsOut may be built before the store's first write makes `wifilog.session-lookup`: it must
    # make it in the store's form, and the store find its sessions by it
    store_first = WifiLogStore(tmp_path / "store-first")
    try:
        store_first.apply([event(EventKind.START, START)])
    finally:
        store_first.close()
    first = await entity_id(tmp_path, event(EventKind.START, START))
    made = [SecretStore(d).get(LOOKUP_SECRET) for d in (tmp_path / "store-first", tmp_path)]
    assert [len(base64.b64decode(text, validate=True)) for text in made] == [32, 32]
    assert len(made[0]) == len(made[1])
    store = WifiLogStore(tmp_path)
    try:
        store.apply([event(EventKind.START, START)])
        store.apply([event(EventKind.STOP, STOP)])
        [session] = store.search(Query(mac=MAC))
        assert session.session_id == CISCO_SID and session.stop == STOP
    finally:
        store.close()
    assert await entity_id(tmp_path, event(EventKind.STOP, STOP)) == first

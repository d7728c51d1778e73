"""A station's session is one session, and none is left open for ever (review 6, finding 1): an AP logging a
station's re-association as a join again keeps the session waiting for its leave, and the next join after a join
was forgotten (its leave lost) closes the forgotten one's session. Real UDP on loopback into a real WifiLogStore,
the usage counter fed as the adapter feeds it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from adapters.wifi_syslog.receiver import REJOIN_CAUSE, SyslogReceiver
from gateway.wifilog import Query, WifiLogStore
from gateway.wifilog.usage import UsageCounter
from tests.adapters.wifi_syslog.test_receiver_bounds import NOW, join, leave, send_udp

MAC = "aa:bb:cc:dd:ee:01"


def clients(usage: UsageCounter) -> dict[str, object]:
    return {r.source.device: r.attributes["connectedClients"].value for r in usage.readings(NOW, 600)}


async def test_a_join_logged_again_while_connected_keeps_one_session_past_max_session(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    now = [NOW]
    usage = UsageCounter("wifi", clock=lambda: 0.0)
    rx = SyslogReceiver(store, clock=lambda: now[0], clock_synced=lambda: True, on_event=usage.record)
    _, port = await rx.start_udp("127.0.0.1", 0)
    await send_udp(rx, port, [join(0, mac=MAC)])  # 02:00
    for hours, stamp in ((12, "2026-12-04T14:00:00Z"), (24.5, "2026-12-05T02:30:00Z")):  # re-associations
        now[0] = NOW + timedelta(hours=hours)
        await send_udp(rx, port, [join(0, mac=MAC, stamp=stamp)])
    assert clients(usage) == {"syslog:ap1": 1}
    now[0] = NOW + timedelta(hours=25)
    await send_udp(rx, port, [leave(MAC, "2026-12-05T03:00:00Z")])  # the one leave
    [session] = store.search(Query(mac=MAC))
    assert (session.start, session.stop) == (NOW, NOW + timedelta(hours=25))
    # an inquiry a week later does not find the phone "perhaps still there"
    week = NOW + timedelta(days=7)
    assert store.search(Query(mac=MAC, time_from=week, time_to=week + timedelta(hours=1))) == []
    assert clients(usage) == {"syslog:ap1": 0}
    assert rx.counters["open_expired"] == 0 and rx.counters["rejoin_closed"] == 0
    await rx.close()
    store.close()


async def test_the_next_join_after_a_forgotten_one_closes_its_session_and_says_why(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    now = [NOW]
    usage = UsageCounter("wifi", clock=lambda: 0.0)
    rx = SyslogReceiver(store, clock=lambda: now[0], clock_synced=lambda: True, on_event=usage.record)
    _, port = await rx.start_udp("127.0.0.1", 0)
    await send_udp(rx, port, [join(0, mac=MAC)])  # its leave is lost (UDP, or the AP rebooted)
    now[0] = NOW + timedelta(hours=25)
    await send_udp(rx, port, [join(0, mac=MAC, stamp="2026-12-05T03:00:00Z")])
    first, second = sorted(store.search(Query(mac=MAC)), key=lambda s: s.start)
    assert (first.start, first.stop, first.terminate_cause) == (NOW, NOW + timedelta(hours=25), REJOIN_CAUSE)
    assert (second.start, second.stop) == (NOW + timedelta(hours=25), None)
    assert first.session_id != second.session_id
    assert rx.counters["open_expired"] == 1 and rx.counters["rejoin_closed"] == 1
    assert clients(usage) == {"syslog:ap1": 1}  # the usage counts got the Stop too
    # the next leave closes the new session, not the old one a second time
    await send_udp(rx, port, [leave(MAC, "2026-12-05T04:00:00Z")])
    first, second = sorted(store.search(Query(mac=MAC)), key=lambda s: s.start)
    assert first.stop == NOW + timedelta(hours=25) and second.stop == NOW + timedelta(hours=26)
    assert clients(usage) == {"syslog:ap1": 0}
    await rx.close()
    store.close()


async def test_a_join_forgotten_for_room_is_closed_at_its_stations_next_join(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, open_kept=2)
    _, port = await rx.start_udp("127.0.0.1", 0)
    await send_udp(rx, port, [join(n) for n in range(3)])  # the first one forgotten: two wait at most
    assert rx.counters["open_forgotten"] == 1
    await send_udp(rx, port, [join(0, stamp="2026-12-04T02:05:00Z")])
    first, second = sorted(store.search(Query(mac="02:00:00:00:00:00")), key=lambda s: s.start)
    assert (first.stop, first.terminate_cause) == (NOW + timedelta(minutes=5), REJOIN_CAUSE)
    assert second.stop is None and rx.counters["rejoin_closed"] == 1
    await rx.close()
    store.close()

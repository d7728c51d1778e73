"""Generated sessions through the real decode → store → usage and session-event path: no MAC or e-mail in clear
in the log records, the readings bound for the outbox, their NGSI v2 / NGSI-LD uplink bodies, the diagnostics,
or the database file."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.radius import AccountingRecord, build_accounting_request, decode_request
from adapters.radius.server import RadiusAccountingServer
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import to_ld_entity
from gateway.ngsi.v2 import to_v2_entity
from gateway.processing.api import ProcessorContext
from gateway.records import Reading
from gateway.wifilog import Query, SessionEvent, WifiLogStore
from gateway.wifilog.runner import SESSION_EVENT_ID, SessionEventsOut
from gateway.wifilog.usage import UsageCounter

SECRET = b"s3cret"
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)

macs = st.binary(min_size=6, max_size=6).map(lambda b: "-".join(f"{x:02X}" for x in b))
emails = st.from_regex(r"[a-z][a-z0-9._]{2,12}@[a-z]{3,8}\.(jp|com)", fullmatch=True)
sessions = st.lists(st.tuples(macs, emails, st.sampled_from([1, 3, 2]), st.integers(0, 10**9)), min_size=1, max_size=12)


async def _session_readings(events: list[SessionEvent], store: WifiLogStore) -> list[Reading]:
    """The optional session events as the adapter emits them (pseudonymized before emit, ids under the keys of
    their sessions' periods)."""
    out = SessionEventsOut("wifi", ProcessorContext(gateway_id="g", data_dir=str(store.data_dir)))
    keys = store.session_keys(SESSION_EVENT_ID, [(ev.nas, ev.session_id) for ev in events])
    assert None not in keys  # every one was stored
    return [out.reading(ev, NOW, key) for ev, key in zip(events, keys, strict=True) if key is not None]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record) + repr(record.__dict__))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions)
def test_no_mac_or_email_in_clear_anywhere_but_the_encrypted_rows(items: list[tuple[str, str, int, int]]) -> None:
    handler = _Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = WifiLogStore(Path(tmp))
            usage = UsageCounter("wifi")
            events: list[SessionEvent] = []

            def on_event(ev: SessionEvent) -> None:
                usage.record(ev)
                events.append(ev)

            server = RadiusAccountingServer(store, {"192.0.2.9": SECRET}, clock=lambda: NOW)
            reqs = []
            for i, (mac, email, status, octets) in enumerate(items):
                record = AccountingRecord(
                    status_type=status,
                    user_name=email,
                    calling_station_id=mac,
                    called_station_id="00-11-22-33-44-55:Lib",
                    session_id=f"S{i % 4}",
                    nas_identifier="ap1",
                    input_octets=octets,
                )
                data = build_accounting_request(i % 256, record, SECRET)
                reqs.append(decode_request(data, secret=SECRET, now=NOW, source=("192.0.2.9", 1812)))
            for ev in server.commit(reqs):  # as the server hands them on once it has answered
                on_event(ev)
            readings = usage.readings(NOW, 600) + asyncio.run(_session_readings(events, store))
            found = store.search(Query(time_from=NOW, time_to=NOW))
            assert {s.client_mac for s in found} <= {r.record.client_mac.value for r in reqs if r.record.client_mac}
            store.close()
            raw = b"".join(p.read_bytes() for p in (Path(tmp) / "wifilog").glob("wifilog.db*"))
        uplink = [json.dumps(to_v2_entity(r, encoding=ValueEncoding.PERCENT), ensure_ascii=False) for r in readings]
        uplink += [json.dumps(to_ld_entity(r, encoding=ValueEncoding.PERCENT, context=None)) for r in readings]
        outside = repr(readings) + "".join(uplink) + repr(server.diagnostics()) + "".join(handler.text)
        for mac, email, _, _ in items:
            canon = mac.replace("-", ":").lower()
            for needle in (mac, canon, canon.replace(":", ""), email):
                assert needle not in outside
                assert needle.encode() not in raw
    finally:
        root.removeHandler(handler)
        root.setLevel(old)

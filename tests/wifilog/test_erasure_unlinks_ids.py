"""After a period's erasure nothing left on the box links a MAC to that period's ids.

The re-identification path this closes: the platform receives a `WifiSessionEvent` entity whose id is an HMAC of
(NAS, session id), and the session id may be built from the client MAC (Cisco AireOS `<hex>/<MAC>/<n>`; the
syslog receiver's own from AP, MAC and join time, which the entity carries in clear as `accessPoint` and
`observedAt`). Until this change every such id, and the lookup digest of (NAS, session id) in the database, was
keyed under one box key that no erasure destroyed (`secret:wifilog.session-lookup`): whoever held the box's secret
store after the erasure, with the platform's data or a copy of the database made before it, recomputed the id
for a guessed MAC and confirmed it.

The attacker here reads the code's derivation labels and holds everything the box keeps: every 32-byte key in
its secret store, every data key those open in the database files, and every key derived from them by up to two
HMACs under those labels. Before the erasure it confirms the MAC (so the attack is real); after it, it must not.
The radius and wifi_syslog adapters run as the runtime runs them (real UDP, radclient, store, pseudonymizer).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.radius.adapter import RadiusAdapter
from adapters.radius.config import RadiusConfig
from adapters.wifi_syslog.adapter import WifiSyslogAdapter
from adapters.wifi_syslog.config import WifiSyslogConfig
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.records import Reading
from gateway.secrets import SecretStore
from gateway.wifilog import WifiLogStore
from gateway.wifilog.runner import SESSION_EVENT_ID, SYSLOG_SESSION_ID
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.adapters.radius.test_server import SECRET, radclient

JST = timezone(timedelta(hours=9))
MAC = "aa:bb:cc:01:02:03"
OTHER_MAC = "aa:bb:cc:01:02:04"  # a wrong guess: never confirmed, before or after
NAS = "id:ap-lib-01"  # the NAS-Identifier the radius receiver names the NAS by (one of a few a platform can list)
# what the box's code derives keys with, as an attacker reading it knows
LABELS = (SESSION_EVENT_ID, SYSLOG_SESSION_ID, b"edgegw wifilog session lookup", b"edgegw wifilog blind index")


def cisco_sid(mac: str) -> str:
    return f"5f3a21c4/{mac}/1234"


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _keys_in(text: str) -> Iterator[bytes]:
    """32-byte keys in a secret's text: the whole text, or any string inside it as JSON, in base64 of either
    alphabet."""
    strings = [text]
    try:
        stack = [json.loads(text)]
    except ValueError:
        stack = []
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    for s in strings:
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decode(s.encode())
            except (binascii.Error, ValueError):
                continue
            if len(raw) == 32:
                yield raw


def keys_on_the_box(data_dir: Path, databases: Iterable[Path]) -> set[bytes]:
    """Every key the box holds: its secret store's, and the data keys these database files open with them,
    each with what up to two HMACs under the code's labels derive from it."""
    secrets = SecretStore(data_dir)
    found = {key for name in secrets.names() for key in _keys_in(secrets.get(name))}
    for path in databases:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            wrapped = [(str(k), bytes(w)) for k, w in db.execute("SELECT key_id, wrapped_key FROM periods")]
        finally:
            db.close()
        for key_id, blob in wrapped:
            for kek in list(found):
                with contextlib.suppress(InvalidTag):
                    found.add(AESGCM(kek).decrypt(blob[:12], blob[12:], key_id.encode()))
    level, out = set(found), set(found)
    for _ in range(2):
        level = {_hmac(key, label) for key in level for label in LABELS}
        out |= level
    return out


def id_digest(key: bytes, *parts: str) -> str:
    """An entity id's digest as the platform receives it: 96 bits of HMAC-SHA-256 of the parts as JSON."""
    return _hmac(key, json.dumps(parts).encode()).hex()[:24]


def confirms_radius(keys: set[bytes], entity_id: str, mac: str) -> bool:
    digest = entity_id.rpartition(":")[2]
    return any(id_digest(k, NAS, cisco_sid(mac)) == digest for k in keys)


def confirms_syslog(keys: set[bytes], reading: Reading, mac: str) -> bool:
    """The guessed MAC, with the AP and join time the entity carries, behind the entity's id."""
    digest = reading.entity_id.rpartition(":")[2]
    nas = str(reading.attributes["accessPoint"].value)
    times = {t.isoformat() for t in (reading.observed_at, reading.observed_at.astimezone(JST))}
    sids = {"assoc-" + id_digest(k, nas, mac, t) for k in keys for t in times}
    return any(id_digest(k, nas, sid) == digest for k in keys for sid in sids)


def confirms_lookup_digest(keys: set[bytes], database: Path, mac: str) -> bool:
    """A guessed MAC behind a row's lookup digest of (NAS, session id) in a copy of the database."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        digests = {bytes(r[0]) for r in db.execute("SELECT session_idx FROM sessions")}
    finally:
        db.close()
    pair = json.dumps([NAS, cisco_sid(mac)]).encode()
    return any(_hmac(k, pair)[:16] in digests for k in keys)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(
    adapter: RadiusAdapter | WifiSyslogAdapter, listening: Callable[[], bool], send: Callable[[], Awaitable[None]]
) -> Reading:
    """The adapter run until its one session event came out; `send` feeds it once it is `listening`."""
    got: list[Reading] = []

    async def emit(r: Reading) -> None:
        if r.entity_type == "WifiSessionEvent":
            got.append(r)

    task = asyncio.create_task(adapter.run(emit))
    try:
        for _ in range(300):
            if listening():
                break
            await asyncio.sleep(0.01)
        await send()
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(got) == 1, f"{len(got)} session events"
    return got[0]


def _context(data_dir: Path) -> AdapterContext:
    return AdapterContext(gateway_id="lib", data_dir=str(data_dir))


async def radius_start(data_dir: Path) -> Reading:
    SecretStore(data_dir).set("radius.ap1", SECRET)
    port = _free_port()
    cfg: AdapterConfig = RadiusConfig.model_validate(
        {
            "name": "wifi-radius",
            "type": "radius",
            "listen": "127.0.0.1",
            "port": port,
            "session_events": True,
            "clients": [{"address": "127.0.0.1", "secret": "secret:radius.ap1"}],
        }
    )
    attrs = (
        f'Acct-Status-Type=Start,User-Name="hanako@example.jp",Calling-Station-Id="{MAC.upper().replace(":", "-")}",'
        f'Called-Station-Id="00-11-22-33-44-55:Library-Free",Acct-Session-Id="{cisco_sid(MAC)}",'
        'NAS-Identifier="ap-lib-01"'
    )

    async def send() -> None:
        rc, out = await radclient(port, SECRET, attrs)
        assert rc == 0, out

    adapter = RadiusAdapter(cfg, _context(data_dir))
    return await _run(adapter, lambda: adapter.server is not None and adapter.server.transport is not None, send)


async def syslog_join(data_dir: Path) -> Reading:
    port = _free_port()
    cfg: AdapterConfig = WifiSyslogConfig.model_validate(
        {
            "name": "wifi-syslog",
            "type": "wifi_syslog",
            "listen": "127.0.0.1",
            "udp_port": port,
            "tcp_port": None,
            "session_events": True,
        }
    )
    stamp = datetime.now(JST).strftime("%b %e %H:%M:%S")  # the AP's JST clock, now: the receiver believes it
    line = f"<30>{stamp} ap1 hostapd: wlan0: AP-STA-CONNECTED {MAC.upper()}".encode()

    async def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(line, ("127.0.0.1", port))

    adapter = WifiSyslogAdapter(cfg, _context(data_dir))
    return await _run(adapter, lambda: adapter.receiver is not None and adapter.receiver.listeners > 0, send)


def copy_of_the_database(data_dir: Path, to: Path) -> Path:
    """A copy of the log as a backup takes it (SQLite's online backup: the WAL's pages included)."""
    source = sqlite3.connect(data_dir / STORE_DIR / DB_FILE)
    target = sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return to


def erase_everything(data_dir: Path) -> None:
    """The hourly expiry, run as it would run once the period is past its retention."""
    store = WifiLogStore(data_dir)
    try:
        certificates = store.expire(datetime.now(UTC) + timedelta(days=31 * 15))
        assert len(certificates) == 1 and certificates[0]["records"] == 1
        assert store.stats()["sessions_per_period"] == {}
    finally:
        store.close()


@pytest.mark.skipif(shutil.which("radclient") is None, reason="freeradius-utils (radclient) not installed")
async def test_after_the_erasure_the_box_cannot_confirm_a_mac_behind_a_radius_session_id(tmp_path: Path) -> None:
    box = tmp_path / "box"
    sent = await radius_start(box)
    backup = copy_of_the_database(box, tmp_path / "backup.db")
    before = keys_on_the_box(box, [box / STORE_DIR / DB_FILE])
    assert confirms_radius(before, sent.entity_id, MAC) and not confirms_radius(before, sent.entity_id, OTHER_MAC)
    assert confirms_lookup_digest(before, backup, MAC) and not confirms_lookup_digest(before, backup, OTHER_MAC)

    erase_everything(box)

    after = keys_on_the_box(box, [box / STORE_DIR / DB_FILE, backup])
    assert not confirms_radius(after, sent.entity_id, MAC)  # the platform's entity id
    assert not confirms_lookup_digest(after, backup, MAC)  # a copy of the database made before the erasure


async def test_after_the_erasure_the_box_cannot_confirm_a_mac_behind_a_syslog_session(tmp_path: Path) -> None:
    box = tmp_path / "box"
    sent = await syslog_join(box)
    assert str(sent.attributes["clientMac"].value).startswith("pz1:")
    before = keys_on_the_box(box, [box / STORE_DIR / DB_FILE])
    assert confirms_syslog(before, sent, MAC) and not confirms_syslog(before, sent, OTHER_MAC)

    erase_everything(box)

    assert not confirms_syslog(keys_on_the_box(box, [box / STORE_DIR / DB_FILE]), sent, MAC)

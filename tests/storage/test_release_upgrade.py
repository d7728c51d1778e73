"""Today's code opens the data directory release 0.1.0 wrote (tests/storage/fixtures/0.1.0, see make_release_fixtures.py)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography.fernet import Fernet

from gateway.accounts.store import AccountStore
from gateway.app import Gateway
from gateway.audit.log import KEY_NAME, AuditLog
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import SCHEMA_VERSION as BUFFER_VERSION
from gateway.config import parse_config
from gateway.control.config_versions import ConfigVersions
from gateway.errors import ConfigError
from gateway.secrets import SCHEMA_VERSION as SECRETS_VERSION
from gateway.secrets import SecretStore
from gateway.uplinks.api import DELIVERED
from gateway.web.config import WebConfig
from tests.support.orion_double import OrionDouble

RELEASE = Path(__file__).parent / "fixtures" / "0.1.0"
CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)
WEB = WebConfig(lockout_failures=3, lockout_minutes=15, password_min_length=12, password_max_age_days=182)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(RELEASE, out)
    return out


async def _deliver_all(box: Outbox, batch_size: int = 5000) -> list[int]:
    ns: list[int] = []
    while batch := await box.read("orion", batch_size):
        ns.extend(r.attributes["n"].value for r in batch)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
    return ns


async def test_the_buffer_of_0_1_0_delivers_its_backlog_in_order(data_dir: Path) -> None:
    box = await Outbox.open(data_dir / "buffer.db", CFG, ["orion"])
    try:
        assert await _deliver_all(box) == list(range(100, 1000))  # 0-99 were acknowledged by 0.1.0
    finally:
        await box.close()
    with sqlite3.connect(data_dir / "buffer.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == BUFFER_VERSION


async def test_an_upgrade_with_100000_readings_pending_delivers_them_all_in_order(data_dir: Path) -> None:
    # the release's own rows, copied until 100,000 are pending (a release can only be run as it was
    # built, so its file is grown in SQL rather than by running it for hours)
    path = data_dir / "buffer.db"
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM outbox WHERE seq <= (SELECT seq FROM cursors WHERE uplink = 'orion')")
        rows = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        copies = 100_000 // rows + 1
        for _ in range(copies - 1):
            db.execute(
                "INSERT INTO outbox (lane, entity_id, observed_us, appended_ms, size, body, target) "
                "SELECT lane, entity_id, observed_us, appended_ms, size, body, target FROM outbox "
                f"ORDER BY seq LIMIT {rows}"
            )
        db.execute(f"DELETE FROM outbox WHERE seq > (SELECT min(seq) FROM outbox) + {100_000 - 1}")
        pending = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    assert pending == 100_000
    expected = [100 + i % rows for i in range(100_000)]
    box = await Outbox.open(path, CFG, ["orion"])
    try:
        assert await _deliver_all(box) == expected
        assert (await box.stats()).rows == 0
    finally:
        await box.close()


def test_accounts_audit_log_and_config_versions_of_0_1_0_open_and_verify(data_dir: Path) -> None:
    web = data_dir / "web"
    store = AccountStore(web, WEB, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    assert [u.name for u in store.list_users()] == ["admin1"]
    assert store.authenticate("admin1", "correct horse battery", address="127.0.0.1", now=1.78e9).ok
    audit = AuditLog(web, secret_store=SecretStore(data_dir))
    verdict = audit.verify()
    assert verdict.ok, verdict.problems
    assert verdict.checked == 3
    versions = ConfigVersions(data_dir / "config_versions.db")
    try:
        first = versions.get(1)
        assert first is not None and first.text == '[gateway]\nid = "fixture-gw"\n'
    finally:
        versions.close()


def test_the_secret_store_of_0_1_0_is_read_and_migrated_forward(data_dir: Path) -> None:
    store = SecretStore(data_dir)
    assert store.schema_version() == 0
    assert store.get("orion_token") == "fixture-token-not-a-real-one"
    assert store.migrate() is True
    assert store.schema_version() == SECRETS_VERSION
    assert store.get("orion_token") == "fixture-token-not-a-real-one"
    assert store.migrate() is False
    store.set("other", "v")
    assert store.names() == sorted(["orion_token", "other", KEY_NAME])


def test_a_secret_store_from_a_newer_edgegw_is_refused(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.set("a", "b")
    fernet = Fernet(store.key_path.read_bytes().strip())
    store.store_path.write_bytes(fernet.encrypt(b'{"version": 9, "secrets": {}}'))
    with pytest.raises(ConfigError) as caught:
        store.get("a")
    assert str(caught.value) == (
        f"{store.store_path}: schema version newer than this edgegw knows ({SECRETS_VERSION}), got version 9; upgrade edgegw"
    )


async def test_a_gateway_started_on_0_1_0_data_delivers_the_backlog_to_orion_in_order(
    data_dir: Path, orion_double: OrionDouble
) -> None:
    config = parse_config(
        {
            "gateway": {"id": "fixture-gw", "data_dir": str(data_dir)},
            "adapters": [{"name": "gauges", "type": "simulated", "rate": 1, "limit": 1}],
            "uplinks": [{"name": "orion", "type": "orion", "url": orion_double.url}],
        }
    )
    async with Gateway(config) as gw:
        for _ in range(1000):
            if gw.loops[0].delivered >= 901:
                break
            await asyncio.sleep(0.01)
    # the 900 readings 0.1.0 left unsent arrived first, in the order they were taken, then the new one
    sent = [e["n"]["value"] for e in orion_double.written if "n" in e]
    assert sent == list(range(100, 1000))
    assert SecretStore(data_dir).schema_version() == SECRETS_VERSION  # migrated on start

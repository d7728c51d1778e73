"""End to end on a really full disk: the gateway fills a 4 MiB tmpfs while its broker is down, is
stopped (SIGTERM or kill -9), the rest of the disk is filled to the last byte, and it must start
again, say the disk is full, refuse new readings, deliver the whole backlog once the broker is
back, and then accept new readings again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess, Receiver, wait_until
from tests.e2e.test_mqtt_e2e import assert_complete_and_ordered
from tests.support.mosquitto import MosquittoBroker
from tests.support.tmpfs import fill, free_bytes

pytestmark = pytest.mark.e2e

RESERVE = 512 * 1024


def config(port: int) -> str:
    return f"""
[gateway]
id = "e2e-gw"
data_dir = "@DATA_DIR@"
log_format = "json"

[buffer]
reserve_bytes = {RESERVE}

[[adapters]]
name = "river"
type = "simulated"
kind = "river-level"
entities = 5
rate = 1500

[[uplinks]]
name = "platform"
type = "mqtt"
host = "127.0.0.1"
port = {port}
format = "ngsi-v2"
retry_initial_s = 0.2
retry_max_s = 1.0
"""


def committed_max_seq(db: Path) -> int:
    """The highest seq ever committed, read without changing the files (a read-only connection does
    not checkpoint on close, so a killed gateway's -wal stays as it left it)."""
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
async def test_starts_on_a_full_disk_and_delivers_the_backlog_that_filled_it(
    tmp_path: Path, tmpfs: Callable[..., Path], mosquitto_private: MosquittoBroker, stop: str
) -> None:
    disk = tmpfs("4m")  # the gateway's data directory
    receiver = Receiver(mosquitto_private.port, topic="edgegw/e2e-gw/#", client_id=f"rx-full-{stop}")
    mosquitto_private.stop()  # the uplink is down from the start: the buffer fills the disk
    gw = GatewayProcess(tmp_path, config(mosquitto_private.port))
    assert gw.data_dir == disk
    try:
        gw.start()
        await wait_until(lambda: "refusing new readings" in gw.log_tail(1_000_000), 60, "the disk to fill", gw)
        assert gw.alive()
        if stop == "sigterm":
            code, _ = await gw.terminate()
            assert code == 0
            committed = gw.committed_max_seq()  # closes as the gateway did, leaving no -wal or -shm
            # a clean close removed them: opening now needs room for the -shm and the -wal again
            assert not (disk / "buffer.db-wal").exists() and not (disk / "buffer.db-shm").exists()
        else:
            gw.kill9()
            committed = committed_max_seq(disk / "buffer.db")
            assert (disk / "buffer.db-wal").exists()
        assert committed > 3000, "the disk should have held a few thousand readings"
        fill(disk)
        assert free_bytes(disk) == 0

        gw.start()
        await wait_until(
            lambda: " started: " in gw.log_tail(1_000_000), 30, "the gateway to start on the full disk", gw
        )
        await wait_until(
            lambda: "refusing new readings" in gw.log_tail(1_000_000), 30, "new readings to be refused", gw
        )
        await asyncio.sleep(1.0)
        assert gw.alive(), gw.log_tail()
        log = gw.log_tail(1_000_000)
        assert "Traceback" not in log
        assert f"buffer: disk full in {disk}: refusing new readings until there is room" in log
        if stop == "sigterm":
            reserve = f"{disk}/buffer.db.reserve (0.5 MiB)"
            assert f"deleted the reserve file {reserve} so that opening the buffer can go on" in log
        assert committed_max_seq(disk / "buffer.db") == committed  # nothing new fitted

        mosquitto_private.start()
        await wait_until(
            lambda: set(range(1, committed + 1)) <= receiver.distinct(),
            60,
            f"the backlog of {committed} readings to arrive",
            gw,
        )
        # delivery freed pages inside the file: new readings are stored and delivered again. Counted, not
        # compared by seq: a run after kill -9 starts past the seqs the killed one reserved (up to 2^20
        # higher), and a reading may be delivered before its commit, so the log line is waited for too.
        await wait_until(
            lambda: (
                len(receiver.distinct() - set(range(1, committed + 1))) > 1000
                and "buffer: disk has room again" in gw.log_tail(1_000_000)
            ),
            90,
            "new readings stored and delivered after the backlog",
            gw,
        )
        code, took = await gw.terminate()
        assert code == 0 and took < 5.0
        assert_complete_and_ordered(receiver, set(range(1, committed + 1)))
        assert "Traceback" not in gw.logs()
    finally:
        gw.stop_now()
        receiver.close()

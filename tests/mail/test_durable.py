"""A mail is on disk when `enqueue` returns: a process killed with SIGKILL loses none, a new one sends it once."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from gateway.mail import MailQueue, MailSender, MailState
from gateway.mail.queue import QUEUE_FILE, SCHEMA_VERSION
from gateway.storage.schema import SchemaTooNew
from tests.mail.conftest import Clock, mail_config
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial

ROOT = Path(__file__).resolve().parents[2]

ENQUEUER = """
import asyncio, sys
from gateway.mail import Mail, MailQueue

async def main():
    queue = await MailQueue.open(sys.argv[1])
    for i in range(int(sys.argv[2])):
        mail_id = await queue.enqueue(Mail(to=("patron%d@example.jp" % i,), subject="受け取りコード",
                                           text="コード %06d" % i, purpose="locker.pickup", reference="R-%d" % i))
        print(mail_id, flush=True)
    await asyncio.sleep(120)  # killed here, the queue never closed

asyncio.run(main())
"""


def file_modes(data_dir: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in data_dir.glob(QUEUE_FILE + "*")}


async def test_enqueued_mails_survive_kill_9_and_are_sent_once(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENQUEUER, str(data_dir), "5", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    ids = [int(await asyncio.wait_for(proc.stdout.readline(), 30)) for _ in range(5)]
    proc.kill()  # SIGKILL: no close, no checkpoint
    await proc.wait()
    assert ids == [1, 2, 3, 4, 5]

    clock.now = time.time()  # the subprocess stamped the rows with the real clock
    modes = await asyncio.to_thread(file_modes, data_dir)
    assert modes == {QUEUE_FILE: 0o600, QUEUE_FILE + "-wal": 0o600, QUEUE_FILE + "-shm": 0o600}
    queue = await MailQueue.open(data_dir, clock=clock)
    sender = MailSender(mail_config(smtp.port, tls_material), queue, data_dir, clock=clock)
    assert await sender.run_once() == 5
    assert sorted(r.rcpt_to[0] for r in smtp.received) == [f"patron{i}@example.jp" for i in range(5)]
    await queue.close()

    again = await MailQueue.open(data_dir, clock=clock)  # a restart after sending sends nothing again
    sender2 = MailSender(mail_config(smtp.port, tls_material), again, data_dir, clock=clock)
    clock.now += 10 * 86400
    assert await sender2.run_once() == 0
    assert len(smtp.received) == 5
    for mail_id in ids:
        status = await again.status(mail_id)
        assert status is not None and status.state is MailState.SENT
    await again.close()


async def test_a_queue_from_a_newer_version_is_refused(data_dir: Path) -> None:
    import sqlite3

    queue = await MailQueue.open(data_dir)
    await queue.close()
    with sqlite3.connect(data_dir / QUEUE_FILE) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew) as exc:
        await MailQueue.open(data_dir)
    # the one wording of every store (gateway/storage/schema.py): a downgrade, the file left as it was
    assert str(exc.value) == (
        f"{data_dir / QUEUE_FILE}: schema version newer than this edgegw knows ({SCHEMA_VERSION}), "
        f"got version {SCHEMA_VERSION + 1}; upgrade edgegw"
    )


async def test_the_queue_key_lives_in_the_secret_store(data_dir: Path) -> None:
    from gateway.secrets import SecretStore

    queue = await MailQueue.open(data_dir)
    await queue.close()
    assert "mail.queue_key" in SecretStore(data_dir).names()
    again = await MailQueue.open(data_dir)
    assert again.marker("A@Example.jp") == queue.marker("a@example.jp")  # same key, case-insensitive
    await again.close()

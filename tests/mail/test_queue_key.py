"""The queue's key: a secret store without `mail.queue_key`, or with another, never costs a pending mail."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from gateway.errors import ConfigError
from gateway.mail import Mail, MailQueue, MailState
from gateway.mail.queue import (
    MIGRATIONS,
    QUEUE_FILE,
    SCHEMA_VERSION,
    MailQueueKeyMismatch,
    MailQueueKeyMissing,
    _key,
    key_check,
)
from gateway.secrets import STORE_FILE, SecretStore
from gateway.storage.schema import migrate

KEY = "mail.queue_key"


def pickup(n: int = 0) -> Mail:
    return Mail(
        to=(f"patron{n}@example.jp",),
        subject="受け取りコード",
        text=f"コード {n:06d}",
        purpose="locker.pickup",
        reference=f"R-{n}",
    )


def fix(data_dir: Path) -> str:
    return (
        "put back the secret store (secrets.enc with its secrets.key) that holds the key they were sealed with, "
        f"or set it with `edgegw secret set {KEY}`, and start again; to give those mails up, move "
        f"{data_dir / QUEUE_FILE} aside"
    )


def rows(data_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(data_dir / QUEUE_FILE) as db:
        return db.execute("SELECT id, state, payload, last_error FROM mails ORDER BY id").fetchall()


def stored_check(data_dir: Path) -> bytes | None:
    with sqlite3.connect(data_dir / QUEUE_FILE) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'queue_key_check'").fetchone()
    return None if row is None else bytes(row[0])


async def test_a_secret_store_from_before_the_key_refuses_the_queue_and_the_right_one_brings_the_mails_back(
    data_dir: Path,
) -> None:
    older = (data_dir / STORE_FILE).read_bytes()  # a backup taken before the queue made its key
    queue = await MailQueue.open(data_dir)
    ids = [await queue.enqueue(pickup(n)) for n in range(2)]
    await queue.close()
    with_key = (data_dir / STORE_FILE).read_bytes()
    before = rows(data_dir)
    (data_dir / STORE_FILE).write_bytes(older)  # secrets.enc restored from that backup

    with pytest.raises(MailQueueKeyMissing) as exc:
        await MailQueue.open(data_dir)
    assert str(exc.value) == (
        f"mail queue {data_dir / QUEUE_FILE}: 2 pending mail(s) are sealed under secret:{KEY}, got a secret store "
        f"{data_dir / STORE_FILE} without it; {fix(data_dir)}"
    )
    assert isinstance(exc.value, ConfigError)  # `edgegw run` prints it and exits 2: a restart cannot help
    assert exc.value.code == "mail_queue_key_missing" and exc.value.params["secret"] == KEY
    assert KEY not in SecretStore(data_dir).names()  # no new key made
    assert rows(data_dir) == before  # nothing failed, nothing erased

    (data_dir / STORE_FILE).write_bytes(with_key)  # the right secret store put back
    queue = await MailQueue.open(data_dir)
    assert [(p.id, p.mail) for p in await queue.due(1e12)] == [(ids[0], pickup(0)), (ids[1], pickup(1))]
    await queue.close()


async def test_another_key_refuses_the_queue_and_changes_nothing(data_dir: Path) -> None:
    queue = await MailQueue.open(data_dir)
    mail_id = await queue.enqueue(pickup())
    await queue.close()
    right = SecretStore(data_dir).get(KEY)
    before = rows(data_dir)
    SecretStore(data_dir).set(KEY, Fernet.generate_key().decode())

    with pytest.raises(MailQueueKeyMismatch) as exc:
        await MailQueue.open(data_dir)
    assert str(exc.value) == (
        f"mail queue {data_dir / QUEUE_FILE}: 1 pending mail(s) are sealed under another key than secret:{KEY} in "
        f"the secret store {data_dir / STORE_FILE}, got a key that does not open them; {fix(data_dir)}"
    )
    assert exc.value.code == "mail_queue_key_mismatch"
    assert rows(data_dir) == before and stored_check(data_dir) == key_check(right)

    SecretStore(data_dir).set(KEY, right)  # `edgegw secret set mail.queue_key`
    queue = await MailQueue.open(data_dir)
    [pending] = await queue.due(1e12)
    assert pending.id == mail_id and pending.mail == pickup()
    await queue.close()


async def test_with_nothing_pending_a_missing_or_other_key_is_simply_used(data_dir: Path) -> None:
    older = (data_dir / STORE_FILE).read_bytes()
    queue = await MailQueue.open(data_dir)
    first = SecretStore(data_dir).get(KEY)
    assert stored_check(data_dir) == key_check(first)
    mail_id = await queue.enqueue(pickup())
    await queue.mark_sent(mail_id)  # its token erased: nothing sealed is left
    await queue.close()

    (data_dir / STORE_FILE).write_bytes(older)
    queue = await MailQueue.open(data_dir)  # a new key, and the check follows it
    second = SecretStore(data_dir).get(KEY)
    assert second != first and stored_check(data_dir) == key_check(second)
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.SENT
    await queue.close()

    third = Fernet.generate_key().decode()
    SecretStore(data_dir).set(KEY, third)
    queue = await MailQueue.open(data_dir)
    assert stored_check(data_dir) == key_check(third)
    await queue.close()


def version_1_file(data_dir: Path, sealed_with: str) -> None:
    """A queue as the release before the check wrote it: one pending mail sealed under `sealed_with`."""
    token = Fernet(sealed_with.encode()).encrypt(
        b'{"to": ["patron0@example.jp"], "subject": "s", "text": "t", "html": null}'
    )
    path = data_dir / QUEUE_FILE
    db = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(db, path, MIGRATIONS[:1])
        db.execute(
            "INSERT INTO mails (created_at, purpose, reference, state, next_attempt_at, payload, marker, domains,"
            " recipients) VALUES (1, 'locker.pickup', 'R-0', 'pending', 1, ?, 'm1:x', '***@example.jp', 1)",
            (token,),
        )
    finally:
        db.close()


async def test_a_file_from_before_the_check_records_it_from_the_key_that_opens_its_mails(data_dir: Path) -> None:
    key = Fernet.generate_key().decode()
    SecretStore(data_dir).set(KEY, key)
    version_1_file(data_dir, key)
    queue = await MailQueue.open(data_dir)
    assert stored_check(data_dir) == key_check(key)
    [pending] = await queue.due(1e12)
    assert pending.mail.to == ("patron0@example.jp",)
    await queue.close()
    with sqlite3.connect(data_dir / QUEUE_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_file_from_before_the_check_whose_mails_the_key_does_not_open_is_refused(data_dir: Path) -> None:
    SecretStore(data_dir).set(KEY, Fernet.generate_key().decode())
    version_1_file(data_dir, Fernet.generate_key().decode())
    before = rows(data_dir)
    with pytest.raises(MailQueueKeyMismatch, match="got a key that does not open them"):
        await MailQueue.open(data_dir)
    assert rows(data_dir) == before and stored_check(data_dir) is None  # no check from a key that is not theirs


async def test_a_token_the_key_does_not_open_is_kept_pending_not_erased(data_dir: Path) -> None:
    queue = await MailQueue.open(data_dir, clock=lambda: 1000.0)
    good = await queue.enqueue(pickup(0))
    odd = await queue.enqueue(pickup(1))
    foreign = Fernet(Fernet.generate_key()).encrypt(b"{}")  # e.g. enqueued by a process that held another key
    with sqlite3.connect(data_dir / QUEUE_FILE) as db:
        db.execute("UPDATE mails SET payload = ? WHERE id = ?", (foreign, odd))

    assert [p.id for p in await queue.due(1000.0)] == [good]
    status = await queue.status(odd)
    assert status is not None and status.state is MailState.PENDING and status.attempts == 0
    assert status.next_attempt_at == 1000.0 + 3600
    assert status.last_error == (
        f"cannot be decrypted with secret:{KEY}, got a token sealed under another key; kept until that key is back"
    )
    row = await queue.raw_row(odd)
    assert row is not None and row["payload"] == foreign
    await queue.close()


def _enqueue_at_start(directory: str, together: Barrier) -> None:
    async def main() -> None:
        queue = await MailQueue.open(Path(directory))
        await queue.enqueue(pickup())
        await queue.close()

    together.wait()
    asyncio.run(main())


async def test_four_processes_opening_a_new_queue_together_seal_with_one_key(data_dir: Path) -> None:
    # each making a key of its own, all but one would seal their mails under a key the secret store lost
    ctx = multiprocessing.get_context("spawn")
    together = ctx.Barrier(4)
    procs = [ctx.Process(target=_enqueue_at_start, args=(str(data_dir), together)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        await asyncio.to_thread(proc.join, 120)
        assert proc.exitcode == 0
    queue = await MailQueue.open(data_dir)
    assert [p.mail for p in await queue.due(1e12)] == [pickup()] * 4  # every one opens
    await queue.close()


class _OtherProcessOpensMeanwhile(SecretStore):
    """A store whose first look at its names lets another process open the queue and seal a mail meanwhile:
    the moment a process reading the store before the mails could see the mail without its key."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self._data_dir = data_dir
        self._done = False

    def names(self) -> list[str]:
        seen = super().names()
        if not self._done:
            self._done = True
            ctx = multiprocessing.get_context("spawn")
            alone = ctx.Barrier(1)  # held here until the child has it
            other = ctx.Process(target=_enqueue_at_start, args=(str(self._data_dir), alone))
            other.start()
            other.join(120)
            assert other.exitcode == 0
        return seen


def test_a_queue_opened_while_another_process_seals_its_first_mail_takes_that_key(data_dir: Path) -> None:
    db = sqlite3.connect(data_dir / QUEUE_FILE, isolation_level=None)
    try:
        migrate(db, data_dir / QUEUE_FILE, MIGRATIONS, store="mail queue")
        key = _key(_OtherProcessOpensMeanwhile(data_dir), db, data_dir / QUEUE_FILE)  # not MailQueueKeyMissing
    finally:
        db.close()
    assert key == SecretStore(data_dir).get("mail.queue_key")
    assert stored_check(data_dir) == key_check(key)

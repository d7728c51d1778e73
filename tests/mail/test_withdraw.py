"""`MailQueue.withdraw`: a pending mail taken back is failed with its token erased and never sent; one the sender
holds is said to be on its way; one sent or failed is said so; the sender's later marks never revive it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.mail import Mail, MailQueue, MailSender, MailState
from gateway.mail.queue import Withdrawal
from tests.mail.conftest import Clock, mail_config
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial


def code_mail(n: int = 1) -> Mail:
    return Mail(
        to=(f"patron{n}@example.jp",),
        subject="受け取りコード",
        text=f"暗証番号 {n:06d}",
        purpose="locker.pickup",
        reference=f"lockers:{n}",
    )


async def test_a_pending_mail_withdrawn_is_failed_erased_and_never_sent(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue = await MailQueue.open(data_dir, clock=clock)
    try:
        gone, kept = await queue.enqueue(code_mail(1)), await queue.enqueue(code_mail(2))
        assert await queue.withdraw(gone, "locker assignment lockers:1 cancelled") is Withdrawal.WITHDRAWN
        row = await queue.raw_row(gone)
        assert row is not None
        assert (row["state"], row["payload"], row["last_error"], row["done_at"]) == (
            "failed",
            None,
            "withdrawn: locker assignment lockers:1 cancelled",
            clock.now,
        )
        assert [p.id for p in await queue.due(now=1e12)] == [kept]
        sender = MailSender(mail_config(smtp.port, tls_material), queue, data_dir, clock=clock)
        assert await sender.run_once() == 1
        assert [m.rcpt_to for m in smtp.received] == [["patron2@example.jp"]]
        # said again: it was taken back before, nothing went out; a sent one and an unknown id as they are
        assert await queue.withdraw(gone, "again") is Withdrawal.FAILED
        assert await queue.withdraw(kept, "too late") is Withdrawal.SENT
        assert (await queue.status(kept)).state is MailState.SENT  # type: ignore[union-attr]
        assert await queue.withdraw(999, "none") is Withdrawal.UNKNOWN
        assert await queue.by_reference("locker.pickup", "lockers:1") == [await queue.status(gone)]
        assert await queue.by_reference("alarm", "lockers:1") == []
    finally:
        await queue.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A server that takes the connection and never greets: the sender's session hangs at its start."""
    conns: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], conns
    finally:
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_mail_being_sent_is_said_to_be_on_its_way_and_a_failed_session_does_not_revive_it(
    data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue = await MailQueue.open(data_dir, clock=clock)
    try:
        mail_id = await queue.enqueue(code_mail(1))
        async with silent_server() as (port, conns):
            sender = MailSender(mail_config(port, tls_material, timeout_s=1), queue, data_dir, clock=clock)
            passing = asyncio.create_task(sender.run_once())
            async with asyncio.timeout(5):
                while not conns:  # connected: the sender has read the mail and holds its text
                    await asyncio.sleep(0.005)
            assert await queue.withdraw(mail_id, "cancelled") is Withdrawal.SENDING
            await passing  # no greeting: the session fails, and every mail it held would wait
        assert sender.session_failures == 1
        row = await queue.raw_row(mail_id)
        assert row is not None
        assert (row["state"], row["payload"], row["last_error"]) == ("failed", None, "withdrawn: cancelled")
        assert await queue.due(now=1e12) == []
    finally:
        await queue.close()


async def test_a_withdrawn_mail_is_not_sealed_again_by_a_late_narrow(data_dir: Path, clock: Clock) -> None:
    """The sender's partial acceptance (some recipients 4xx) of a mail withdrawn meanwhile: its token stays erased."""
    queue = await MailQueue.open(data_dir, clock=clock)
    try:
        mail_id = await queue.enqueue(code_mail(1))
        (pending,) = await queue.due(now=1e12)
        assert await queue.withdraw(mail_id, "cancelled") is Withdrawal.SENDING
        await queue.narrow(pending, pending.mail.to, "450 try later", clock.now + 60)
        await queue.defer(mail_id, "421 later", clock.now + 60)
        await queue.mark_failed(mail_id, "550 no")
        row = await queue.raw_row(mail_id)
        assert row is not None
        assert (row["state"], row["payload"], row["last_error"]) == ("failed", None, "withdrawn: cancelled")
        # the server took it after all: that is the truth the row keeps
        await queue.mark_sent(mail_id)
        assert (await queue.status(mail_id)).state is MailState.SENT  # type: ignore[union-attr]
    finally:
        await queue.close()

"""Mail queue figures: enqueue latency (durable: synchronous=FULL) and delivery rate to a loopback SMTP server.

Run from the repository root: `.venv/bin/python -m bench.mail_queue [DIR]` (DIR: a directory on the disk to measure; default the temp dir, often tmpfs). The machine is shared and noisy:
each figure is the median of several rounds; compare runs alternately, not once each.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway.mail import Mail, MailConfig, MailQueue, MailSecurity, MailSender
from tests.mail.smtp_server import SmtpServer

ROUNDS = 5
MAILS = 200


async def round_once(directory: Path) -> tuple[list[float], float]:
    queue = await MailQueue.open(directory)
    latencies = []
    for i in range(MAILS):
        t0 = time.perf_counter()
        await queue.enqueue(
            Mail(
                to=(f"patron{i}@example.jp",), subject="予約資料のご案内", text="コード 123456\n" * 20, purpose="bench"
            )
        )
        latencies.append(time.perf_counter() - t0)
    relay = await SmtpServer().start()
    config = MailConfig(
        host="127.0.0.1", port=relay.port, security=MailSecurity.PLAIN_LOOPBACK, from_address="gw@example.jp"
    )
    sender = MailSender(config, queue, directory)
    t0 = time.perf_counter()
    while await sender.run_once():
        pass
    elapsed = time.perf_counter() - t0
    assert len(relay.received) == MAILS
    await relay.stop()
    await queue.close()
    return latencies, MAILS / elapsed


async def main() -> None:
    p50s, p99s, rates = [], [], []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as d:
            latencies, rate = await round_once(Path(d))
        latencies.sort()
        p50s.append(latencies[len(latencies) // 2] * 1000)
        p99s.append(latencies[int(len(latencies) * 0.99)] * 1000)
        rates.append(rate)
    print(
        f"enqueue (durable) over {ROUNDS} rounds of {MAILS}: median p50 {statistics.median(p50s):.2f} ms, "
        f"median p99 {statistics.median(p99s):.2f} ms"
    )
    print(f"delivery to a loopback relay (one session per batch of 20): median {statistics.median(rates):.0f} mails/s")


asyncio.run(main())

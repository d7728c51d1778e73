"""`edgegw mail test --to ADDRESS`: send one test mail now with the `[mail]` settings, and say what happened.

It goes around the queue on purpose: a technician commissioning the box wants the SMTP server's
answer on the spot (TLS, authentication, a refused sender), not a row that waits for a retry.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any, TextIO

from gateway import redact
from gateway.cliopts import add_config_option, config_path, print_config_error
from gateway.errors import ConfigError
from gateway.mail.message import Mail, MailError
from gateway.mail.sender import DeliveryError, SessionError, send_now

__all__ = ["add_parser", "run", "status_line"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2

SUBJECT = "edgegw テストメール / test mail ({gateway})"
TEXT = """このメールは edgegw ゲートウェイ {gateway} の送信テストです。返信は不要です。
This is a test mail from the edgegw gateway {gateway}; no reply is needed.

host: {host}
time: {time}
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `mail test` to the `edgegw` argument parser; returns the `mail` parser."""
    p = subparsers.add_parser("mail", help="the outgoing mail: send a test mail")
    sub = p.add_subparsers(dest="mail_command", required=True, metavar="{test}")
    t = sub.add_parser("test", help="send one test mail now with the [mail] settings and print the server's answer")
    t.add_argument("--to", required=True, help="recipient address")
    add_config_option(t)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    from gateway.config import load_config

    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        print_config_error(exc, err, what="mail test")
        return EXIT_INVALID
    if config.mail is None:
        err.write("mail test: no [mail] section in the configuration; add one (see gateway/mail/README.md)\n")
        return EXIT_INVALID
    gateway_id = config.gateway.id
    now = time.time()
    try:
        mail = Mail(
            to=(args.to,),
            subject=SUBJECT.format(gateway=gateway_id),
            text=TEXT.format(gateway=gateway_id, host=socket.gethostname(), time=time.strftime("%Y-%m-%d %H:%M:%S %Z")),
            purpose="test",
            reference="edgegw mail test",
        )
    except MailError as exc:
        err.write(f"mail test: --to {exc}\n")
        return EXIT_INVALID
    shown = redact.text(args.to)
    cfg = config.mail
    try:
        asyncio.run(send_now(cfg, config.gateway.data_dir, mail, now=now))
    except ConfigError as exc:  # the password's secret, or an unreadable CA file
        err.write(f"mail test: {'; '.join(exc.errors)}\n")
        return EXIT_INVALID
    except SessionError as exc:
        err.write(f"mail test: {cfg.host}:{cfg.effective_port} ({cfg.security.value}): {exc}\n")
        return EXIT_FAILURE
    except DeliveryError as exc:
        kind = "refused permanently" if exc.permanent else "refused for now (try again later)"
        err.write(f"mail test: the server {kind} the mail to {shown}, got {exc}\n")
        return EXIT_FAILURE
    out.write(f"test mail to {shown} accepted by {cfg.host}:{cfg.effective_port} ({cfg.security.value})\n")
    return EXIT_OK


def status_line(d: dict[str, Any]) -> str:
    """`edgegw status`'s mail line, from the sender's diagnostics in the status document."""
    queue = d.get("queue", {})
    state = "ok" if d.get("connected", True) else "unreachable"
    line = (
        f"mail: {d.get('server', '?')} {state:<11} pending {queue.get('pending', 0)}  sent {d.get('sent', 0)}  "
        f"deferred {d.get('deferred', 0)}  failed {queue.get('failed', 0)}"
    )
    oldest = queue.get("oldest_pending_at")
    if oldest is not None:
        line += f"  oldest pending {max(0.0, time.time() - oldest):.0f} s"
    if d.get("last_error"):
        line += f"\n  last error: {d['last_error']}"
    return line

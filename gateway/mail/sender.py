"""The sender: delivers the queue's due mails over SMTP with aiosmtplib, with backoff.

Theory of operation. `run_once()` reads the due mails, opens one SMTP session (SMTPS, or STARTTLS
which is then required: a server that does not offer it is refused and nothing is sent in clear;
no TLS only with `plain-loopback` to a relay on this box) and sends them one by one. What a reply
means depends on what it answers: MAIL FROM carries nothing of one mail but its size, so a refusal
there is about the sender, the account or the session, and never fails a mail. Per mail:

    250 to the data                      -> sent (recipients and text erased)
    5xx to RCPT TO (every recipient) / DATA, 552 to MAIL FROM (SIZE)
                                         -> failed, with the server's reply (addresses masked)
    4xx to RCPT TO / DATA                -> pending, next attempt after an exponential backoff
    not accepted within max_age_s        -> failed
    content this version refuses, or no message can be built from it
                                         -> failed alone, before any session (`unsendable`)

A refusal at RCPT TO of some recipients only is not an error to aiosmtplib (it raises only when
every recipient is refused, above); `send_message` returns them, and the data goes to the others:

    250 to the data, some RCPT 4xx       -> pending for those only (`MailQueue.narrow`): the retry
                                            reaches them and no one who got it gets it twice
    250 to the data, some RCPT 5xx       -> those counted (`refused_recipients`) and logged masked,
                                            kept in the mail's `last_error` once it is done

The session itself failing (connection refused, timeout, TLS, STARTTLS missing, authentication
refused, any refusal at MAIL FROM but 552, a 530/534/535/538 demand for authentication at RCPT TO or
DATA, a `from_name`/`from_address` that cannot go in a header) leaves every due mail pending and
delays the next session by the sender's own backoff; it is logged once when it starts, naming the
`[mail]` setting to check, and once when the server is reachable again (StateLog).
`run()` loops `run_once()`, woken early by `MailQueue.enqueue`. Time comes from `clock`; tests call
`run_once()` themselves and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from gateway import redact
from gateway.backoff import Backoff
from gateway.cancellation import event_set_within
from gateway.errors import ConfigError
from gateway.logs import StateLog
from gateway.mail.config import MailConfig, MailSecurity
from gateway.mail.message import Mail, MailError, build_message, check_line
from gateway.mail.queue import MailQueue, Pending, Unsendable
from gateway.secrets import resolve
from gateway.tls import client_context

__all__ = ["DeliveryError", "MailSender", "Refusal", "SessionError", "probe", "send_now"]

log = logging.getLogger("gateway.mail")
BATCH = 20
# a server's demand for authentication (RFC 4954): about the session wherever it comes
_AUTH_CODES = frozenset({530, 534, 535, 538})
# refusals about the session, not one mail, at any command: authentication, and 421 (the server is closing the
# session, RFC 5321 3.8): every due mail waits for the session backoff, none is charged an attempt
_SESSION_CODES = _AUTH_CODES | {421}


class SessionError(Exception):
    """The SMTP session could not be made or broke: no mail's fault, every due mail waits."""


@dataclass(frozen=True, slots=True)
class DeliveryError(Exception):
    """The server refused one mail. `permanent`: a 5xx reply; otherwise 4xx, worth retrying."""

    code: int
    reply: str

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.reply}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One recipient the server refused at RCPT TO while it took the mail for others.

    `address` is personal data: in memory only, `str()` shows `***@domain`.
    """

    address: str
    code: int
    reply: str  # addresses masked

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"***@{self.address.rpartition('@')[2].lower()}: {self.code} {self.reply}"


class _Session:
    """One SMTP session: connected, secured and authenticated, or SessionError."""

    def __init__(self, config: MailConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> _Session:
        cfg = self.config
        _check_identity(cfg)
        context: ssl.SSLContext | None = None
        try:
            if cfg.security is not MailSecurity.PLAIN_LOOPBACK:
                context = client_context(cfg.tls, "mail")
            password = resolve(cfg.password, self.data_dir) if cfg.password is not None else None
        except ConfigError as exc:  # a CA file or the password's secret: fixed on the box, then retried
            raise SessionError("; ".join(exc.errors)) from None
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.effective_port,
            timeout=cfg.timeout_s,
            use_tls=cfg.security is MailSecurity.SMTPS,
            # True = required: aiosmtplib raises when the server does not offer STARTTLS
            start_tls=cfg.security is MailSecurity.STARTTLS,
            tls_context=context,
            username=cfg.username,
            password=password,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            await _close(client)
            raise SessionError(f"cannot connect to {cfg.host}:{cfg.effective_port}, got {_cause(exc)}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _close(client)
            raise SessionError(f"authentication refused by the server, got {exc.code} {_text(exc.message)}") from None
        except aiosmtplib.SMTPResponseException as exc:
            await _close(client)
            raise SessionError(f"the server refused the session, got {exc.code} {_text(exc.message)}") from None
        except aiosmtplib.SMTPException as exc:
            await _close(client)
            text = _text(str(exc))
            if "STARTTLS" in text.upper():
                text = f"the server does not offer STARTTLS, nothing sent in clear ({text})"
            raise SessionError(text) from None
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            await _close(client)
            raise SessionError(f"cannot connect to {cfg.host}:{cfg.effective_port}, got {_text(str(exc))}") from None
        self.client = client
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await _close(self.client)

    async def send(self, mail: Mail, message: EmailMessage) -> list[Refusal]:
        """Send one mail; returns the recipients refused while others took it. DeliveryError when the
        server refuses it (every recipient, or DATA, or its size), SessionError when the session breaks
        or the server refuses what is not this mail's: the sender at MAIL FROM, for want of AUTH, or a 421
        at any command."""
        assert self.client is not None
        cfg = self.config
        try:
            refused, _ = await self.client.send_message(message, sender=cfg.from_address, recipients=list(mail.to))
        except aiosmtplib.SMTPSenderRefused as exc:
            if exc.code == 552:  # MAIL FROM carries SIZE=: this mail is too big, the others may go
                raise DeliveryError(exc.code, _text(exc.message)) from None
            raise _refused(cfg, "the sender at MAIL FROM", exc.code, exc.message) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if _SESSION_CODES.intersection(codes):
                session = next(r for r in exc.recipients if r.code in _SESSION_CODES)
                raise _refused(cfg, "the recipients at RCPT TO", session.code, session.message) from None
            # every recipient refused: permanent only if every refusal was
            code = max(codes) if all(500 <= c < 600 for c in codes) else min(codes)
            raise DeliveryError(code, "; ".join(_text(r.message) for r in exc.recipients)) from None
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise SessionError(f"the server closed the session, got {_text(str(exc))}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code in _SESSION_CODES:
                raise _refused(cfg, "the data at DATA", exc.code, exc.message) from None
            if exc.code >= 400:
                raise DeliveryError(exc.code, _text(exc.message)) from None
            raise SessionError(f"unexpected reply, got {exc.code} {_text(exc.message)}") from None
        except aiosmtplib.SMTPException as exc:
            raise SessionError(_text(str(exc))) from None
        except (OSError, TimeoutError) as exc:
            raise SessionError(f"the session broke, got {_text(str(exc)) or type(exc).__name__}") from None
        return [Refusal(address, r.code, _text(r.message)) for address, r in refused.items()]


def _refused(cfg: MailConfig, what: str, code: int, message: str) -> SessionError:
    """A refusal that is the sender's, the account's or the session's, not one mail's: every mail waits."""
    reply = _text(message)
    if code in _AUTH_CODES or "auth" in reply.lower():
        fix = (
            "set [mail] username and password, the server wants authentication"
            if cfg.username is None
            else "check [mail] username and password"
        )
    elif code == 421:
        fix = "the server is closing the session, tried again later"
    elif code >= 500:
        fix = "check [mail] from_address: the server or the account may not send as it"
    else:
        fix = "check [mail] from_address if it persists"
    return SessionError(f"the server refused {what}, got {code} {reply}; {fix}")


def _check_identity(cfg: MailConfig) -> None:
    """SessionError when `from_name` or `from_address` cannot go in a header: the configuration's fault,
    not a mail's, so every mail waits for it to be corrected (the `[mail]` section lets such values by)."""
    try:
        check_line(cfg.from_name, "[mail] from_name")
        check_line(cfg.from_address, "[mail] from_address")
    except MailError as exc:
        raise SessionError(f"{exc}; correct it in the configuration") from None


def _message_for(cfg: MailConfig, mail: Mail, now: float) -> EmailMessage:
    """The MIME message of `mail`; MailError when none can be built from it (that mail's fault alone)."""
    try:
        return build_message(
            mail, from_address=cfg.from_address, from_name=cfg.from_name, now=datetime.fromtimestamp(now, UTC)
        )
    except Exception as exc:  # pure code: whatever it raises comes from this mail's content
        raise MailError(f"cannot be built into a message, got {type(exc).__name__}: {_text(str(exc))}") from None


def _cause(exc: BaseException) -> str:
    # aiosmtplib wraps the OSError; its text is the useful part ("Connection refused")
    inner = exc.__cause__ or exc.__context__
    return _text(str(inner) if inner is not None and str(inner) else str(exc) or type(exc).__name__)


def _text(s: str) -> str:
    # a server's reply often quotes the address it refuses
    return redact.text(" ".join(s.split()))


async def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        if client.is_connected:
            async with asyncio.timeout(2.0):
                await client.quit()
    with contextlib.suppress(Exception):
        client.close()


async def send_now(config: MailConfig, data_dir: Path | str, mail: Mail, *, now: float | None = None) -> list[Refusal]:
    """Send `mail` at once, outside the queue (`edgegw mail test`); raises SessionError or DeliveryError.

    Returns the recipients the server refused while it took the mail for the others (with one recipient: []).
    """
    async with _Session(config, Path(data_dir)) as session:
        return await session.send(mail, _message_for(config, mail, time.time() if now is None else now))


async def probe(config: MailConfig, data_dir: Path | str) -> None:
    """Connect, secure and authenticate, then QUIT without sending (a commissioning check that the
    alarms' mail can go out); raises SessionError or ConfigError (an unresolvable password or CA file)."""
    async with _Session(config, Path(data_dir)):
        pass


class MailSender:
    """Delivers what `queue` holds; `start()`/`stop()` by the gateway, `run_once()` by tests."""

    def __init__(
        self,
        config: MailConfig,
        queue: MailQueue,
        data_dir: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.rng = rng or random.Random()
        self.session_backoff = Backoff(initial=config.retry_initial_s, cap=config.retry_cap_s, rng=self.rng)
        self.next_session_at = 0.0  # no session before this (the server was unreachable)
        self.sent = 0
        self.deferred = 0  # 4xx replies
        self.failed = 0  # 5xx replies and mails too old
        self.refused_recipients = 0  # 5xx to RCPT for some recipients of a mail the others got
        self.unsendable = 0  # failed for their content, before any session (also in `failed`)
        self.session_failures = 0
        self.last_error: str | None = None
        self.last_sent_at: float | None = None
        self._counts: dict[str, Any] = {}
        self._state = StateLog(log)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        queue.diagnostics_source = self.diagnostics

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        if cfg.security is not MailSecurity.PLAIN_LOOPBACK and not cfg.tls.checks_peer:
            # gateway/tls.py's promise for verify = "off": said at every start (the SMTP password is at stake)
            log.warning(
                "TLS certificate checks are off for smtp://%s:%d; use tls.ca_file instead", cfg.host, cfg.effective_port
            )
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="mail-sender")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Let a mail being sent finish (up to `timeout_s`), then stop; what is pending stays queued."""
        self._stopping = True
        self.queue.wakeup.set()
        if self._task is not None:
            _, pending = await asyncio.wait([self._task], timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        while not self._stopping:
            self.queue.wakeup.clear()
            try:
                await self.run_once()
                wait = await self._wait_s()
            except Exception as exc:  # the queue's disk: keep the loop, say it once
                self._state.fail(("queue", type(exc)), logging.ERROR, "mail queue unusable: %s", _text(str(exc)))
                wait = self.config.retry_initial_s
            if self._stopping:
                break
            await event_set_within(self.queue.wakeup, wait)

    async def _wait_s(self) -> float:
        now = self.clock()
        due = await self.queue.next_due_at()
        target = max(due, self.next_session_at) if due is not None else now + 3600.0
        return min(3600.0, max(0.0, target - now))

    # --- one pass --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Send what is due now; returns how many mails were sent, failed or deferred."""
        now = self.clock()
        if now < self.next_session_at:
            return 0
        batch = await self.queue.due_batch(now, BATCH)
        for bad in batch.unsendable:
            await self._unsendable(bad, bad.error)
        handled = len(batch.unsendable)
        todo: list[Pending] = []
        for item in batch.pending:
            if now - item.created_at > self.config.max_age_s:
                await self._fail(item, f"not accepted within max_age_s ({self.config.max_age_s:g} s)")
                handled += 1
            else:
                todo.append(item)
        ready: list[tuple[Pending, EmailMessage]] = []
        try:
            if todo:
                _check_identity(self.config)  # before a message is built with it
            for item in todo:
                try:
                    ready.append((item, _message_for(self.config, item.mail, now)))
                except MailError as exc:
                    handled += 1
                    await self._unsendable(item, str(exc))
        except SessionError as exc:
            await self._all_wait(str(exc), todo)
            return handled
        if ready:
            handled += await self._deliver(ready)
        self._counts = await self.queue.counts()
        return handled

    async def _deliver(self, ready: list[tuple[Pending, EmailMessage]]) -> int:
        """One session for `ready`; returns how many were sent, failed or deferred."""
        handled = 0
        left = [item for item, _ in ready]  # not handled yet: what a broken session leaves waiting
        try:
            async with _Session(self.config, self.data_dir) as session:
                for item, message in ready:
                    if self._stopping:
                        break
                    try:
                        refused = await session.send(item.mail, message)
                    except DeliveryError as exc:
                        handled += 1
                        left.remove(item)
                        if exc.permanent:
                            await self._fail(item, str(exc))
                        else:
                            await self._defer(item, str(exc))
                        raise _Reconnect from None  # a fresh session for the rest: no half state
                    else:
                        handled += 1
                        left.remove(item)
                        await self._accepted(item, refused)
        except _Reconnect:
            pass
        except SessionError as exc:
            await self._all_wait(str(exc), left)
            return handled
        self.session_backoff.reset()
        self._state.ok("mail server %s reachable again", self.config.host)
        return handled

    async def _all_wait(self, error: str, left: list[Pending]) -> None:
        """The session failed, or the server refused what is not one mail's: every due mail waits."""
        self.session_failures += 1
        self.last_error = error
        delay = self.session_backoff.next()
        self.next_session_at = self.clock() + delay
        self._state.fail(
            ("session", error.split(",")[0]),
            logging.WARNING,
            "mail server %s:%d unusable, %d mail(s) wait (retry in %.0f s): %s",
            self.config.host,
            self.config.effective_port,
            len(left),
            delay,
            error,
        )
        for item in left:
            await self.queue.defer(item.id, error, self.next_session_at, attempted=False)
        self._counts = await self.queue.counts()

    async def _accepted(self, item: Pending, refused: list[Refusal]) -> None:
        """The server took the data: sent, or pending for the recipients it refused for now."""
        lost = [r for r in refused if r.permanent]
        later = [r for r in refused if not r.permanent]
        for r in lost:
            self.refused_recipients += 1
            self.last_error = str(r)
            log.warning(
                "mail %d (%s, %s): a recipient refused permanently, the others got it: %s",
                item.id,
                item.mail.purpose,
                _text(item.mail.reference),
                r,
            )
        done = replace(
            item,
            delivered=item.delivered + len(item.mail.to) - len(refused),
            refused=item.refused + tuple(str(r) for r in lost),
        )
        if later:
            error = "; ".join(str(r) for r in later)
            delay = self._retry_delay(item)
            await self.queue.narrow(done, tuple(r.address for r in later), error, self.clock() + delay)
            self.deferred += 1
            self.last_error = error
            log.info(
                "mail %d accepted for %d recipient(s), deferred %.0f s for %d by the server: %s",
                item.id,
                len(item.mail.to) - len(refused),
                delay,
                len(later),
                error,
            )
            return
        note = "refused permanently: " + "; ".join(done.refused) if done.refused else None
        await self.queue.mark_sent(item.id, note)
        self.sent += 1
        self.last_sent_at = self.clock()
        log.info("mail %d sent (%s)", item.id, item.mail.purpose)

    async def _fail(self, item: Pending | Unsendable, error: str) -> None:
        error += _outcome(item)
        await self.queue.mark_failed(item.id, error)
        self.failed += 1
        self.last_error = error
        log.warning("mail %d failed permanently (%s, %s): %s", item.id, item.purpose, _text(item.reference), error)

    async def _unsendable(self, item: Pending | Unsendable, error: str) -> None:
        """No message can be made of it (an earlier version queued what this one refuses): failed alone,
        never in front of the mails behind it."""
        self.unsendable += 1
        await self._fail(item, f"cannot be sent as it was queued: {error}")

    def _retry_delay(self, item: Pending) -> float:
        ceiling = min(self.config.retry_cap_s, self.config.retry_initial_s * 2 ** min(item.attempts, 20))
        return self.rng.uniform(ceiling / 2, ceiling)

    async def _defer(self, item: Pending, error: str) -> None:
        delay = self._retry_delay(item)
        await self.queue.defer(item.id, error, self.clock() + delay)
        self.deferred += 1
        self.last_error = error
        log.info("mail %d deferred %.0f s by the server: %s", item.id, delay, error)

    # --- diagnostics -------------------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        """Counters and the queue's counts from the last pass; no address, subject or text."""
        counts = self._counts
        return {
            "server": f"{self.config.host}:{self.config.effective_port}",
            "security": self.config.security.value,
            "connected": not self._state.failing,
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "refused_recipients": self.refused_recipients,
            "unsendable": self.unsendable,
            "session_failures": self.session_failures,
            "last_error": self.last_error,
            "last_sent_at": self.last_sent_at,
            "next_session_at": self.next_session_at or None,
            "queue": {
                "pending": counts.get("pending", 0),
                "sent": counts.get("sent", 0),
                "failed": counts.get("failed", 0),
                "oldest_pending_at": counts.get("oldest_pending_at"),
            },
            "summary": f"mail pending {counts.get('pending', 0)}, failed {counts.get('failed', 0)}",
        }


def _outcome(item: Pending | Unsendable) -> str:
    """What became of a narrowed mail's other recipients, for its failure ("" for a mail never narrowed)."""
    text = f"; {item.delivered} other recipient(s) got it" if item.delivered else ""
    if item.refused:
        text += "; refused permanently: " + "; ".join(item.refused)
    return text


class _Reconnect(Exception):
    """A mail was refused: end this session, the rest waits for the next pass (soon)."""

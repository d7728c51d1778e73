"""The mail tests' SMTP server: aiosmtpd on loopback, set up as a submission server, with handles to watch and steer it.

aiosmtpd's `Controller` runs the server in a thread and event loop of its own, so the gateway's
client and the server share nothing but the socket. It is configured the way a submission server
on port 587 is: STARTTLS offered and required before anything but EHLO/NOOP/QUIT
(`require_starttls`), AUTH PLAIN/LOGIN only over TLS and required before MAIL (`auth_required`);
or SMTPS (TLS from the first byte, port 465), where AUTH is offered at once and still required.
What it refuses, it refuses with aiosmtpd's own replies: 530 before STARTTLS or AUTH, 538 AUTH in
clear, 535 wrong credentials, 503 out of sequence (MAIL before EHLO, RCPT before MAIL), 500 unknown.
Without `credentials` no AUTH is offered (a loopback relay); without `tls_context` no STARTTLS.

What the tests add, through aiosmtpd's extension points (`smtp_<VERB>` methods of an `SMTP`
subclass, `handle_DATA` of the handler):

- `commands`: the verbs sent, in order, also those aiosmtpd refuses before its handlers (never their
  arguments: they hold addresses and passwords);
- `replies`: a one-shot reply for the next use of a verb (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT), as a greylisting or refusing server
  answers (`replies["RCPT"].append("450 4.2.1 try later")`; "" answers normally; "DROP" closes the
  connection, the server going away mid-session; "DATA-END" replaces the reply after the message);
- `received`: each accepted mail with its envelope, raw bytes, whether TLS was on and who
  authenticated; `sessions`: connections made.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.ports import free_port

__all__ = ["Received", "SmtpServer"]

HOSTNAME = "test.invalid"
# aiosmtpd logs every command line with its arguments (recipients) and a deprecation notice of its own at
# each AUTH: the tests check what the gateway logs, so the server says only what went wrong inside it
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls: bool
    user: str | None


def _tls_on(server: SMTP) -> bool:
    return server.transport is not None and server.transport.get_extra_info("ssl_object") is not None


class _Session(SMTP):
    """aiosmtpd's SMTP session, recording the verbs and answering with the injected replies first.

    Verbs are read off the bytes as they arrive (`data_received`, in clear or after TLS), before
    aiosmtpd's own checks, so a MAIL it refuses before STARTTLS is seen too; the message and AUTH's
    challenge-response lines are not verbs and are skipped.
    """

    def __init__(self, owner: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.owner = owner
        self._partial = b""
        self._payload = False  # inside DATA's message or AUTH's exchange

    def data_received(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\r\n")
        self._partial = lines.pop()
        for line in lines:
            if not self._payload and line:
                self.owner.commands.append(line.split(b" ", 1)[0].decode("ascii", "replace").upper())
        super().data_received(data)

    async def _injected(self, verb: str) -> bool:
        """True when the test's reply was given (or the connection dropped) in place of aiosmtpd's."""
        queued = self.owner.replies.get(verb)
        answer = queued.pop(0) if queued else ""
        if answer == "DROP":
            if self.transport is not None:
                self.transport.close()
            return True
        if answer:
            await self.push(answer)
            return True
        return False

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._injected("EHLO"):
            await super().smtp_EHLO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if not await self._injected("STARTTLS"):
            await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if await self._injected("AUTH"):
            return
        self._payload = True
        try:
            await super().smtp_AUTH(arg)
        finally:
            self._payload = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._injected("MAIL"):
            return
        # SMTPS: aiosmtpd's auth_required presumes STARTTLS; over implicit TLS the server checks it here
        if self.owner.smtps and self.owner.credentials is not None and self.session and not self.session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._injected("RCPT"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if await self._injected("DATA"):
            return
        self._payload = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._payload = False

    async def smtp_QUIT(self, arg: str) -> None:
        if not await self._injected("QUIT"):
            await super().smtp_QUIT(arg)


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        queued = self.owner.replies.get("DATA-END")
        if queued:
            return queued.pop(0)
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content
        assert envelope.mail_from is not None and isinstance(content, bytes)
        self.owner.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_to=list(envelope.rcpt_tos),
                data=content,
                tls=_tls_on(server),
                user=login.decode() if isinstance(login, bytes) else None,
            )
        )
        return "250 2.0.0 queued"


class _Controller(Controller):
    """aiosmtpd's threaded controller, making `_Session`s."""

    def __init__(self, owner: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.owner = owner
        self.session_kwargs = dict(self.SMTP_kwargs)

    def factory(self) -> SMTP:
        self.owner.sessions += 1
        assert isinstance(self.handler, _Handler)
        return _Session(self.owner, self.handler, **self.session_kwargs)


@dataclass
class SmtpServer:
    host: str = "127.0.0.1"
    port: int = 0
    tls_context: ssl.SSLContext | None = None  # offered through STARTTLS (or from the first byte: smtps)
    smtps: bool = False
    credentials: dict[str, str] | None = None  # user -> password; AUTH required when set
    replies: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    sessions: int = 0
    _controller: _Controller | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self.credentials is not None
            and isinstance(auth_data, LoginPassword)
            and self.credentials.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, auth_data=auth_data if ok else None, handled=False)

    async def start(self) -> SmtpServer:
        # aiosmtpd's readiness check connects to the configured port, so it cannot be 0: take a free one
        self.port = self.port or free_port()
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "server_hostname": HOSTNAME}
        if self.smtps:
            assert self.tls_context is not None, "smtps needs a tls_context"
            kwargs["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        if self.credentials is None:
            kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]  # a relay: no AUTH offered
        else:
            # over STARTTLS aiosmtpd enforces AUTH itself; over SMTPS `_Session.smtp_MAIL` does (its check
            # for TLS before AUTH only knows STARTTLS)
            kwargs.update(
                authenticator=self._authenticate, auth_required=not self.smtps, auth_require_tls=not self.smtps
            )
        controller = _Controller(self, _Handler(self), **kwargs)
        await asyncio.to_thread(controller.start)
        self.sessions = 0  # the controller's own readiness check is not a client
        self._controller = controller
        return self

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

"""A minimal, strict SMTP server on loopback for the mail tests (aiosmtpd is not installed here).

It speaks RFC 5321 as far as a submission client needs, and refuses what a real server refuses:
commands out of sequence (503), unknown commands (500), MAIL before EHLO, AUTH before TLS, a
second EHLO missing after STARTTLS (the session is reset by RFC 3207), lines without CRLF, bad
AUTH PLAIN credentials (535). `replies` injects a reply for the next use of a command (one-shot,
e.g. `replies["RCPT"].append("450 4.2.1 try later")`; "" answers normally, "DROP" closes the
connection), the way a greylisting or refusing server
answers. Received mails keep their envelope, raw bytes, whether TLS was on and who authenticated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls: bool
    user: str | None


@dataclass
class SmtpServer:
    host: str = "127.0.0.1"
    port: int = 0
    tls_context: ssl.SSLContext | None = None  # offered through STARTTLS (or from the first byte: smtps)
    smtps: bool = False
    credentials: dict[str, str] | None = None  # user -> password; AUTH required when set
    replies: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # verbs seen, in order (never the arguments)
    sessions: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> SmtpServer:
        ctx = self.tls_context if self.smtps else None
        self._server = await asyncio.start_server(self._session, self.host, self.port, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        tls = self.smtps
        ehlo = False
        user: str | None = None
        mail_from: str | None = None
        rcpt: list[str] = []

        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            await reply("220 test.invalid ESMTP ready")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                if not raw.endswith(b"\r\n"):
                    await reply("500 5.5.2 line must end with CRLF")
                    continue
                line = raw[:-2].decode("ascii", "strict")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                self.commands.append(verb)
                injected = self.replies.get(verb)
                answer = injected.pop(0) if injected else ""
                if answer == "DROP":  # the server goes away mid-session
                    return
                if answer:
                    await reply(answer)
                    if verb == "MAIL":
                        mail_from = None
                    continue
                if verb in ("EHLO", "HELO"):
                    if not arg:
                        await reply("501 5.5.4 EHLO needs a domain")
                        continue
                    ehlo, mail_from, rcpt = True, None, []
                    ext = ["8BITMIME", "SIZE 10485760"]
                    if self.tls_context is not None and not tls:
                        ext.append("STARTTLS")
                    if self.credentials is not None and tls:
                        ext.append("AUTH PLAIN")
                    lines = ["test.invalid greets you", *ext]
                    for i, text in enumerate(lines):
                        await reply(("250 " if i == len(lines) - 1 else "250-") + text)
                elif verb == "STARTTLS":
                    if self.tls_context is None or tls:
                        await reply("502 5.5.1 STARTTLS not available")
                        continue
                    if not ehlo:
                        await reply("503 5.5.1 EHLO first")
                        continue
                    await reply("220 2.0.0 ready to start TLS")
                    await writer.start_tls(self.tls_context)
                    tls, ehlo, mail_from, rcpt = True, False, None, []  # RFC 3207: forget everything
                elif verb == "AUTH":
                    if self.credentials is None or not tls:
                        await reply("503 5.5.1 AUTH not available")
                        continue
                    if not ehlo or user is not None:
                        await reply("503 5.5.1 bad sequence")
                        continue
                    mech, _, initial = arg.partition(" ")
                    if mech.upper() != "PLAIN":
                        await reply("504 5.5.4 mechanism not supported")
                        continue
                    if not initial:
                        await reply("334 ")
                        initial = (await reader.readline()).decode().strip()
                    try:
                        _, name, password = base64.b64decode(initial, validate=True).decode().split("\0")
                    except ValueError:
                        await reply("501 5.5.2 cannot decode")
                        continue
                    if self.credentials.get(name) != password:
                        await reply("535 5.7.8 authentication credentials invalid")
                        continue
                    user = name
                    await reply("235 2.7.0 authenticated")
                elif verb == "MAIL":
                    if not ehlo or mail_from is not None:
                        await reply("503 5.5.1 bad sequence")
                    elif self.credentials is not None and user is None:
                        await reply("530 5.7.0 authentication required")
                    elif not arg.upper().startswith("FROM:<"):
                        await reply("501 5.5.4 syntax: MAIL FROM:<address>")
                    else:
                        mail_from, rcpt = arg[6:].split(">", 1)[0], []
                        await reply("250 2.1.0 ok")
                elif verb == "RCPT":
                    if mail_from is None:
                        await reply("503 5.5.1 MAIL first")
                    elif not arg.upper().startswith("TO:<"):
                        await reply("501 5.5.4 syntax: RCPT TO:<address>")
                    else:
                        rcpt.append(arg[4:].split(">", 1)[0])
                        await reply("250 2.1.5 ok")
                elif verb == "DATA":
                    if mail_from is None or not rcpt:
                        await reply("503 5.5.1 RCPT first")
                        continue
                    await reply("354 end data with <CR><LF>.<CR><LF>")
                    chunks = []
                    while True:
                        data_line = await reader.readline()
                        if not data_line.endswith(b"\r\n"):
                            return  # a broken client: drop the session, keep nothing
                        if data_line == b".\r\n":
                            break
                        chunks.append(data_line[1:] if data_line.startswith(b".") else data_line)
                    final = self.replies.get("DATA-END")
                    if final:
                        await reply(final.pop(0))
                    else:
                        self.received.append(Received(mail_from, rcpt, b"".join(chunks), tls, user))
                        await reply("250 2.0.0 queued")
                    mail_from, rcpt = None, []
                elif verb == "RSET":
                    mail_from, rcpt = None, []
                    await reply("250 2.0.0 ok")
                elif verb == "NOOP":
                    await reply("250 2.0.0 ok")
                elif verb == "QUIT":
                    await reply("221 2.0.0 bye")
                    return
                else:
                    await reply("500 5.5.2 command not recognized")
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

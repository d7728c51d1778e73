"""`Mail`, what a feature asks to send, and the MIME message built from it (pure, no I/O).

The message is an `email.message.EmailMessage` with the SMTP policy: UTF-8 everywhere, a
non-ASCII subject or display name RFC 2047-encoded, a text/plain part always (an HTML part only
beside it, as multipart/alternative), CRLF line ends, lines folded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from typing import Any

from gateway.configbase import NOT_ONE_LINE

__all__ = ["Mail", "MailError", "build_message", "check_address", "check_line"]

# RFC 5321's usual shape, no display name, no spaces or angle brackets (they would smuggle headers);
# used with fullmatch: `$` would also match before a final "\n", which then ends the header block
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
# Every character str.splitlines breaks a line on (U+2028, U+2029 and C0/C1 controls), and the other
# C0/C1 controls, tab and DEL among them: the email package refuses the first only when the message is
# built, long after the mail was queued, and lets the others into the header as they are
MAX_SUBJECT = 998
# RFC 5321 4.5.3.1.1; gateway.redact reads at most this many characters of a local part, so a longer one
# would keep its first characters in clear in every log line and last_error that quotes it
MAX_LOCAL = 64
MAX_BODY = 1_000_000


class MailError(ValueError):
    """A `Mail` that cannot be sent as asked; the message never quotes an address."""


def check_address(address: str, where: str = "mail.to") -> str:
    if len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise MailError(f"{where}: not an e-mail address (local@domain), got a value not shown here")
    local = address.rpartition("@")[0]
    if len(local) > MAX_LOCAL:
        raise MailError(
            f"{where}: not an e-mail address, its local part (before the @) has {len(local)} characters, at most "
            f"{MAX_LOCAL} (RFC 5321), got a value not shown here"
        )
    return address


def check_line(value: str, where: str) -> str:
    """`value` if it is one line without control characters (a header's text); MailError naming `where` if
    not, with the character and its position, never the value (a subject can name a patron)."""
    bad = NOT_ONE_LINE.search(value)
    if bad is not None:
        raise MailError(
            f"{where}: must be one line without control characters, "
            f"got U+{ord(bad.group()):04X} at character {bad.start() + 1}"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """One mail to send. `to`: one or more addresses (personal data: encrypted in the queue, erased once
    sent). `purpose`: who sends it, e.g. "locker.pickup", "alarm" (shown in status). `reference`: the
    feature's own id for it (a reservation, an alarm id), shown to staff; never personal data."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    purpose: str = "general"
    reference: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.to, str):  # a lone string would become a tuple of characters
            object.__setattr__(self, "to", (self.to,))
        if not self.to:
            raise MailError("mail.to: at least one recipient is needed, got none")
        for address in self.to:
            check_address(address)
        check_line(self.subject, "mail.subject")
        if len(self.subject) > MAX_SUBJECT:
            raise MailError(f"mail.subject: at most {MAX_SUBJECT} characters, got {len(self.subject)}")
        if len(self.text) > MAX_BODY or (self.html is not None and len(self.html) > MAX_BODY):
            raise MailError(f"mail.text: at most {MAX_BODY} characters per part")
        if "\x00" in self.text or (self.html is not None and "\x00" in self.html):
            raise MailError("mail.text: NUL characters cannot be sent")
        if not re.fullmatch(r"[a-z0-9_.-]{1,64}", self.purpose):
            raise MailError(f"mail.purpose: 1-64 characters of a-z 0-9 _ . -, got {self.purpose!r}")
        if len(self.reference) > 200 or any(c in self.reference for c in "\r\n\x00"):
            raise MailError("mail.reference: one line of at most 200 characters")


class _Policy(EmailPolicy):
    """The SMTP policy, but a non-ASCII From display name is encoded by `email.header.Header`.

    Python 3.11's address-header folder can fold a display name at a space into two encoded words,
    and RFC 2047 readers drop the whitespace between encoded words ("図書館 本館" → "図書館本館");
    `Header` puts the spaces inside the encoded words, so they survive.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        addresses = getattr(value, "addresses", None)
        if name.lower() == "from" and addresses and len(addresses) == 1 and not addresses[0].display_name.isascii():
            address = addresses[0]
            header = Header(address.display_name, "utf-8", maxlinelen=self.max_line_length, header_name=name)
            header.append(f"<{address.addr_spec}>", "us-ascii")
            return f"{name}: {header.encode(linesep=self.linesep)}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_SMTP = _Policy(linesep="\r\n")  # what email.policy.SMTP is, with the From fix


def build_message(
    mail: Mail, *, from_address: str, from_name: str = "", now: datetime, msgid_domain: str | None = None
) -> EmailMessage:
    """The MIME message for `mail` (headers and parts); `now` is the Date header (timezone-aware)."""
    msg = EmailMessage(policy=_SMTP)
    local, _, domain = from_address.partition("@")
    msg["From"] = Address(display_name=from_name, username=local, domain=domain)
    msg["To"] = ", ".join(mail.to)
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=msgid_domain or domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: autoresponders must not answer a gateway
    text = mail.text if mail.text.endswith("\n") else mail.text + "\n"
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text))
    if mail.html is not None:
        html = mail.html if mail.html.endswith("\n") else mail.html + "\n"
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html))
    return msg


def _cte(text: str) -> str:
    # 7bit keeps ASCII mail readable in any client; otherwise base64, which survives any relay
    # (8bitmime is not guaranteed, and quoted-printable of Japanese is three times longer)
    return "7bit" if text.isascii() and all(len(line) <= 998 for line in text.splitlines()) else "base64"

"""Building the MIME message: what goes in comes out of a standard parser unchanged (property-based)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.message import Mail, MailError, build_message

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
# one-line text without control characters: what a subject or a display name can hold


def one_spaced(s: str) -> bool:
    return s.strip() == s and not any(a.isspace() and b.isspace() for a, b in itertools.pairwise(s))


# (runs of whitespace between RFC 2047 encoded words are one space to a reader: RFC 2047 section 6.2)
line = st.text(
    st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"], exclude_characters="\x85"), min_size=1, max_size=120
).filter(one_spaced)
body = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\r"), max_size=2000)
local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True).filter(
    lambda s: ".." not in s and not s.endswith(".")
)
# display names without RFC 5322 specials: the oracle below decodes encoded words, it does not unquote
name_line = st.text(
    st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"], exclude_characters='\x85()<>[]:;@\\,."'),
    min_size=1,
    max_size=120,
).filter(one_spaced)
address = st.builds(lambda lp, d: f"{lp}@{d}.example.jp", local, st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True))


def wire_of(mail: Mail, name: str) -> bytes:
    return build_message(mail, from_address="gw@library.example.jp", from_name=name, now=NOW).as_bytes()


def from_display_name(wire: bytes) -> str:
    """The From display name decoded as RFC 2047 section 6.2 says (whitespace between adjacent encoded
    words ignored). Not `policy=default`'s parser: Python 3.11's inserts a space between two encoded
    words of a display name ("予約資料 受け取り"), though the encoding is right."""
    raw = message_from_bytes(wire)["From"]  # compat32: the header as sent, unfolded only
    name, address = parseaddr(str(make_header(decode_header(raw))))
    assert address == "gw@library.example.jp"
    return name


def roundtrip(msg: EmailMessage) -> EmailMessage:
    wire = msg.as_bytes()
    assert wire.isascii()
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))  # RFC 5322 line limit
    parsed = message_from_bytes(wire, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@settings(max_examples=150, deadline=None)
@given(
    subject=line,
    text=body,
    to=st.lists(address, min_size=1, max_size=3, unique=True),
    name=name_line,
    html=st.none() | body,
)
def test_subject_text_and_recipients_survive(
    subject: str, text: str, to: list[str], name: str, html: str | None
) -> None:
    mail = Mail(to=tuple(to), subject=subject, text=text, html=html)
    parsed = roundtrip(build_message(mail, from_address="gw@library.example.jp", from_name=name, now=NOW))
    assert parsed["From"].addresses[0].addr_spec == "gw@library.example.jp"
    assert parsed["Subject"] == subject
    # and as RFC 2047 section 6.2 decodes it (what mail clients do)
    assert str(make_header(decode_header(message_from_bytes(wire_of(mail, name))["Subject"]))) == subject
    assert [a.addr_spec for a in parsed["To"].addresses] == to
    assert from_display_name(wire_of(mail, name)) == name
    plain = parsed.get_body(("plain",))
    assert plain is not None
    expected = text if text.endswith("\n") else text + "\n"
    assert plain.get_content().replace("\r\n", "\n") == expected.replace("\r\n", "\n")
    assert (parsed.get_body(("html",)) is not None) is (html is not None)
    assert parsed.get_content_type() == ("multipart/alternative" if html is not None else "text/plain")


def test_a_japanese_subject_is_rfc2047_encoded_and_decodes_to_the_same_text() -> None:
    subject = "【町立図書館】予約資料のロッカー受け取りのご案内　山田 花子 様（解錠コード・受取期限）"
    msg = build_message(Mail(to=("a@example.jp",), subject=subject, text="本文"), from_address="gw@example.jp", now=NOW)
    wire = msg.as_bytes()
    assert b"Subject: =?utf-8?b?" in wire
    assert roundtrip(msg)["Subject"] == subject


@pytest.mark.parametrize(
    "name",
    [
        "〇〇町立　中央図書館　予約資料受け取りロッカー通知",
        "〇〇町立 中央図書館 予約資料受け取りロッカー自動通知システム 駅前分室",
        "0" + "\u0800" * 14 + " \xa1",  # Python's own folder split it at the space, which then got lost
        "0000000\xa0\xa1\xa0\xa1\xa0\xa1\xa0\xa1\xa0\xa1\xa0\xa1\xa0\xa1\xa0\u0800\u0800\u0800",
        "0 \xa1\xa0\xa1\xa0\xa1\xa0\xa1\xa0\xa1\xa0\u0800" + "\U00010000" * 5,
    ],
)
def test_a_long_japanese_display_name_decodes_to_the_same_text(name: str) -> None:
    wire = wire_of(Mail(to=("a@example.jp",), subject=name, text="t"), name)
    assert from_display_name(wire) == name
    assert str(make_header(decode_header(message_from_bytes(wire)["Subject"]))) == name


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"to": ()}, "mail.to: at least one recipient is needed, got none"),
        (
            {"to": ("a@b.jp>\r\nBcc: x@y.jp",)},
            "mail.to: not an e-mail address (local@domain), got a value not shown here",
        ),
        (
            {"subject": "a\r\nBcc: x@y.jp"},
            "mail.subject: must be one line without control characters, got U+000D at character 2",
        ),
        ({"purpose": "Locker Pickup"}, "mail.purpose: 1-64 characters of a-z 0-9 _ . -, got 'Locker Pickup'"),
    ],
)
def test_header_injection_and_bad_fields_are_refused(fields: dict[str, object], error: str) -> None:
    base: dict[str, object] = {"to": ("a@example.jp",), "subject": "s", "text": "t"}
    with pytest.raises(MailError) as exc:
        Mail(**(base | fields))  # type: ignore[arg-type]
    assert str(exc.value) == error


def test_a_lone_address_string_is_one_recipient() -> None:
    assert Mail(to="a@example.jp", subject="s", text="t").to == ("a@example.jp",)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    mails=st.lists(
        st.builds(
            Mail,
            to=st.lists(address, min_size=1, max_size=3, unique=True).map(tuple),
            subject=line,
            text=body,
            html=st.none() | body,
            purpose=st.from_regex(r"[a-z0-9_.-]{1,20}", fullmatch=True),
            reference=st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_queue_gives_back_what_was_enqueued_and_keeps_none_of_it_after_sending(mails: list[Mail]) -> None:
    import asyncio
    import tempfile
    from pathlib import Path

    from gateway.mail import MailQueue

    async def scenario(directory: Path) -> None:
        queue = await MailQueue.open(directory, clock=lambda: 1000.0)
        ids = [await queue.enqueue(m) for m in mails]
        due = await queue.due(1000.0, limit=10)
        assert [p.id for p in due] == ids and [p.mail for p in due] == mails
        for mail_id in ids:
            await queue.mark_sent(mail_id)
            row = await queue.raw_row(mail_id)
            assert row is not None and row["payload"] is None
        await queue.close()

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(Path(d)))
        stored = b"".join(p.read_bytes() for p in Path(d).glob("mail.db*"))
    for m in mails:
        for a in m.to:
            assert a.encode() not in stored

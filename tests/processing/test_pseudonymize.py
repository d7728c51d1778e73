"""Pseudonymization: keyed tokens, one per person, rotated by date, erased on schedule, nothing in clear anywhere."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import logging
import math
import multiprocessing
import re
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway import redact
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.configbase import format_validation_error
from gateway.processing.api import Processor, ProcessorContext
from gateway.processing.pseudonym_keys import (
    SECRET_NAME,
    KeyRing,
    PseudonymKey,
    PseudonymKeyError,
    PseudonymKeyStore,
    add_parser,
    decode_ring,
    run,
)
from gateway.processing.pseudonymize import (
    IdentifierKind,
    PseudonymizeConfig,
    Pseudonymizer,
    PseudonymValueError,
    normalize,
)
from gateway.records import Attribute, Reading, Source
from gateway.secrets import SecretStore

T0 = datetime(2026, 4, 1, tzinfo=UTC)
ROTATION = datetime(2026, 10, 1, tzinfo=UTC)
KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
MAC, EMAIL, CARD, TEXT = IdentifierKind.MAC, IdentifierKind.EMAIL, IdentifierKind.CARD, IdentifierKind.TEXT
TOKEN = re.compile(r"pz1:k([1-9][0-9]*):([a-z2-7]+)")


def ring_of(*secrets: bytes, keep_days: int = 30) -> KeyRing:
    keys = tuple(
        PseudonymKey(generation=i + 1, valid_from=T0 if i == 0 else ROTATION + timedelta(days=i - 1), secret=s)
        for i, s in enumerate(secrets)
    )
    return KeyRing(keys=keys, keep_old=timedelta(days=keep_days))


def processor(ring: KeyRing | None = None, digest_bytes: int = 16, **kinds: IdentifierKind) -> Pseudonymizer:
    kinds = kinds or {"macAddress": MAC, "email": EMAIL, "cardNumber": CARD, "name": TEXT}
    return Pseudonymizer(attributes=kinds, ring=ring or ring_of(KEY1), digest_bytes=digest_bytes)


def scan(observed_at: datetime = T0 + timedelta(days=1), adapter: str = "desk", **values: Any) -> Reading:
    attrs = {
        name: Attribute(value=v, type="Text", metadata={"source": {"type": "Text", "value": "scanner"}})
        for name, v in values.items()
    }
    attrs["count"] = Attribute(value=1, type="Number")
    return Reading(
        entity_id="urn:ngsi-ld:LibraryScan:gw1-1",
        entity_type="LibraryScan",
        attributes=attrs,
        observed_at=observed_at,
        source=Source(adapter=adapter),
    )


def token_of(
    p: Pseudonymizer, name: str, value: Any, observed_at: datetime = T0 + timedelta(days=1), now: datetime | None = None
) -> str:
    out = p.process(scan(observed_at, **{name: value}), now or observed_at)
    assert len(out) == 1
    token = out[0].attributes[name].value
    assert isinstance(token, str)
    return token


def test_a_pseudonymizer_is_a_processor() -> None:
    p: Processor = processor()  # mypy checks the protocol; this keeps the test honest at run time too
    assert p.diagnostics() == {
        "pseudonymized": 0,
        "missing": 0,
        "not_text": 0,
        "invalid": 0,
        "tokens_kept": 0,
        "key_generation": 0,
    }


# --- the token: an independent oracle and properties ---------------------------------------


def test_token_is_the_documented_hmac_truncated_in_base32() -> None:
    # the format in docs/pseudonymization.md, computed here from its description, not from the module
    digest = hmac.new(KEY1, b"mac\x00aa:bb:cc:dd:ee:0f", hashlib.sha256).digest()[:16]
    expected = "pz1:k1:" + base64.b32encode(digest).decode().rstrip("=").lower()
    assert token_of(processor(), "macAddress", "AA-BB-CC-DD-EE-0F") == expected
    assert len(expected) == len("pz1:k1:") + 26


@given(value=st.text(min_size=1).filter(lambda s: s.strip()), kind=st.sampled_from([CARD, TEXT]))
def test_same_input_same_token(value: str, kind: IdentifierKind) -> None:
    try:
        normalize(value, kind)
    except PseudonymValueError:
        return
    a, b = processor(v=kind), processor(v=kind)  # two processes of one box: same key, same token
    assert token_of(a, "v", value) == token_of(a, "v", value) == token_of(b, "v", value)


@given(
    k1=st.binary(min_size=32, max_size=32),
    k2=st.binary(min_size=32, max_size=32),
    value=st.text(alphabet="0123456789", min_size=6, max_size=16),
)
def test_different_key_different_token(k1: bytes, k2: bytes, value: str) -> None:
    if k1 == k2:
        return
    assert token_of(processor(ring_of(k1), v=CARD), "v", value) != token_of(processor(ring_of(k2), v=CARD), "v", value)


def _mac_spellings(octets: bytes) -> list[str]:
    h = octets.hex()
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    return [
        ":".join(pairs),
        ":".join(pairs).upper(),
        "-".join(pairs).upper(),
        "-".join(pairs),
        ".".join(h[i : i + 4] for i in range(0, 12, 4)),
        h,
        h.upper(),
        f"{h[:6]}-{h[6:]}",
        ":".join(p.lstrip("0") or "0" for p in pairs),  # BSD prints no leading zeros
        "  " + ":".join(pairs) + "\n",
    ]


@given(octets=st.binary(min_size=6, max_size=6))
def test_every_mac_spelling_gives_one_token(octets: bytes) -> None:
    p = processor(v=MAC)
    tokens = {token_of(p, "v", spelling) for spelling in _mac_spellings(octets)}
    assert len(tokens) == 1


_LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=20)
_DOMAIN = st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(jp|com|lg\.jp)", fullmatch=True)


@given(local=_LOCAL, domain=_DOMAIN, shout=st.booleans())
def test_email_domain_case_and_blanks_do_not_matter_but_the_local_part_case_does(
    local: str, domain: str, shout: bool
) -> None:
    p = processor(v=EMAIL)
    base = token_of(p, "v", f"{local}@{domain}")
    assert token_of(p, "v", f" {local}@{domain.upper() if shout else domain.title()}\t") == base
    if local.upper() != local:  # RFC 5321: the local part is case-sensitive, so it is hashed as written
        assert token_of(p, "v", f"{local.upper()}@{domain}") != base


@given(
    digits=st.text(alphabet="0123456789", min_size=4, max_size=20),
    cut=st.integers(1, 3),
    sep=st.sampled_from([" ", "-", "\u3000", "\u30fc", "\uff0d", "\u2010"]),
)
def test_card_spellings_give_one_token(digits: str, cut: int, sep: str) -> None:
    p = processor(v=CARD)
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in digits)  # ０１２… as a Japanese IME types them
    spaced = digits[:cut] + sep + digits[cut:]
    assert token_of(p, "v", spaced) == token_of(p, "v", digits) == token_of(p, "v", fullwidth)


@given(value=st.text(alphabet="0123456789ABCDEF", min_size=4, max_size=12))
def test_the_kind_is_hashed_too_so_a_card_and_a_text_never_link(value: str) -> None:
    p = processor(card=CARD, text=TEXT)
    out = p.process(scan(card=value, text=value), T0 + timedelta(days=1))[0]
    assert out.attributes["card"].value != out.attributes["text"].value


@given(digest_bytes=st.integers(8, 32), generation=st.integers(1, 500), value=st.text(min_size=1, max_size=40))
@settings(max_examples=60)
def test_tokens_have_the_documented_format(digest_bytes: int, generation: int, value: str) -> None:
    if not value.strip():
        return
    ring = KeyRing(keys=(PseudonymKey(generation=generation, valid_from=T0, secret=KEY1),))
    token = token_of(processor(ring, digest_bytes, v=TEXT), "v", value)
    m = TOKEN.fullmatch(token)
    assert m is not None
    assert m.group(1) == str(generation)
    assert len(m.group(2)) == math.ceil(digest_bytes * 8 / 5)


@given(value=st.text(min_size=1, max_size=40), kind=st.sampled_from([MAC, EMAIL, CARD, TEXT]))
@settings(max_examples=60)
def test_a_token_passes_as_it_is_and_nothing_else_does(value: str, kind: IdentifierKind) -> None:
    # an adapter's own token (the locker's patron, the scanner's card) under an entry written for the
    # address or card it replaced: neither tokenised again nor dropped as an invalid address
    made = token_of(processor(v=TEXT), "v", "hanako@example.jp")
    p = processor(v=kind)
    assert token_of(p, "v", made) == made
    assert p.diagnostics()["tokens_kept"] == 1 and p.diagnostics()["pseudonymized"] == 0
    # a value that only holds a token, or looks like one, is no token: it is pseudonymized or dropped
    for near in (f"{made} {value}", f"{value}{made}", made.upper(), made.replace("pz1:k1:", "pz1:k0:")):
        if near == made:
            continue
        (out,) = p.process(scan(v=near), T0 + timedelta(days=1))
        assert "v" not in out.attributes or out.attributes["v"].value != near


# --- rotation ------------------------------------------------------------------------------


def test_readings_before_the_rotation_date_keep_the_old_key_while_it_is_kept() -> None:
    ring = KeyRing(keys=()).rotate(KEY1, T0, T0).rotate(KEY2, ROTATION, T0 + timedelta(days=3))
    p = processor(ring, v=CARD)
    before, after = ROTATION - timedelta(hours=1), ROTATION + timedelta(hours=1)
    old = token_of(p, "v", "1234-5678", before, now=before)
    assert old.startswith("pz1:k1:")
    # the same person, observed after the date: the new key's token, not linkable to the old one
    new = token_of(p, "v", "1234 5678", after, now=after)
    assert new.startswith("pz1:k2:") and new[7:] != old[7:]
    # a backlog observed before the date but processed 29 days later still gets the old period's token
    assert token_of(p, "v", "12345678", before, now=ROTATION + timedelta(days=29)) == old
    assert p.diagnostics()["key_generation"] == 1
    # 30 days after the rotation the old key is gone, even from a gateway that never reloaded
    assert token_of(p, "v", "12345678", before, now=ROTATION + timedelta(days=30)) == new
    # a device clock ahead of the gateway does not bring the next key in early
    assert token_of(p, "v", "12345678", after, now=before) == old


def test_a_reading_older_than_every_kept_key_uses_the_oldest_kept() -> None:
    ring = ring_of(KEY1, KEY2, keep_days=0)
    assert ring.select(T0 - timedelta(days=100), T0).key_id == "k1"
    assert ring.select(T0 - timedelta(days=100), ROTATION).key_id == "k2"  # keep 0 days: k1 ended with its period


def test_rotation_refuses_a_past_date_and_one_not_after_the_newest_key() -> None:
    ring = ring_of(KEY1, KEY2)
    now = ROTATION + timedelta(days=5)
    with pytest.raises(PseudonymKeyError) as exc:
        ring.rotate(KEY1, ROTATION + timedelta(days=4), now)
    assert str(exc.value) == (
        "pseudonym rotate: --from must not be in the past, got 2026-10-05T00:00:00Z; readings since then already "
        "carry the old key's tokens (omit --from to rotate now)"
    )
    with pytest.raises(PseudonymKeyError) as exc:
        ring.rotate(KEY1, ROTATION, T0)
    assert str(exc.value) == (
        "pseudonym rotate: --from must be after k2's start 2026-10-01T00:00:00Z, got 2026-10-01T00:00:00Z"
    )
    assert [k.key_id for k in ring.rotate(KEY1, now, now).keys] == ["k1", "k2", "k3"]


def test_store_creates_the_first_key_once_and_logs_only_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.processing")
    store = PseudonymKeyStore(tmp_path)
    ring = store.load(T0)
    assert [k.key_id for k in ring.keys] == ["k1"]
    assert [r.getMessage() for r in caplog.records] == [
        "pseudonymize: created the first pseudonym key k1 (in force from 2026-04-01T00:00:00Z)"
    ]
    secret = ring.keys[0].secret
    assert store.load(T0 + timedelta(days=400)).keys == ring.keys  # the same key on every start, never replaced
    assert len(caplog.records) == 1
    # the key never shows: not in its repr, and masked by the one redactor if a bug put it in a line
    for spelling in (base64.urlsafe_b64encode(secret).decode(), secret.hex()):
        assert spelling not in repr(ring)
        assert redact.text(f"key {spelling}") == "key ***"
    assert SECRET_NAME in SecretStore(tmp_path).names()
    assert secret not in (tmp_path / "secrets.enc").read_bytes()


def test_load_erases_a_retired_key_after_keep_old_days(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.processing")
    store = PseudonymKeyStore(tmp_path)
    first = store.load(T0).keys[0]
    second = store.rotate(ROTATION, T0 + timedelta(days=10))
    assert second.key_id == "k2"
    assert store.load(ROTATION + timedelta(days=29, hours=23), keep_old_days=30).keys == (first, second)
    caplog.clear()
    kept = store.load(ROTATION + timedelta(days=30), keep_old_days=30)
    assert kept.keys == (second,)
    assert store.read().keys == (second,)  # gone from the store, not only from memory
    assert [r.getMessage() for r in caplog.records] == [
        (
            "pseudonymize: erased pseudonym key k1 (retired 2026-10-01T00:00:00Z, kept 30 days); its tokens can no "
            "longer be linked to any value"
        )
    ]


def _rotate_from(directory: str, days: int, together: Barrier, done: Queue[bool]) -> None:
    together.wait()
    try:
        PseudonymKeyStore(Path(directory)).rotate(ROTATION + timedelta(days=days), T0)
    except PseudonymKeyError:  # not after the newest key: another process's rotation came first
        done.put(False)
    else:
        done.put(True)


def test_rotations_from_several_processes_at_once_lose_no_key(tmp_path: Path) -> None:
    # `edgegw pseudonym rotate` while the gateway loads (and erases) at start: a ring read before the
    # other's change and written after it would drop that change
    PseudonymKeyStore(tmp_path).load(T0)
    ctx = multiprocessing.get_context("spawn")
    together, done = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_rotate_from, args=(str(tmp_path), days, together, done)) for days in (40, 30, 20, 10)]
    for proc in procs:
        proc.start()
    added = [done.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    ring = PseudonymKeyStore(tmp_path).read()
    assert len(ring.keys) == 1 + sum(added) and sum(added) >= 1  # every rotation said done is in the ring
    assert [k.generation for k in ring.keys] == list(range(1, len(ring.keys) + 1))


def test_a_damaged_ring_is_a_clear_error_that_quotes_no_key() -> None:
    with pytest.raises(PseudonymKeyError) as exc:
        decode_ring(
            '{"version": 1, "keys": [{"generation": 1, "valid_from": "2026-04-01T00:00:00Z", "key": "c2VjcmV0"}]}',
            timedelta(days=30),
        )
    assert str(exc.value) == (
        "secret:pseudonym.keys: not a pseudonym key ring, got a key of 6 bytes; restore the secret store from a "
        "backup (a new ring gives every value a new token)"
    )


def _cli(tmp_path: Path, *argv: str, now: datetime) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="edgegw")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pseudonym", *argv])
    args.data_dir = tmp_path  # the gateway's cli passes its config; the data directory is what counts
    out, err = io.StringIO(), io.StringIO()
    code = run(args, out, err, now=now)
    return code, out.getvalue(), err.getvalue()


def test_cli_rotates_from_a_date_and_lists_without_keys(tmp_path: Path) -> None:
    PseudonymKeyStore(tmp_path).load(T0)
    now = ROTATION - timedelta(days=3)
    code, out, err = _cli(tmp_path, "rotate", "--from", "2026-10-01", now=now)
    assert (code, err) == (0, "")
    # a bare date is midnight in Japan
    assert out == (
        "pseudonym key k2 added, in force from 2026-09-30T15:00:00Z; reload or restart the gateway for it "
        "to take effect\n"
    )
    code, out, err = _cli(tmp_path, "list", now=now)
    assert out == (
        "k1     in force   from 2026-04-01T00:00:00Z until 2026-09-30T15:00:00Z\n"
        "k2     scheduled  from 2026-09-30T15:00:00Z\n"
    )
    code, out, err = _cli(tmp_path, "rotate", "--from", "2026-09-01T00:00:00+09:00", now=now)
    assert code == 2 and out == ""
    assert err == (
        "pseudonym rotate: --from must not be in the past, got 2026-08-31T15:00:00Z; readings since then "
        "already carry the old key's tokens (omit --from to rotate now)\n"
    )


def test_cli_finds_the_store_through_the_gateway_config(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    parser = argparse.ArgumentParser(prog="edgegw")
    add_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    assert run(parser.parse_args(["pseudonym", "rotate", "-c", str(cfg)]), out, err, now=T0) == 0, err.getvalue()
    assert out.getvalue().startswith("pseudonym key k1 added, in force from 2026-04-01T00:00:00Z")
    assert [k.key_id for k in PseudonymKeyStore(tmp_path / "data").read().keys] == ["k1"]
    cfg.write_text("[gateway]\nid = 1\n")
    out, err = io.StringIO(), io.StringIO()
    assert run(parser.parse_args(["pseudonym", "list", "-c", str(cfg)]), out, err, now=T0) == 2
    assert err.getvalue() == (
        f"pseudonym list: {cfg}: 2 error(s)\n  gateway.id: input should be a valid string, got 1\n"
        "  uplinks: at least one [[uplinks]] entry is needed, got none\n"
    )


def test_cli_refuses_a_date_without_an_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli(tmp_path, "rotate", "--from", "2026-10-01T00:00:00", now=T0)
    assert capsys.readouterr().err.endswith(
        'argument --from: a date-time must carry an offset (+09:00 or Z), got "2026-10-01T00:00:00"\n'
    )


# --- the processor: what is replaced, what is dropped, what is said ------------------------


def test_replaces_only_configured_attributes_and_keeps_their_metadata() -> None:
    p = processor()
    reading = scan(macAddress="AA:BB:CC:DD:EE:FF", email="Taro@Example.JP", other="kept")
    out = p.process(reading, T0 + timedelta(days=1))[0]
    assert list(out.attributes) == ["macAddress", "email", "other", "count"]
    assert out.attributes["other"] == reading.attributes["other"]
    assert out.attributes["count"] == reading.attributes["count"]
    mac = out.attributes["macAddress"]
    assert TOKEN.fullmatch(mac.value) and mac.type == "Text" and mac.unit is None
    assert mac.metadata == reading.attributes["macAddress"].metadata
    assert (out.entity_id, out.observed_at, out.source) == (reading.entity_id, reading.observed_at, reading.source)
    assert p.diagnostics() == {
        "pseudonymized": 2,
        "missing": 2,
        "not_text": 0,
        "invalid": 0,
        "tokens_kept": 0,
        "key_generation": 1,
    }


def test_a_reading_without_the_attributes_passes_as_it_is() -> None:
    reading = scan(other="x")
    assert processor().process(reading, T0)[0] is reading


def test_a_value_that_is_not_text_or_not_valid_is_dropped_and_said_once_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.processing")
    p = processor(macAddress=MAC, cardNumber=CARD)
    for _ in range(3):
        out = p.process(scan(macAddress="00:11:22:33:44:zz", cardNumber=12345678), T0 + timedelta(days=1))[0]
        assert list(out.attributes) == ["count"]  # neither leaves in clear
    assert p.diagnostics() == {
        "pseudonymized": 0,
        "missing": 0,
        "not_text": 3,
        "invalid": 3,
        "tokens_kept": 0,
        "key_generation": 1,
    }
    assert [(r.levelname, r.getMessage()) for r in caplog.records[:2]] == [
        (
            "WARNING",
            (
                'pseudonymize: desk LibraryScan.macAddress: not a MAC address, got "00***" (17 chars); the '
                "attribute was dropped so it never leaves in clear; fix the source, or set kinds.macAddress = "
                '"text"'
            ),
        ),
        (
            "WARNING",
            (
                "pseudonymize: desk LibraryScan.cardNumber: must be text to be pseudonymized, got a Number; the "
                "attribute was dropped so it never leaves in clear; map it as text in the source"
            ),
        ),
    ]
    assert [r.levelname for r in caplog.records[2:]] == ["DEBUG"] * 4
    assert not any("11:22" in r.getMessage() or "12345678" in r.getMessage() for r in caplog.records)


def test_invalid_values_error_masks_them() -> None:
    with pytest.raises(PseudonymValueError) as exc:
        normalize("taro.example.jp", EMAIL, where="email")
    assert str(exc.value) == 'email: not an e-mail address, got "ta***" (15 chars)'
    with pytest.raises(PseudonymValueError) as exc:
        normalize("  ", TEXT, where="name")
    assert str(exc.value) == 'name: empty, got "***" (2 chars)'


# --- configuration -------------------------------------------------------------------------


def _errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        PseudonymizeConfig.model_validate(doc)
    return format_validation_error(exc.value, PseudonymizeConfig, "processors[0]")


def test_config_defaults_and_kinds() -> None:
    cfg = PseudonymizeConfig.model_validate(
        {"type": "pseudonymize", "attributes": ["macAddress", "name"], "kinds": {"macAddress": "mac"}}
    )
    assert (cfg.digest_bytes, cfg.keep_old_days) == (16, 30)
    assert (cfg.kind_of("macAddress"), cfg.kind_of("name")) == (MAC, TEXT)


def test_config_errors_name_each_key() -> None:
    assert _errors({"type": "pseudonymize", "attributes": ["a", "a"], "kinds": {"b": "mac"}}) == [
        'processors[0].attributes[1]: is listed twice, got "a"; list it once',
        (
            'processors[0].kinds.b: names an attribute that is not in attributes, got "b"; add it to attributes or '
            "remove it"
        ),
    ]
    assert _errors({"type": "pseudonymize", "attributes": []}) == [
        "processors[0].attributes: must name at least one attribute, got []"
    ]
    assert _errors(
        {"type": "pseudonymize", "attributes": ["a"], "kinds": {"a": "phone"}, "digest_bytes": 4, "salt": "x"}
    ) == [
        "processors[0].kinds.a: input should be 'mac', 'email', 'card' or 'text', got \"phone\"",
        "processors[0].digest_bytes: input should be greater than or equal to 8, got 4",
        "processors[0].salt: unknown key; valid keys here: attributes, digest_bytes, keep_old_days, kinds, match, type",
    ]


def test_build_loads_the_gateway_key_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    cfg = PseudonymizeConfig.model_validate(
        {"type": "pseudonymize", "attributes": ["email"], "kinds": {"email": "email"}}
    )
    context = ProcessorContext(gateway_id="gw1", data_dir=str(tmp_path))
    now = datetime.now(UTC)
    first = token_of(cfg.build(context), "email", "hanako@example.lg.jp", now, now)
    again = token_of(cfg.build(context), "email", "hanako@EXAMPLE.lg.jp", now, now)
    assert first == again and first.startswith("pz1:k1:")


# --- nothing in clear in the buffer or the logs --------------------------------------------

CLEAR = {
    "macAddress": "A4:5E:60:C1:D2:E3",
    "email": "Yamada.Hanako@Example.lg.jp",
    "cardNumber": "2210 0045 6789",
    "name": "山田花子",
}


def _clear_spellings() -> list[bytes]:
    forms = set()
    for value in CLEAR.values():
        forms |= {value, value.lower(), value.upper(), value.replace(" ", ""), value.replace(":", "").lower()}
    forms |= {"a4:5e:60:c1:d2:e3", "a45e60c1d2e3", "yamada.hanako@example.lg.jp", "221000456789"}
    spellings = set()
    for form in forms:
        spellings |= {form.encode(), form.encode("utf-16-le")}
        spellings.add(form.encode("unicode_escape"))  # \u5c71… as JSON may escape it
    return sorted(spellings)


async def test_nothing_in_clear_reaches_the_buffer_file_or_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "data"
    cfg = PseudonymizeConfig.model_validate(
        {
            "type": "pseudonymize",
            "attributes": list(CLEAR),
            "kinds": {"macAddress": "mac", "email": "email", "cardNumber": "card"},
        }
    )
    p = cfg.build(ProcessorContext(gateway_id="gw1", data_dir=str(data_dir)))
    now = datetime.now(UTC)
    box = await Outbox.open(
        data_dir / "buffer.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["orion"]
    )
    readings = [scan(now, **CLEAR) for _ in range(50)]
    # and the broken spellings that are dropped, whose warnings quote them (masked)
    readings.append(
        scan(
            now,
            macAddress=CLEAR["macAddress"] + ":00",
            email=CLEAR["email"].replace("@", " at "),
            cardNumber=int(CLEAR["cardNumber"].replace(" ", "")),
            name=" ",
        )
    )
    out = [r for reading in readings for r in p.process(reading, now)]
    await box.append_many(out)
    stored = await box.read("orion", 100)
    assert len(stored) == 51
    assert {stored[0].attributes[n].value.split(":")[1] for n in CLEAR} == {"k1"}
    await box.close()
    files = b"".join(f.read_bytes() for f in data_dir.iterdir() if f.name.startswith("buffer.db"))
    assert b"pz1:k1:" in files
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for spelling in _clear_spellings():
        assert spelling not in files, spelling
        assert spelling.decode("utf-8", "replace") not in logged, spelling
    assert "dropped so it never leaves in clear" in logged
    assert p.diagnostics() == {
        "pseudonymized": 200,
        "missing": 0,
        "not_text": 1,
        "invalid": 3,
        "tokens_kept": 0,
        "key_generation": 1,
    }
    # the key itself is in neither
    key = PseudonymKeyStore(data_dir).read().keys[0].secret
    for spelling in (key, base64.urlsafe_b64encode(key), key.hex().encode()):
        assert spelling not in files
        assert spelling.decode("latin-1") not in logged


def test_edgegw_pseudonym_rotate_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway import cli

    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    assert cli.main(["pseudonym", "rotate", "-c", str(cfg)]) == 0
    assert cli.main(["pseudonym", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pseudonym key k1 added, in force from ")
    assert "k1" in out.splitlines()[-1]

"""One redaction point: registered secrets and token-looking text never reach a log line or the status file."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import logs, redact
from gateway.secrets import SecretStore, resolve
from gateway.supervisor import AdapterState


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    redact.clear()
    yield
    redact.clear()


@pytest.fixture
def root_logging() -> Iterator[io.StringIO]:
    """`logs.setup` on a buffer, then the root logger as pytest had it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        yield stream
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # what far sides echo, in the spellings they echo it in
        ("X-Auth-Token: 4f1c9e2a7b", "X-Auth-Token: ***"),
        (
            '{"X-Auth-Token": "4f1c9e2a7b", "Authorization": "Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0"}',
            '{"X-Auth-Token": "***", "Authorization": "Bearer ***"}',
        ),
        (
            "<CIMultiDictProxy('Authorization': 'Bearer abc123', 'Accept': '*/*')>",
            "<CIMultiDictProxy('Authorization': 'Bearer ***', 'Accept': '*/*')>",
        ),
        ("authorization: Basic dXNlcjpwdw==", "authorization: Basic ***"),
        (
            "grant_type=client_credentials&client_secret=s3cret%21x&scope=a",
            "grant_type=client_credentials&client_secret=***&scope=a",
        ),
        (
            'b\'{"access_token": "2YotnFZFEjr1zCsicMWpAA", "expires_in": 3600}\'',
            'b\'{"access_token": "***", "expires_in": 3600}\'',
        ),
        ('cut short: {"access_token": "2YotnFZFEjr1zCsi', 'cut short: {"access_token": "***'),
        (
            "https://example.org/cb#access_token=2YotnFZF&token_type=bearer",
            "https://example.org/cb#access_token=***&token_type=bearer",
        ),
        ("invalid token Bearer 2YotnFZFEjr1zCsicMWpAA for /v2", "invalid token Bearer *** for /v2"),
        # a URL keeps its scheme, host and path
        (
            "cannot reach http://admin:pw@orion:1026/v2/op/update, got refused",
            "cannot reach http://***@orion:1026/v2/op/update, got refused",
        ),
        ("mqtts://gw:p%40ss@broker.example.jp:8883", "mqtts://***@broker.example.jp:8883"),
        # prose about the keys is left alone
        ("uplinks[0].password: must reference a secret", "uplinks[0].password: must reference a secret"),
        ("HTTP Basic authentication is refused", "HTTP Basic authentication is refused"),
        (
            "check x_auth_token / oauth2 (readings stay buffered)",
            "check x_auth_token / oauth2 (readings stay buffered)",
        ),
        ("must set 'x-auth-token' from one place", "must set 'x-auth-token' from one place"),
        ("write to someone@example.org", "write to ***@example.org"),  # personal data: only the domain stays
    ],
)
def test_token_looking_text_is_masked_and_the_rest_kept(text: str, expected: str) -> None:
    assert redact.text(text) == expected


def test_registered_values_are_masked_in_every_spelling() -> None:
    secret = "pä ss/wörd+1"
    redact.register(secret)
    line = (
        f"raw {secret} | form {'p%C3%A4+ss%2Fw%C3%B6rd%2B1'} | url {'p%C3%A4%20ss%2Fw%C3%B6rd%2B1'} | "
        f"json {json.dumps(secret)} | json-utf8 {json.dumps(secret, ensure_ascii=False)}"
    )
    assert redact.text(line) == 'raw *** | form *** | url *** | json "***" | json-utf8 "***"'


def test_short_values_are_not_registered_and_tokens_are_bounded() -> None:
    redact.register("abc")  # masking every "abc" would make lines unreadable
    assert redact.text("abc") == "abc"
    for n in range(redact.EPHEMERAL_KEPT + 1):
        redact.register(f"token-{n:04d}", ephemeral=True)
    # the oldest token dropped out; the newest ones are masked
    assert redact.text("token-0000 token-0001 token-0032") == "token-0000 *** ***"


def test_scrub_masks_strings_and_keys_and_keeps_the_shape() -> None:
    redact.register("hunter22")
    doc = {
        "uplinks": [
            {
                "last_error": "got hunter22",
                "state": AdapterState.RUNNING,
                "ok": True,
                "n": 1.5,
                "none": None,
                "path": Path("/var/lib/hunter22"),
            }
        ],
        "by topic": {"hunter22/x": 3},
        7: ("a", "X-Auth-Token: zz9"),
    }
    assert redact.scrub(doc) == {
        "uplinks": [
            {
                "last_error": "got ***",
                "state": AdapterState.RUNNING,
                "ok": True,
                "n": 1.5,
                "none": None,
                "path": "/var/lib/***",
            }
        ],
        "by topic": {"***/x": 3},
        "7": ["a", "X-Auth-Token: ***"],
    }


def test_resolve_registers_store_and_environment_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SecretStore(tmp_path).set("orion_token", "from-the-store-1")
    monkeypatch.setenv("EDGEGW_TEST_SECRET", "from-the-env-2")
    assert redact.text("from-the-store-1 from-the-env-2") == "from-the-store-1 from-the-env-2"
    resolve("secret:orion_token", tmp_path)
    resolve("env:EDGEGW_TEST_SECRET", tmp_path)
    assert redact.text("from-the-store-1 from-the-env-2") == "*** ***"


_NO_MASK = st.text(st.characters(exclude_characters="*", exclude_categories=["Cs"]), min_size=redact.MIN_CHARS)


@given(secret=_NO_MASK, before=st.text(), after=st.text())
def test_a_registered_secret_never_survives(secret: str, before: str, after: str) -> None:
    redact.clear()
    redact.register(secret)
    assert secret not in redact.text(before + secret + after)


@given(st.text())
def test_redaction_is_idempotent(text: str) -> None:
    once = redact.text(text)
    assert redact.text(once) == once


def _record_with_secrets(stream: io.StringIO, fmt: str) -> str:
    logs.setup("debug", fmt, stream=stream)
    redact.register("s3cr3t-value")
    log = logs.component_logger("gateway.uplinks.http.batch", "orion")
    try:
        raise ValueError("far side said: X-Auth-Token: 9f8e7d6c and s3cr3t-value")
    except ValueError:
        log.exception(
            "refused, got %s",
            "Bearer eyJ0.eyJ1.c2ln",
            extra={"body": {"echo": "s3cr3t-value"}, "url": "http://u:p4ss@orion:1026"},
        )
    return stream.getvalue()


def test_json_lines_redact_message_exception_and_extra_fields(root_logging: io.StringIO) -> None:
    out = _record_with_secrets(root_logging, "json")
    doc = json.loads(out)
    assert doc["component"] == "orion"
    assert doc["msg"] == "refused, got Bearer ***"
    assert doc["body"] == {"echo": "***"}
    assert doc["url"] == "http://***@orion:1026"
    assert doc["exc"].endswith("ValueError: far side said: X-Auth-Token: *** and ***")
    for secret in ("s3cr3t-value", "9f8e7d6c", "eyJ0", "p4ss"):
        assert secret not in out


def test_text_lines_redact_message_and_exception(root_logging: io.StringIO) -> None:
    out = _record_with_secrets(root_logging, "text")
    assert "[orion] refused, got Bearer ***\n" in out
    assert out.rstrip("\n").endswith("ValueError: far side said: X-Auth-Token: *** and ***")
    for secret in ("s3cr3t-value", "9f8e7d6c", "eyJ0"):
        assert secret not in out


@pytest.mark.parametrize(
    ("logger", "component"),
    [
        ("paho.mqtt.client", "mqtt-client"),
        ("mqtt", "mqtt-client"),
        ("pymodbus.logging", "modbus-client"),
        ("pymodbus_internal", "modbus-client"),
        ("aiohttp.client", "http-client"),
        ("asyncio", "asyncio"),
        ("gateway.app", "gateway"),
        ("gateway.buffer.store", "buffer"),
        ("urllib3.connectionpool", "urllib3"),
        ("", "root"),
    ],
)
def test_every_line_has_a_component(root_logging: io.StringIO, logger: str, component: str) -> None:
    # CRITICAL: adapters.modbus.transport turns pymodbus's own lines down to that level
    logs.setup("debug", "json", stream=root_logging)
    logging.getLogger(logger).critical("hello")
    assert json.loads(root_logging.getvalue())["component"] == component
    logs.setup("debug", "text", stream=root_logging)
    logging.getLogger(logger).critical("hello")
    assert root_logging.getvalue().splitlines()[-1].endswith(f" CRITICAL [{component}] hello")


def test_a_library_line_with_a_token_is_redacted(root_logging: io.StringIO) -> None:
    # a library that logs what it sends (here pretending to be paho at debug level)
    logs.setup("debug", "json", stream=root_logging)
    logging.getLogger("paho.mqtt.client").debug("Sending CONNECT (u1, p1, wr0, wq0, wf0, c0, k60) password=hunter2x")
    doc = json.loads(root_logging.getvalue())
    assert (doc["component"], doc["msg"]) == (
        "mqtt-client",
        "Sending CONNECT (u1, p1, wr0, wq0, wf0, c0, k60) password=***",
    )


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            "payload.mac must be a number, got str '3C:22:FB:12:9A:0E'",
            "payload.mac must be a number, got str '3C:22:FB:***'",
        ),
        ("station 3c-22-fb-12-9a-0e joined", "station 3c-22-fb-*** joined"),
        ("client 3c22.fb12.9a0e roamed", "client 3c22.*** roamed"),
        ("registered Hanako.Yamada@Example.JP", "registered ***@Example.JP"),
        # not personal data: times, IPv4 and IPv6 addresses, file names, a UUID
        (
            "at 2026-07-04T05:00:00+09:00 from 10.0.0.1 and fe80::1:2:3:4",
            "at 2026-07-04T05:00:00+09:00 from 10.0.0.1 and fe80::1:2:3:4",
        ),
        ("moved buffer.db to buffer.db.corrupt-2026-07-04", "moved buffer.db to buffer.db.corrupt-2026-07-04"),
        (
            "urn:ngsi-ld:Device:0f8fad5b-d9cb-469f-a165-70867728950e",
            "urn:ngsi-ld:Device:0f8fad5b-d9cb-469f-a165-70867728950e",
        ),
    ],
)
def test_mac_and_email_addresses_are_masked_in_any_line(line: str, shown: str) -> None:
    assert redact.text(line) == shown

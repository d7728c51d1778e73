"""A secret that resolves to something no header can carry (a token file saved with CRLF keeps its CR) is a
configuration refusal naming the setting, never an endless transient retry, and never shown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.secrets import SecretStore
from gateway.uplinks.api import DELIVERED, Fault, Status
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from tests.support.kintone_double import KintoneDouble
from tests.uplinks.kintone.conftest import VISITS_APP, visit, visits_section

TOKEN = "visits-token-abcdef0123456789"
PASSWORD = "pa:ss-word-0123"
BASIC = "basic-secret-0123"


async def instant(_: float) -> None:
    await asyncio.sleep(0)


def uplink(tmp_path: Path, doc: dict[str, Any]) -> tuple[KintoneConfig, KintoneUplink]:
    cfg = KintoneConfig.model_validate(doc)
    return cfg, KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def test_a_token_stored_with_a_crlf_line_ending_is_refused_naming_the_setting_until_stored_again(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = SecretStore(tmp_path)
    store.set("visits_token", TOKEN + "\r")
    cfg, up = uplink(tmp_path, visits_section(kintone.url))
    box = await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["visits"]
    )
    await box.append_many([visit(n, n) for n in range(3)])
    loop = DeliveryLoop(up, cfg, box, sleep=instant)
    task = asyncio.create_task(loop.run())
    reason = (
        'uplinks.visits.api_token: the secret "visits_token" must be one line without control characters, got a '
        "carriage return (U+000D) at its end (a file saved with Windows line endings?); store it again with "
        "`edgegw secret set visits_token --stdin` (readings stay buffered)"
    )
    try:
        async with asyncio.timeout(5):
            while loop.status().state is not UplinkState.REFUSED:
                await asyncio.sleep(0.005)
            refused = loop.status()
            retries = loop.retries
            while loop.retries < retries + 3:  # tried again: the secret is read again each time
                await asyncio.sleep(0.005)
            assert not kintone.requests  # nothing was sent with the broken header
            store.set("visits_token", TOKEN)  # `edgegw secret set`, no restart
            while len(kintone.records_of(VISITS_APP)) < 3:
                await asyncio.sleep(0.005)
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 5)
        await up.close()
    assert (refused.last_error, refused.rejected, refused.delivered) == (reason, 0, 0)
    assert refused.diagnostics["last_error"] == reason
    assert (await box.stats()).dead_letters.get("visits", 0) == 0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.uplinks.kintone.uplink"]
    assert lines[0] == ("ERROR", reason)  # once, however often it is tried again
    assert lines[1:] == [("INFO", f"delivering to kintone app 7 at {kintone.url} again")]
    assert TOKEN not in caplog.text
    await box.close()


@pytest.mark.parametrize(
    ("keys", "stored", "where", "got"),
    [
        (
            {"api_token": ["secret:lookup_token", "secret:visits_token"]},
            {"lookup_token": "lookup-token-0123", "visits_token": TOKEN + "\r\n"},
            'uplinks.visits.api_token[1]: the secret "visits_token"',
            "a carriage return (U+000D) at its end (a file saved with Windows line endings?)",
        ),
        (
            {"api_token": [], "user": "gw-001", "password": "secret:kintone_password"},
            {"kintone_password": "pa:ss\tword-0123"},
            'uplinks.visits.password: the secret "kintone_password"',
            "a tab (U+0009) at character 6",
        ),
        (
            {"basic_auth": {"user": "pref", "password": "secret:basic_password"}},
            {"visits_token": TOKEN, "basic_password": BASIC + "\n"},
            'uplinks.visits.basic_auth.password: the secret "basic_password"',
            "a line feed (U+000A) at its end",
        ),
        (
            {"api_token": "secret:visits_token"},
            {"visits_token": "\x00" + TOKEN},
            'uplinks.visits.api_token: the secret "visits_token"',
            "U+0000 at character 1",
        ),
    ],
)
async def test_every_secret_setting_is_refused_with_its_key_path_and_never_shown(
    kintone: KintoneDouble,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    keys: dict[str, Any],
    stored: dict[str, str],
    where: str,
    got: str,
) -> None:
    store = SecretStore(tmp_path)
    for name, value in stored.items():
        store.set(name, value)
    _, up = uplink(tmp_path, visits_section(kintone.url, **keys))
    async with up:
        [outcome] = await up.deliver([visit(1, 1)])
        diagnostics = up.diagnostics()
    name = where.split('"')[1]
    assert (outcome.status, outcome.fault) == (Status.RETRY, Fault.CONFIGURATION)
    assert outcome.reason == (
        f"{where} must be one line without control characters, got {got}; store it again with "
        f"`edgegw secret set {name} --stdin` (readings stay buffered)"
    )
    assert diagnostics["last_error"] == outcome.reason
    assert not kintone.requests
    for value in stored.values():
        shown = "".join(c for c in value if c.isprintable())
        assert shown not in caplog.text and shown not in outcome.reason


async def test_an_environment_variable_with_a_line_ending_is_refused_naming_it(
    kintone: KintoneDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINTONE_VISITS_TOKEN", TOKEN + "\r\n")
    _, up = uplink(tmp_path, visits_section(kintone.url, api_token="env:KINTONE_VISITS_TOKEN"))
    async with up:
        [outcome] = await up.deliver([visit(1, 1)])
        monkeypatch.setenv("KINTONE_VISITS_TOKEN", TOKEN)
        assert await up.deliver([visit(2, 2)]) == [DELIVERED]
    assert (outcome.status, outcome.fault) == (Status.RETRY, Fault.CONFIGURATION)
    assert outcome.reason == (
        "uplinks.visits.api_token: the environment variable KINTONE_VISITS_TOKEN must be one line without control "
        "characters, got a carriage return (U+000D) at its end (a file saved with Windows line endings?); "
        "set it again without it (readings stay buffered)"
    )
    assert [r.method for r in kintone.requests] == ["GET", "POST"]


async def test_a_token_with_a_trailing_cr_stops_at_start_without_raising(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The delivery loop sees a started uplink that refuses: not a failing start() retried as transient."""
    caplog.set_level(logging.INFO)
    SecretStore(tmp_path).set("visits_token", TOKEN + "\r")
    _, up = uplink(tmp_path, visits_section(kintone.url))
    await up.start()
    try:
        assert up.diagnostics()["last_error"].startswith('uplinks.visits.api_token: the secret "visits_token"')
    finally:
        await up.close()
    assert not kintone.requests

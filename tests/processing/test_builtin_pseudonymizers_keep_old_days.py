"""The pseudonymizers adapters build for themselves keep retired keys as long as the configured entries.

They were built with the default keep_old_days (30), which no config key reached, and the key ring is the
gateway's one: enabling Wi-Fi session events, a locker's patron tokens or a scanner's card tokens erased a
key the configured entries kept for 365 days, and a backlog reading from before the rotation got the new
key's token instead of its own period's.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.adapter_api import AdapterContext
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.processing.pseudonym_keys import (
    SECRET_NAME,
    KeyRing,
    PseudonymKey,
    PseudonymKeyStore,
    encode_ring,
    new_secret,
)
from gateway.records import utc_now
from gateway.secrets import SecretStore
from gateway.wifilog.runner import SessionEventsOut


def _ring_rotated_40_days_ago(data_dir: Path) -> None:
    now = utc_now()
    ring = KeyRing(
        keys=(
            PseudonymKey(generation=1, valid_from=now - timedelta(days=100), secret=new_secret()),
            PseudonymKey(generation=2, valid_from=now - timedelta(days=40), secret=new_secret()),
        )
    )
    SecretStore(data_dir).set(SECRET_NAME, encode_ring(ring))


def _config(data_dir: Path, *processing: dict[str, object]) -> dict[str, object]:
    return {
        "gateway": {"id": "gw1", "data_dir": str(data_dir)},
        "adapters": [{"name": "sim", "type": "simulated"}],
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:9"}],
        "processing": list(processing),
    }


def _entry(days: int) -> dict[str, object]:
    return {"type": "pseudonymize", "attributes": ["email"], "kinds": {"email": "email"}, "keep_old_days": days}


async def test_an_adapters_own_pseudonymizer_keeps_what_the_configured_entries_keep(tmp_path: Path) -> None:
    _ring_rotated_40_days_ago(tmp_path)
    gw = Gateway(parse_config(_config(tmp_path, _entry(365), _entry(180))))
    assert gw.context.keep_old_days == 180  # the shortest erases for all: one key ring
    SessionEventsOut("wifi", gw.context.processor_context())  # what a Wi-Fi adapter with session_events builds
    assert [k.key_id for k in PseudonymKeyStore(tmp_path).read().keys] == ["k1", "k2"]


async def test_without_configured_entries_an_adapters_pseudonymizer_keeps_its_default(tmp_path: Path) -> None:
    _ring_rotated_40_days_ago(tmp_path)
    gw = Gateway(parse_config(_config(tmp_path)))
    assert gw.context.keep_old_days is None
    SessionEventsOut("wifi", gw.context.processor_context())
    assert [k.key_id for k in PseudonymKeyStore(tmp_path).read().keys] == ["k2"]  # 30 days: k1 retired 40 ago


def test_the_context_an_adapter_gets_carries_it() -> None:
    context = AdapterContext(gateway_id="g", data_dir="/d", keep_old_days=90)
    assert context.processor_context().keep_old_days == 90

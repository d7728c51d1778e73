"""HTTPS to the double with a private CA and a client certificate (mTLS); TLS failures are retried, never rejected."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.errors import ConfigError
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Status
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import OrionDouble, TlsMaterial

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

READING = Reading(
    entity_id="urn:ngsi-ld:WaterObserved:g1",
    entity_type="WaterObserved",
    attributes={"waterLevel": Attribute(value=1.25, type="Number")},
    observed_at=datetime(2024, 7, 1, tzinfo=UTC),
    source=Source(adapter="gauge"),
)


def make_uplink(url: str, tmp_path: Path, tls: dict[str, Any]) -> OrionUplink:
    doc = {"name": "orion-tls", "type": "orion", "url": url, "tls": tls}
    return OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def deliver_once(up: OrionUplink) -> list[Any]:
    await up.start()
    try:
        return await up.deliver([READING])
    finally:
        await up.close()


async def test_mtls_with_private_ca_delivers(
    orion_double_tls: OrionDouble, orion_tls_material: TlsMaterial, tmp_path: Path
) -> None:
    m = orion_tls_material
    tls = {"ca_file": str(m.ca_file), "cert_file": str(m.client_cert), "key_file": str(m.client_key)}
    assert await deliver_once(make_uplink(orion_double_tls.url, tmp_path, tls)) == [DELIVERED]
    assert orion_double_tls.url.startswith("https://") and orion_double_tls.arrivals == [READING.entity_id]


async def test_client_certificate_and_key_in_one_file(
    orion_double_tls: OrionDouble, orion_tls_material: TlsMaterial, tmp_path: Path
) -> None:
    tls = {"ca_file": str(orion_tls_material.ca_file), "cert_file": str(orion_tls_material.client_bundle)}
    assert await deliver_once(make_uplink(orion_double_tls.url, tmp_path, tls)) == [DELIVERED]


async def test_missing_client_certificate_is_retry_not_rejected(
    orion_double_tls: OrionDouble, orion_tls_material: TlsMaterial, tmp_path: Path
) -> None:
    [outcome] = await deliver_once(
        make_uplink(orion_double_tls.url, tmp_path, {"ca_file": str(orion_tls_material.ca_file)})
    )
    assert outcome.status is Status.RETRY
    assert outcome.reason.startswith(f"orion-tls: cannot reach {orion_double_tls.url}/v2/op/update, got ")
    assert orion_double_tls.requests == []


async def test_verification_is_on_by_default(
    orion_double_tls: OrionDouble, orion_tls_material: TlsMaterial, tmp_path: Path
) -> None:
    m = orion_tls_material
    tls = {"cert_file": str(m.client_cert), "key_file": str(m.client_key)}
    [outcome] = await deliver_once(make_uplink(orion_double_tls.url, tmp_path, tls))
    assert outcome.status is Status.RETRY
    assert "got TLS certificate not trusted ([SSL: CERTIFICATE_VERIFY_FAILED]" in outcome.reason
    assert outcome.reason.endswith("; set tls.ca_file to the platform's CA")


async def test_verify_false_connects_and_warns(
    orion_double_tls: OrionDouble, orion_tls_material: TlsMaterial, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = orion_tls_material
    tls = {"verify": False, "cert_file": str(m.client_cert), "key_file": str(m.client_key)}
    assert await deliver_once(make_uplink(orion_double_tls.url, tmp_path, tls)) == [DELIVERED]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["TLS certificate verification is off (tls.verify = false); use only on a lab network"]


async def test_unreadable_ca_file_fails_start_naming_the_key(tmp_path: Path) -> None:
    up = make_uplink("https://orion.example.jp", tmp_path, {"ca_file": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError) as info:
        await up.start()
    assert str(info.value).startswith(
        f"uplinks.orion-tls.tls.ca_file: cannot load a CA certificate, got {str(tmp_path / 'nope.pem')!r}"
    )


async def test_client_key_that_does_not_match_fails_start(orion_tls_material: TlsMaterial, tmp_path: Path) -> None:
    m = orion_tls_material
    up = make_uplink(
        "https://orion.example.jp", tmp_path, {"cert_file": str(m.client_cert), "key_file": str(m.server_key)}
    )
    with pytest.raises(ConfigError) as info:
        await up.start()
    assert str(info.value).startswith(
        f"uplinks.orion-tls.tls.cert_file: cannot load the client certificate and key, got {str(m.client_cert)!r}"
    )
    assert str(info.value).endswith("; both must be PEM and the key unencrypted")

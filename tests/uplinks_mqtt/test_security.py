"""TLS, mutual TLS and username/password against a real mosquitto, secrets from the encrypted store."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from gateway.uplinks.api import Fault, Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.support.mosquitto import MosquittoBroker
from tests.support.ports import free_port
from tests.uplinks_mqtt.conftest import reading
from tests.uplinks_mqtt.pki import Pki, make_pki
from tests.uplinks_mqtt.test_delivery import KEEP_USER

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def tls_broker(tmp_path: Path, pki: Pki, *, require_certificate: bool) -> Iterator[tuple[MosquittoBroker, int]]:
    tls_port = free_port()
    conf = (
        f"{KEEP_USER}listener {tls_port} 127.0.0.1\ncafile {pki.ca_file}\ncertfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\nrequire_certificate {'true' if require_certificate else 'false'}\n"
    )
    broker = MosquittoBroker(tmp_path / "broker", extra_conf=conf)
    broker.start()
    try:
        yield broker, tls_port
    finally:
        broker.stop()


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki) -> Iterator[tuple[MosquittoBroker, int]]:
    yield from tls_broker(tmp_path, pki, require_certificate=True)


@pytest.fixture
def tls_only_broker(tmp_path: Path, pki: Pki) -> Iterator[tuple[MosquittoBroker, int]]:
    yield from tls_broker(tmp_path, pki, require_certificate=False)


def config(port: int, **extra: object) -> MqttUplinkConfig:
    return MqttUplinkConfig.model_validate(
        {
            "name": "pref-mqtt",
            "type": "mqtt",
            "host": "127.0.0.1",
            "port": port,
            "apikey": "K",
            "connect_timeout_s": 2,
            **extra,
        }
    )


async def test_server_tls_verified_against_the_configured_ca(
    tls_only_broker: tuple[MosquittoBroker, int], pki: Pki, context: AdapterContext
) -> None:
    _, port = tls_only_broker
    up = MqttUplink(config(port, tls={"ca_file": str(pki.ca_file)}), context)
    await up.start()
    assert (await up.deliver([reading(seq=1)]))[0].status is Status.DELIVERED
    await up.close()


# paho's _ssl_wrap_socket does not close the socket whose handshake failed; CPython frees it as
# soon as the exception is dropped, but pytest reports the ResourceWarning of that moment.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_server_not_trusted_without_its_ca(
    tls_only_broker: tuple[MosquittoBroker, int], context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = tls_only_broker
    up = MqttUplink(config(port, tls={}), context)  # system trust store: our test CA is not in it
    outcome = (await up.deliver([reading(seq=1)]))[0]
    assert outcome.status is Status.RETRY
    assert "certificate verify failed" in outcome.reason
    assert "certificate verify failed" in caplog.records[-1].getMessage()
    await up.close()


async def test_certificate_checks_off_are_said_at_start(
    tls_only_broker: tuple[MosquittoBroker, int], context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = tls_only_broker
    up = MqttUplink(config(port, tls={"verify": "off"}), context)
    with caplog.at_level(logging.WARNING):
        await up.start()
    assert f"TLS certificate checks are off for mqtt://127.0.0.1:{port}; use tls.ca_file instead" in [
        r.getMessage() for r in caplog.records
    ]
    assert (await up.deliver([reading(seq=1)]))[0].status is Status.DELIVERED  # our test CA is in no trust store
    await up.close()


async def test_mutual_tls_with_client_certificate(
    mtls_broker: tuple[MosquittoBroker, int], pki: Pki, context: AdapterContext
) -> None:
    _, port = mtls_broker
    tls = {"ca_file": str(pki.ca_file), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    up = MqttUplink(config(port, tls=tls), context)
    await up.start()
    assert (await up.deliver([reading(seq=1)]))[0].status is Status.DELIVERED
    await up.close()


async def test_mutual_tls_refuses_a_client_without_certificate(
    mtls_broker: tuple[MosquittoBroker, int], pki: Pki, context: AdapterContext
) -> None:
    _, port = mtls_broker
    up = MqttUplink(config(port, tls={"ca_file": str(pki.ca_file)}), context)
    outcome = (await up.deliver([reading(seq=1)]))[0]
    assert outcome.status is Status.RETRY
    assert outcome.reason.startswith(f"broker 127.0.0.1:{port} unreachable: ")
    await up.close()


async def test_unreadable_tls_files_are_config_errors_at_start(tmp_path: Path, context: AdapterContext) -> None:
    up = MqttUplink(config(8883, tls={"ca_file": str(tmp_path / "missing.pem")}), context)
    with pytest.raises(ConfigError) as exc:
        await up.start()
    assert str(exc.value).startswith(
        f"uplinks.pref-mqtt.tls.ca_file: cannot load a CA certificate, got '{tmp_path / 'missing.pem'}' ("
    )


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    pwfile = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "gateway01", "s3cret-pw"], check=True, capture_output=True
    )
    broker = MosquittoBroker(
        tmp_path / "broker", extra_conf=f"{KEEP_USER}allow_anonymous false\npassword_file {pwfile}\n"
    )
    broker.start()
    yield broker
    broker.stop()


async def test_username_and_password_from_the_secret_store(
    password_broker: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    SecretStore(Path(context.data_dir)).set("mqtt_password", "s3cret-pw")
    up = MqttUplink(config(password_broker.port, username="gateway01", password="secret:mqtt_password"), context)
    await up.start()
    assert (await up.deliver([reading(seq=1)]))[0].status is Status.DELIVERED
    await up.close()
    assert all("s3cret-pw" not in r.getMessage() for r in caplog.records)


async def test_wrong_password_is_retried_and_says_why(
    password_broker: MosquittoBroker, context: AdapterContext
) -> None:
    SecretStore(Path(context.data_dir)).set("mqtt_password", "wrong")
    up = MqttUplink(config(password_broker.port, username="gateway01", password="secret:mqtt_password"), context)
    await up.start()
    outcome = (await up.deliver([reading(seq=1)]))[0]
    assert outcome.status is Status.RETRY
    assert outcome.reason == (
        f"broker 127.0.0.1:{password_broker.port} refused the connection: [code:135] Not "
        "authorized; check username, password and client_id against the broker's settings"
    )
    assert outcome.fault is Fault.CONFIGURATION  # the delivery loop says `refused` at ERROR, not "backing off"
    await up.close()

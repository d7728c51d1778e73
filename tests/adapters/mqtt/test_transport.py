"""The adapter on the gateway's MQTT client against mosquitto: MQTT 3.1.1, TLS, keepalive (also
with reading paused), an unreachable broker."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest

from adapters.mqtt.config import MqttAdapterConfig
from tests.adapters.mqtt.peers import Sink, counter_config, numbered, publish, running, wait_for
from tests.adapters.mqtt.test_bursts import redelivered
from tests.support.mosquitto import MosquittoBroker
from tests.support.ports import free_port

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)


async def test_mqtt_3_1_1_bounds_in_flight_and_acks_after_commit(mosquitto_private: MosquittoBroker) -> None:
    # 3.1.1 has no Receive Maximum: only the adapter's own window holds the broker back
    cfg = counter_config(mosquitto_private, "v311", protocol="3.1.1", max_inflight=3)
    sink = Sink(auto=False)
    async with running(cfg, sink) as adapter:
        await publish(mosquitto_private, numbered(6))
        await wait_for(lambda: adapter.received == 3, what="a full window")
        await asyncio.sleep(0.3)
        assert (adapter.received, adapter.in_flight) == (3, 3)
        for i in range(3):
            sink.commit(i)
        await wait_for(lambda: adapter.received == 6, what="the next three")
        assert (adapter.emitted, adapter.in_flight) == (3, 3)
    assert await redelivered(mosquitto_private, "v311") == [3, 4, 5]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_message_over_max_message_bytes_is_dropped_and_does_not_block_the_session(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    # MQTT 5: the broker is told the limit and discards the message itself (§3.1.2.11.4). 3.1.1: it sends
    # it; the adapter skips it unread, counts it and acknowledges it, or it would come back at every reconnect.
    caplog.set_level(logging.WARNING, logger="adapters.mqtt.adapter")
    big = ("test/dev1", b'{"n": 7, "blob": "' + b"x" * 10_000 + b'"}')
    cfg = counter_config(mosquitto_private, f"limit-{protocol}", protocol=protocol, max_message_bytes=4096)
    sink = Sink()
    async with running(cfg, sink) as adapter:
        await publish(mosquitto_private, [*numbered(1), big, *numbered(1, start=2)])
        await wait_for(lambda: adapter.emitted == 2 and adapter.in_flight == 0, what="the messages within the limit")
        await asyncio.sleep(0.2)
    assert sink.values() == [0, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if protocol == "3.1.1":
        assert (adapter.received, dict(adapter.malformed)) == (3, {"too_large": 1})
        assert warnings == [
            "test/dev1: dropping malformed messages (too_large), e.g. mqtt: packets from the broker must be at "
            "most 4096 bytes (the maximum packet size), got a PUBLISH of 10036 bytes; raise max_message_bytes to "
            "take them; counted per reason"
        ]
    else:
        assert (adapter.received, dict(adapter.malformed), warnings) == (2, {}, [])
    assert await redelivered(mosquitto_private, f"limit-{protocol}") == []  # (with the default limit, 1 MiB)


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr, ext = folder / "server.pem", folder / "server.key", folder / "server.csr", folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=edgegw test CA")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


async def test_tls_listener(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    ca, cert, key = make_certs(tmp_path)
    tls_port = free_port()
    conf = f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    broker = MosquittoBroker(tmp_path / "broker", extra_conf=conf)
    broker.start()
    try:
        # system CAs do not know the test CA: refused before any MQTT byte
        untrusted = counter_config(broker, "tls", port=tls_port, tls={})
        async with running(untrusted, Sink(), wait_connected=False) as adapter:
            await wait_for(lambda: any(r.levelno == logging.WARNING for r in caplog.records), what="the warning")
            assert not adapter.connected
        warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert warning.startswith(
            f"cannot reach the broker at mqtt://127.0.0.1:{tls_port}, got [SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed"
        ), warning
        sink = Sink()
        async with running(counter_config(broker, "tls", port=tls_port, tls={"ca_file": str(ca)}), sink) as adapter:
            await publish(broker, numbered(3))  # on the plain listener
            await wait_for(lambda: adapter.emitted == 3 and adapter.in_flight == 0, what="3 messages over TLS")
        assert sink.values() == [0, 1, 2]
    finally:
        broker.stop()


def short_keepalive(config: MqttAdapterConfig) -> MqttAdapterConfig:
    """keepalive_s 2, below the config's floor of 5 (which spares a broker needless pings), so that the waits
    for a broker's 1.5 x keepalive take seconds, not ten."""
    return config.model_copy(update={"keepalive_s": 2})


async def test_keepalive_pings_hold_an_idle_connection(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    sink = Sink()
    async with running(short_keepalive(counter_config(mosquitto_private, "idle")), sink) as adapter:
        # mosquitto drops a client silent for 1.5 x keepalive (3 s)
        await asyncio.sleep(3.5)
        await publish(mosquitto_private, numbered(1))
        await wait_for(lambda: adapter.emitted == 1, what="a message after the idle time")
    assert [r.getMessage() for r in caplog.records] == [
        f"connecting to mqtt://127.0.0.1:{mosquitto_private.port} as idle",
        "connected to the broker (session kept: False)",
    ]


async def test_a_full_window_outlives_the_keepalive(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # A slow buffer is not a dead broker: with reading paused the broker's PINGRESPs wait unread, yet
    # the adapter keeps pinging (mosquitto keeps us) and does not count the silence (we keep it).
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    sink = Sink(auto=False)
    config = short_keepalive(counter_config(mosquitto_private, "paused", max_inflight=2))
    async with running(config, sink) as adapter:
        await publish(mosquitto_private, numbered(4))
        await wait_for(lambda: adapter.received == 2, what="a full window")
        # past 1.5 x keepalive (3 s) on both sides; our silence check runs every keepalive / 2 (1 s)
        await asyncio.sleep(4.5)
        assert (adapter.connected, adapter.received, adapter.in_flight) == (True, 2, 2)
        sink.commit(0)
        sink.commit(1)
        await wait_for(lambda: adapter.received == 4, what="the rest after the acks")
        sink.commit(2)
        sink.commit(3)
        await wait_for(lambda: adapter.in_flight == 0, what="all acks")
    assert sink.values() == [0, 1, 2, 3]
    assert [r.getMessage() for r in caplog.records] == [
        f"connecting to mqtt://127.0.0.1:{mosquitto_private.port} as paused",
        "connected to the broker (session kept: False)",
    ]


async def test_unreachable_broker_is_logged_once(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    broker = MosquittoBroker(tmp_path / "never-started")  # a free port nobody listens on
    async with running(counter_config(broker, "nobody"), Sink(), wait_connected=False) as adapter:
        await asyncio.sleep(0.5)  # several attempts with reconnect_min_s = 0.1
        assert not adapter.connected
    assert [r.getMessage() for r in caplog.records] == [
        f"connecting to mqtt://127.0.0.1:{broker.port} as nobody",
        # the probe interval: reconnect_max_s = 0.5 here, below probe_s (2 s)
        f"cannot reach the broker at mqtt://127.0.0.1:{broker.port}, got [Errno 111] Connection refused; "
        "trying again every 0.5 s",
    ]


async def test_a_listener_that_is_not_mqtt_is_reported_once(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broker = MosquittoBroker(tmp_path / "unused", port=port)  # only for host and port
    try:
        async with running(counter_config(broker, "wrong-port"), Sink(), wait_connected=False) as adapter:
            await asyncio.sleep(0.5)  # several attempts
            assert not adapter.connected
    finally:
        server.close()
        await server.wait_closed()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"cannot reach the broker at mqtt://127.0.0.1:{port}, got mqtt: unexpected packet from the broker, got type 4 "
        "(first byte 0x48); trying again every 0.5 s"
    ]

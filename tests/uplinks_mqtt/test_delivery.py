"""MqttUplink against a real mosquitto: PUBACK-gated outcomes, outages, status and last will, splitting."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop
from gateway.uplinks.api import Fault, Outcome, Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.conftest import reading, subscribe

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

STATUS = "edgegw/gw-kumamoto-01/pref-mqtt/status"  # the default status_topic names the uplink
# mosquitto started as root drops to user `mosquitto` before reading acl/password/TLS files, which
# live under pytest's private tmp dir; this keeps it as the invoking user (no effect when not root).
KEEP_USER = "user root\n" if os.geteuid() == 0 else ""


def uplink(broker: MosquittoBroker, context: AdapterContext, **overrides: object) -> MqttUplink:
    conf = {
        "name": "pref-mqtt",
        "type": "mqtt",
        "host": broker.host,
        "port": broker.port,
        "apikey": "K3Y",
        "connect_timeout_s": 3,
        "ack_timeout_s": 5,
    }
    conf.update(overrides)
    return MqttUplink(MqttUplinkConfig.model_validate(conf), context)


def expand(ranges: str) -> list[int]:
    out: list[int] = []
    for part in ranges.split(","):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


async def test_delivered_after_puback_with_exact_topics_payloads_and_user_properties(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    up = uplink(mosquitto_private, context)
    batch = [
        reading("gauge1", at=60, seq=101, waterLevel=1.5),
        reading("gauge2", at=0, seq=102, waterLevel=0.25),
        reading("gauge1", at=0, seq=103, waterLevel=1.25),  # older: must come first in the array
    ]
    async with subscribe(mosquitto_private, "/K3Y/#") as sub:
        await up.start()
        outcomes = await up.deliver(batch)
        assert [o.status for o in outcomes] == [Status.DELIVERED] * 3
        got = await sub.wait(2)
        await up.close()
    by_topic = {m.topic: m for m in got}
    assert set(by_topic) == {"/K3Y/gauge1/attrs", "/K3Y/gauge2/attrs"}
    assert by_topic["/K3Y/gauge1/attrs"].payload == (
        b'[{"waterLevel":1.25,"TimeInstant":"2024-06-01T03:00:00.000Z"},'
        b'{"waterLevel":1.5,"TimeInstant":"2024-06-01T03:01:00.000Z"}]'
    )
    assert by_topic["/K3Y/gauge2/attrs"].payload == b'{"waterLevel":0.25,"TimeInstant":"2024-06-01T03:00:00.000Z"}'
    assert by_topic["/K3Y/gauge1/attrs"].user == {"gateway": "gw-kumamoto-01", "seq": "101,103"}
    assert by_topic["/K3Y/gauge2/attrs"].user == {"gateway": "gw-kumamoto-01", "seq": "102"}
    assert (up.counters.published, up.counters.acked, up.counters.reconnects) == (2, 2, 0)
    assert up.counters.bytes == sum(len(m.payload) for m in got)
    assert "confirmed" not in up.diagnostics()  # no [uplinks.confirm]: nothing to say about Orion
    assert up.diagnostics()["acked"] == 2


async def test_ultralight_topic_style_and_payload(mosquitto_private: MosquittoBroker, context: AdapterContext) -> None:
    up = uplink(mosquitto_private, context, format="iota-ul", topic_style="protocol", device_id="{adapter}-{device}")
    batch = [
        reading("g", at=1, seq=8, device="d1", waterLevel=2, state="ok"),
        reading("g", at=0, seq=7, device="d1", waterLevel=1.5, state="ok"),
        reading("g", at=0, seq=9, device="d2", state="a|b"),
    ]
    async with subscribe(mosquitto_private, "/ul/#") as sub:
        outcomes = await up.deliver(batch)
        (msg,) = await sub.wait(1)
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.DELIVERED, Status.REJECTED]
    assert outcomes[2].reason == (
        "g.state: UltraLight 2.0 values cannot be empty or contain '|', '#' or '@', "
        "got 'a|b'; use format = \"iota-json\" for free text"
    )
    assert msg.topic == "/ul/K3Y/sim-d1/attrs"
    assert msg.payload == (
        b"2024-06-01T03:00:00.000Z|waterLevel|1.5|state|ok#2024-06-01T03:00:01.000Z|waterLevel|2|state|ok"
    )
    assert msg.user["seq"] == "7-8"
    assert up.counters.rejected == 1


async def test_mqtt_311_delivers_without_user_properties(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    up = uplink(mosquitto_private, context, protocol="3.1.1", topic_style="protocol")
    async with subscribe(mosquitto_private, "/json/#") as sub:
        outcomes = await up.deliver([reading("gauge1", seq=5)])
        (msg,) = await sub.wait(1)
        await up.close()
    assert outcomes[0].status is Status.DELIVERED
    assert msg.topic == "/json/K3Y/gauge1/attrs"
    assert msg.user == {}


async def test_large_batches_split_and_oversized_reading_is_rejected(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    up = uplink(mosquitto_private, context, max_message_bytes=600)
    batch = [reading("gauge1", at=i, seq=i, waterLevel=i / 10) for i in range(30)]
    batch.append(reading("gauge1", at=99, seq=99, note="x" * 700))
    async with subscribe(mosquitto_private, "/K3Y/#") as sub:
        outcomes = await up.deliver(batch)
        await asyncio.sleep(0.2)
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 30 + [Status.REJECTED]
    assert outcomes[-1].reason == (
        "gauge1: message of 752 bytes exceeds max_message_bytes 600, got one reading too large to send; "
        "raise max_message_bytes (within the broker's limit) or split the reading at the source"
    )
    assert len(sub.messages) > 1
    assert all(len(m.payload) <= 600 for m in sub.messages)
    measures = [x for m in sub.messages for x in orjson.loads(m.payload)]
    assert [x["waterLevel"] for x in measures] == [i / 10 for i in range(30)]  # ascending across messages
    assert [s for m in sub.messages for s in expand(m.user["seq"])] == list(range(30))


async def test_retained_online_at_connect_and_offline_on_clean_close(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    up = uplink(mosquitto_private, context)
    await up.start()
    async with subscribe(mosquitto_private, STATUS) as sub:
        (online,) = await sub.wait(1)
        await up.close()
        await sub.wait(2)
    doc = orjson.loads(online.payload)
    assert online.retain is True  # a late subscriber gets the state from the retained copy
    assert (doc["gateway"], doc["state"]) == ("gw-kumamoto-01", "online")
    assert doc["time"].endswith("Z")
    async with subscribe(mosquitto_private, STATUS) as late:
        (retained,) = await late.wait(1)
    assert retained.retain is True
    assert orjson.loads(retained.payload)["state"] == "offline"
    assert orjson.loads(retained.payload)["reason"] == "closed"


CRASHER = """
import asyncio, sys
from gateway.adapter_api import AdapterContext
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
async def main():
    cfg = MqttUplinkConfig(name="pref-mqtt", type="mqtt", host="127.0.0.1", port=int(sys.argv[1]), apikey="K")
    up = MqttUplink(cfg, AdapterContext(gateway_id="gw-kumamoto-01", data_dir=sys.argv[2]))
    await up.start()
    print("up", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_gateway_process_is_killed(
    mosquitto_private: MosquittoBroker, context: AdapterContext, tmp_path: Path
) -> None:
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", CRASHER, str(mosquitto_private.port), str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert line == b"up\n"
        async with subscribe(mosquitto_private, STATUS) as sub:
            (online,) = await sub.wait(1)
            assert orjson.loads(online.payload)["state"] == "online"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            got = await sub.wait(2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    will = orjson.loads(got[1].payload)
    assert (will["gateway"], will["state"], will["reason"]) == ("gw-kumamoto-01", "offline", "connection lost")
    async with subscribe(mosquitto_private, STATUS) as late:
        (retained,) = await late.wait(1)
    assert orjson.loads(retained.payload)["state"] == "offline"


async def test_broker_stopped_mid_batch_gives_retry_for_unacked_then_delivers_after_restart(
    mosquitto_private: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    up = uplink(mosquitto_private, context, max_inflight=4, ack_timeout_s=20)
    batch = [reading(f"gauge{i}", seq=i + 1) for i in range(600)]  # one message each
    await up.start()

    async def stop_after_some_acks() -> None:
        while up.counters.acked < 20:
            await asyncio.sleep(0)
        mosquitto_private.stop()

    stopper = asyncio.create_task(stop_after_some_acks())
    started = time.monotonic()
    outcomes = await up.deliver(batch)
    elapsed = time.monotonic() - started
    await stopper
    delivered = [i for i, o in enumerate(outcomes) if o.status is Status.DELIVERED]
    retry = [i for i, o in enumerate(outcomes) if o.status is Status.RETRY]
    assert 20 <= len(delivered) < 600
    assert len(delivered) + len(retry) == 600
    assert len(delivered) == up.counters.acked
    assert elapsed < 10, "the loss must be noticed, not waited out until ack_timeout_s"
    assert outcomes[retry[0]].reason.startswith("connection lost before PUBACK")

    # down: the next deliver fails fast, logged once at WARNING
    again = await up.deliver([batch[i] for i in retry[:3]])
    assert {o.status for o in again} == {Status.RETRY}
    assert again[0].reason.startswith(f"broker 127.0.0.1:{mosquitto_private.port} unreachable: ")
    assert again[0].fault is Fault.UNREACHABLE  # no connection: the delivery loop probes within probe_s
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        warnings[0]
        .getMessage()
        .startswith(f"broker 127.0.0.1:{mosquitto_private.port} unreachable, readings stay buffered")
    )

    mosquitto_private.start()
    async with subscribe(mosquitto_private, "/K3Y/#") as sub:
        final = await up.deliver([batch[i] for i in retry])
        assert {o.status for o in final} == {Status.DELIVERED}
        await sub.wait(len(retry))
    await up.close()
    assert up.counters.reconnects == 1
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos.count(f"connected to 127.0.0.1:{mosquitto_private.port} as edgegw-gw-kumamoto-01-pref-mqtt") == 2


async def test_no_broker_at_start_is_not_an_error_and_retries(context: AdapterContext) -> None:
    from tests.support.ports import free_port

    cfg = MqttUplinkConfig(name="pref-mqtt", type="mqtt", host="127.0.0.1", port=free_port(), apikey="K")
    up = MqttUplink(cfg, context)
    await up.start()
    outcomes = await up.deliver([reading(seq=1)])
    assert outcomes[0].status is Status.RETRY
    assert "Connection refused" in outcomes[0].reason
    await up.close()


async def test_broker_refusing_by_acl_is_retried_not_delivered(tmp_path: Path, context: AdapterContext) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic write edgegw/#\n")  # the status topic only: measures are denied
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"acl_file {acl}\n{KEEP_USER}")
    broker.start()
    try:
        up = uplink(broker, context)
        outcomes = await up.deliver([reading(seq=1)])
        await up.close()
    finally:
        broker.stop()
    assert outcomes[0].status is Status.RETRY
    assert outcomes[0].reason == (
        "/K3Y/urn:ngsi-ld:WaterObserved:gauge1/attrs: broker refused the message, got PUBACK not authorized (0x87); "
        "check the broker's ACL for this uplink's username: it must allow publishing on that topic"
    )
    assert outcomes[0].fault is Fault.CONFIGURATION  # the broker's ACL, not an outage


async def test_connection_dropped_while_idle_reconnects_on_next_deliver(
    mosquitto_private: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    up = uplink(mosquitto_private, context)
    await up.start()
    mosquitto_private.restart()
    await asyncio.sleep(0.3)  # the watch notices the loss on its own and says so once
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    outcomes = await up.deliver([reading(seq=1)])
    assert outcomes[0].status is Status.DELIVERED
    assert up.counters.reconnects == 1
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING", "INFO"]
    await up.close()


async def test_a_status_publish_without_puback_says_so(
    mosquitto_private: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    # str(TimeoutError()) is empty: the reason used to read "status publish failed: "
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    async with PubAckProxy(mosquitto_private, pubacks_passed=0) as proxy:  # every PUBACK lost
        up = uplink(mosquitto_private, context, port=proxy.port, ack_timeout_s=0.3)
        await up.start()
        outcomes = await up.deliver([reading(seq=1)])
        await up.close()
    assert outcomes[0].status is Status.RETRY
    assert outcomes[0].reason == (
        f"broker 127.0.0.1:{proxy.port} unreachable: status publish failed: no PUBACK within 0.3 s"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.uplinks.mqtt"] == [
        f"broker 127.0.0.1:{proxy.port} unreachable, readings stay buffered: status publish failed: no PUBACK "
        "within 0.3 s"
    ]


async def test_the_mqtt_clients_log_lines_name_the_uplink(
    mosquitto_private: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.uplinks.mqtt.client")
    up = uplink(mosquitto_private, context)
    await up.start()
    await up.close()
    client_lines = [r for r in caplog.records if r.name == "gateway.uplinks.mqtt.client"]
    assert any(r.getMessage().startswith("Sending CONNECT") for r in client_lines)
    assert {getattr(r, "component", None) for r in client_lines} == {"pref-mqtt"}


async def test_delivery_resumes_within_probe_s_of_the_broker_coming_back(
    mosquitto_private: MosquittoBroker, context: AdapterContext, tmp_path: Path
) -> None:
    # issue 18: after an outage the first delivery comes within seconds, not after a backoff of up to a minute
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["m"])
    up = uplink(mosquitto_private, context, name="m", probe_s=0.3, retry_initial_s=1, retry_max_s=60)
    loop = DeliveryLoop(up, up.config, box)
    task = asyncio.create_task(loop.run())
    try:
        await box.append(reading(seq=None))
        async with asyncio.timeout(10):
            while loop.delivered < 1:
                await asyncio.sleep(0.01)
        mosquitto_private.stop()
        await box.append(reading(seq=None, at=1.0))
        await asyncio.sleep(3.0)  # backing off from 1 s with full jitter, the delay could now be up to 8 s
        await asyncio.to_thread(mosquitto_private.start)
        back = time.monotonic()
        async with asyncio.timeout(10):
            while loop.delivered < 2:
                await asyncio.sleep(0.01)
        assert time.monotonic() - back < 0.3 + 0.5  # one probe interval, the reconnect and the publish
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 10)
        await up.close()
        await box.close()


class PubAckProxy:
    """A TCP proxy between a client and a real broker that counts, on the wire, the QoS 1 PUBLISHes the
    broker has not answered with a PUBACK yet (and the most there ever were). It can also pass each
    PUBACK on `puback_delay_s` late, and stop passing them on after `pubacks_passed` (a broker gone
    mute, or the network fault that leaves a PUBACK missing)."""

    def __init__(self, broker: MosquittoBroker, *, puback_delay_s: float = 0.0, pubacks_passed: int = -1) -> None:
        self.broker = broker
        self.puback_delay_s = puback_delay_s
        self.pubacks_left = pubacks_passed  # -1: all of them
        self.unanswered: set[int] = set()
        self.most = 0
        self.published = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> PubAckProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(self.broker.host, self.broker.port)
        self._pumps += [
            asyncio.create_task(self._pump(client_r, broker_w, self._to_broker)),
            asyncio.create_task(self._pump(broker_r, client_w, self._to_client)),
        ]

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Callable[[int, bytes], Awaitable[bool]]
    ) -> None:
        try:
            while True:
                first = await reader.readexactly(1)
                length, shift, header = 0, 0, first
                while True:  # the remaining length, a variable byte integer
                    byte = await reader.readexactly(1)
                    header += byte
                    length |= (byte[0] & 0x7F) << shift
                    shift += 7
                    if not byte[0] & 0x80:
                        break
                body = await reader.readexactly(length)
                if await seen(first[0], body):  # counted before it is passed on: the peer cannot answer it earlier
                    writer.write(header + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _to_broker(self, first: int, body: bytes) -> bool:
        if first >> 4 == 3 and (first >> 1) & 3 == 1:  # PUBLISH at QoS 1: topic, then the packet id
            topic_len = int.from_bytes(body[:2], "big")
            self.unanswered.add(int.from_bytes(body[2 + topic_len : 4 + topic_len], "big"))
            self.published += 1
            self.most = max(self.most, len(self.unanswered))
        return True

    async def _to_client(self, first: int, body: bytes) -> bool:
        if first >> 4 != 4:  # not a PUBACK
            return True
        if not self.pubacks_left:
            return False
        self.pubacks_left -= 1
        await asyncio.sleep(self.puback_delay_s)
        self.unanswered.discard(int.from_bytes(body[:2], "big"))
        return True


async def deliver_timed(up: MqttUplink, count: int) -> tuple[list[Outcome], float]:
    """Start the uplink, deliver `count` readings of as many devices (a message each), close; and how long it took."""
    await up.start()
    started = time.monotonic()
    outcomes = await up.deliver([reading(f"gauge{i}", seq=i + 1) for i in range(count)])
    elapsed = time.monotonic() - started
    await up.close()
    return outcomes, elapsed


async def stopped_mid_batch(broker: MosquittoBroker, context: AdapterContext, wire: PubAckProxy) -> MqttUplink:
    """An uplink through `wire` (window of 2, ack_timeout_s 0.3) that started a batch, cancelled as the
    gateway stopping does once the status message and the window's two were out."""
    up = uplink(broker, context, port=wire.port, max_inflight=2, ack_timeout_s=0.3)
    await up.start()
    delivering = asyncio.ensure_future(up.deliver([reading(f"gauge{i}", seq=i + 1) for i in range(4)]))
    async with asyncio.timeout(3):
        while wire.published < 3:
            await asyncio.sleep(0.01)
    delivering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivering
    return up


async def test_a_batch_larger_than_the_brokers_receive_maximum_goes_out_within_it(
    tmp_path: Path, context: AdapterContext
) -> None:
    # stock mosquitto gives MQTT 5 clients a Receive Maximum of max_inflight_messages (20 by default);
    # a client must not have more QoS 1 messages unanswered (MQTT-3.3.4-7), whatever max_inflight says
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"max_inflight_messages 5\n{KEEP_USER}")
    broker.start()
    try:
        async with PubAckProxy(broker) as wire, subscribe(broker, "/K3Y/#") as sub:
            up = uplink(broker, context, port=wire.port, max_inflight=100)
            await up.start()
            batch = [reading(f"gauge{i}", seq=i + 1) for i in range(60)]  # one message each
            outcomes = await up.deliver(batch)
            got = await sub.wait(60)
            await up.close()
    finally:
        broker.stop()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 60
    assert sorted(m.topic for m in got) == sorted(f"/K3Y/gauge{i}/attrs" for i in range(60))
    assert wire.published == 62  # the batch and the status messages (online, offline)
    assert wire.most == 5  # the window was kept full, and never overfull


async def test_a_batch_slower_than_ack_timeout_still_delivers_while_pubacks_keep_coming(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    # ack_timeout_s bounds the broker's silence, not the batch: 12 messages one at a time, each
    # PUBACK 0.1 s late, take ~1.2 s against an ack_timeout_s of 0.5 s
    async with PubAckProxy(mosquitto_private, puback_delay_s=0.1) as wire:
        up = uplink(mosquitto_private, context, port=wire.port, max_inflight=1, ack_timeout_s=0.5)
        outcomes, elapsed = await deliver_timed(up, 12)
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 12
    assert elapsed > 1.0 and wire.most == 1


async def test_a_broker_gone_mute_mid_batch_ends_it_after_ack_timeout(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    # status "online" and two messages are answered, then nothing: the window's two wait out
    # ack_timeout_s, the rest were never sent
    async with PubAckProxy(mosquitto_private, pubacks_passed=3) as wire:
        up = uplink(mosquitto_private, context, port=wire.port, max_inflight=2, ack_timeout_s=0.5)
        outcomes, elapsed = await deliver_timed(up, 8)
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 2 + [Status.RETRY] * 6
    assert [o.reason for o in outcomes[2:]] == ["no PUBACK within 0.5 s"] * 2 + ["not sent"] * 4
    assert 0.5 <= elapsed < 2.0
    assert wire.published == 5  # online, then the two answered and the two of the full window


async def test_batches_leave_no_reference_cycles_behind(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    # The gateway runs with its cyclic collector nearly off (gateway/app.py): a cycle made per batch
    # (a timer whose callback holds its own handle did) is memory that grows until a rare collection.
    up = uplink(mosquitto_private, context, max_inflight=3)  # pipelined: more messages than the window
    await up.start()
    batch = [reading(f"gauge{i}", seq=i + 1) for i in range(10)]
    await up.deliver(batch)  # caches and the connection made before counting
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            assert {o.status for o in await up.deliver(batch)} == {Status.DELIVERED}
        assert gc.collect() == 0
    finally:
        gc.enable()
        await up.close()


async def test_close_ends_when_a_mute_broker_holds_the_whole_window(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    # the gateway stops mid-batch: the window's two messages stay unanswered, and the broker is mute;
    # the "offline" status publish must give up after its timeout, not wait for room for ever
    async with PubAckProxy(mosquitto_private, pubacks_passed=1) as wire:
        up = await stopped_mid_batch(mosquitto_private, context, wire)
        started = time.monotonic()
        await asyncio.wait_for(up.close(), 3)
        assert time.monotonic() - started < 2
    assert wire.published == 3  # "offline" never found room: the broker still counts the two


async def test_a_batch_finding_the_window_held_by_a_mute_broker_ends_after_ack_timeout(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    async with PubAckProxy(mosquitto_private, pubacks_passed=1) as wire:
        up = await stopped_mid_batch(mosquitto_private, context, wire)
        started = time.monotonic()
        outcomes = await asyncio.wait_for(up.deliver([reading("gauge9", seq=9)]), 3)
        assert time.monotonic() - started < 2
        await up.close()
    assert [(o.status, o.reason) for o in outcomes] == [(Status.RETRY, "no PUBACK within 0.3 s")]

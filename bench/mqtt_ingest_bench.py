"""MQTT ingest rate: a bare paho subscriber vs the mqtt adapter committing into the real outbox, same broker, same run.

Each round queues N QoS 1 messages for a persistent session while its subscriber is away, then
measures how fast the subscriber drains them (the three sessions get the same messages):
  (a) bare paho (auto-ack, a counter in on_message, no other work): the reference of the target;
  (b) MqttAdapter: its own asyncio MQTT client (`gateway/mqtt/packets.py`), JSON → Reading mapping,
      emit into `gateway.buffer.outbox.Outbox` (group commit, durability from BufferConfig, fsync per
      group with "full"), PUBACK only after the commit;
  (c) the adapter's transport alone: the same asyncio client and packet reader, a counter and an
      immediate PUBACK, no mapping and no buffer; what (b) would reach if both cost nothing.
The process runs as the gateway's does (`gateway.app.tune_runtime`: the start-up objects frozen out of
the cyclic GC, a young-generation threshold a burst does not cross on its own; without it each of
the ~10 objects a message allocates pays for GC passes over the whole import graph); the bare
subscriber shares the process and so the same settings. `--untuned` measures both without them.
Prints the rates, (b)/(a) (target ≥ 100 %, issue 10), the CPU each costs a message, and (b)/(c), with the load average before and after:
other processes on the machine move all figures, so compare the ratios within one run.

    .venv/bin/python bench/mqtt_ingest_bench.py [-n 20000] [--rounds 3] [--durability full|normal] [--untuned] [--no-flush]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from adapters.mqtt.adapter import MqttAdapter  # noqa: E402
from adapters.mqtt.config import MqttAdapterConfig  # noqa: E402
from gateway.adapter_api import AdapterContext  # noqa: E402
from gateway.app import tune_runtime  # noqa: E402
from gateway.buffer.config import BufferConfig, Durability  # noqa: E402
from gateway.buffer.outbox import Outbox  # noqa: E402
from gateway.mqtt.packets import (  # noqa: E402
    DISCONNECT_PACKET,
    ConnAck,
    PacketReader,
    Publish,
    encode_connect,
    encode_puback,
    encode_subscribe,
)
from gateway.records import Reading  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

TOPIC_FILTER = "application/+/device/+/event/up"
NO_FLUSH = False  # --no-flush: the emit ignores the adapter's flush (the group waits for its quiet time)


def payload(i: int) -> bytes:
    """A ChirpStack-v4-shaped uplink, trimmed to the fields a real one always has."""
    return json.dumps(
        {
            "deduplicationId": f"3ac7e3c4-4401-4b8d-9386-{i:012d}",
            "time": "2024-05-01T03:00:00.123456789+00:00",
            "deviceInfo": {"deviceName": f"th-{i % 50:02d}", "devEui": f"0004a30b001c{i % 50:04x}"},
            "fCnt": i,
            "fPort": 2,
            "object": {"temperature": 21.5 + (i % 10) / 10, "humidity": 63, "batteryMv": 3012},
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -97, "snr": 7.2}],
        }
    ).encode()


def topic(i: int) -> str:
    return f"application/river/device/0004a30b001c{i % 50:04x}/event/up"


def connect_props(session_expiry: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    return props


def publish_all(broker: MosquittoBroker, n: int) -> float:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    t0 = time.perf_counter()
    infos = [client.publish(topic(i), payload(i), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(timeout=60)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return n / elapsed


class BareSubscriber:
    """paho with its defaults (auto-ack after on_message), counting messages."""

    def __init__(self, broker: MosquittoBroker, client_id: str) -> None:
        self.broker = broker
        self.client_id = client_id
        self.count = 0
        self.done = threading.Event()
        self.target = 0

    def _client(self) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)

        def on_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
            self.count += 1
            if self.count >= self.target:
                self.done.set()

        client.on_message = on_message
        return client

    def create_session(self) -> None:
        client = self._client()
        client.connect(self.broker.host, self.broker.port, clean_start=False, properties=connect_props(3600))
        client.loop_start()
        client.subscribe(TOPIC_FILTER, qos=1)[1]
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()

    def drain(self, n: int) -> float:
        self.count, self.target = 0, n
        self.done.clear()
        client = self._client()
        t0 = time.perf_counter()
        client.connect(self.broker.host, self.broker.port, clean_start=False, properties=connect_props(3600))
        client.loop_start()
        if not self.done.wait(timeout=300):
            raise RuntimeError(f"bare subscriber got {self.count} of {n}")
        elapsed = time.perf_counter() - t0
        client.disconnect()
        client.loop_stop()
        return n / elapsed


class TransportOnly(asyncio.Protocol):
    """(c): the adapter's packet reader on an asyncio connection, counting and acking at once."""

    def __init__(self, client_id: str, target: int, done: asyncio.Future[None]) -> None:
        self.client_id, self.target, self.done = client_id, target, done
        self.reader = PacketReader(v5=True)
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            encode_connect(
                client_id=self.client_id, keepalive_s=60, v5=True, session_expiry_s=3600, receive_maximum=1000
            )
        )

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.reader.feed(data)
        acks = bytearray()
        while (packet := self.reader.next()) is not None:
            if type(packet) is Publish:
                self.count += 1
                if packet.qos:
                    acks += encode_puback(packet.packet_id)
            elif type(packet) is ConnAck:
                self.transport.write(encode_subscribe(1, [TOPIC_FILTER], v5=True))
        if acks:
            self.transport.write(acks)
        if self.count >= self.target and not self.done.done():
            self.done.set_result(None)


async def transport_round(broker: MosquittoBroker, client_id: str, n: int) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    t0 = time.perf_counter()
    transport, _ = await loop.create_connection(lambda: TransportOnly(client_id, n, done), broker.host, broker.port)
    if n:
        await asyncio.wait_for(done, 300)
    else:
        await asyncio.sleep(0.3)  # creates the session and its subscription
    elapsed = time.perf_counter() - t0
    transport.write(DISCONNECT_PACKET)
    transport.close()
    return n / elapsed


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def adapter_config(broker: MosquittoBroker, client_id: str, max_inflight: int) -> MqttAdapterConfig:
    return MqttAdapterConfig.model_validate(
        {
            "name": "bench",
            "type": "mqtt",
            "host": broker.host,
            "port": broker.port,
            "client_id": client_id,
            "max_inflight": max_inflight,
            "subscriptions": [
                {
                    "topic": TOPIC_FILTER,
                    "entity_id": "urn:ngsi-ld:WeatherObserved:{payload.deviceInfo.devEui}",
                    "entity_type": "WeatherObserved",
                    "timestamp": {"path": "time"},
                    "attributes": [
                        {"path": "object.temperature", "name": "temperature", "unit": "CEL"},
                        {"path": "object.humidity", "name": "relativeHumidity", "unit": "P1"},
                        {"path": "object.batteryMv", "name": "batteryVoltage", "unit": "VLT", "scale": 0.001},
                        {"path": "rxInfo[0].rssi", "name": "rssi"},
                    ],
                }
            ],
        }
    )


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


class GatewayEmit:
    """The emit the gateway hands an adapter (gateway.supervisor): one reading, a burst with `.many`, and
    `.flush` when the adapter sends nothing more until a commit; here straight into the outbox (the
    bench's readings need neither processing nor checks)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def __call__(self, reading: Reading) -> Awaitable[None]:
        return self._outbox.append(reading)

    def many(self, readings: Sequence[Reading]) -> Awaitable[None]:
        return self._outbox.append_many(readings)

    def flush(self) -> None:
        if not NO_FLUSH:
            self._outbox.seal()


async def adapter_round(
    broker: MosquittoBroker, config: MqttAdapterConfig, outbox: Outbox, n: int, create_only: bool = False
) -> float:
    adapter = MqttAdapter(config, AdapterContext(gateway_id="bench", data_dir=str(ROOT)))
    t0 = time.perf_counter()
    task = asyncio.create_task(adapter.run(GatewayEmit(outbox)))
    try:
        if create_only:
            await wait_until(lambda: adapter.connected, 10, "the adapter to subscribe")
            return 0.0
        await wait_until(lambda: adapter.emitted >= n and adapter.in_flight == 0, 300, f"{n} commits")
        elapsed = time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if adapter.malformed:
        raise RuntimeError(f"unexpected malformed messages: {dict(adapter.malformed)}")
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", choices=[d.value for d in Durability], default="full")
    parser.add_argument("--max-inflight", type=int, default=1000, help="the adapter's max_inflight")
    parser.add_argument("--untuned", action="store_true", help="leave the GC and malloc as Python starts them")
    parser.add_argument("--no-flush", action="store_true", help="commit groups ignore a full receive window")
    args = parser.parse_args()
    global NO_FLUSH
    NO_FLUSH = args.no_flush
    if not args.untuned:
        tune_runtime()

    load_before = load()
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as tmp:
        broker = MosquittoBroker(Path(tmp) / "broker")
        broker.start()
        buffer_config = BufferConfig(durability=Durability(args.durability))
        outbox = await Outbox.open(Path(tmp) / "outbox.db", buffer_config, uplinks=["bench"])
        try:
            bare = BareSubscriber(broker, "bench-bare")
            bare.create_session()
            config = adapter_config(broker, "bench-adapter", args.max_inflight)
            await adapter_round(broker, config, outbox, 0, create_only=True)
            await transport_round(broker, "bench-transport", 0)
            bare_rates, adapter_rates, transport_rates = [], [], []
            bare_cpu, adapter_cpu = [], []
            for r in range(args.rounds):
                pub = await asyncio.to_thread(publish_all, broker, args.n)  # queued for all three sessions
                cpu = time.process_time()
                bare_rates.append(await asyncio.to_thread(bare.drain, args.n))
                bare_cpu.append((time.process_time() - cpu) / args.n * 1e6)
                cpu = time.process_time()
                adapter_rates.append(await adapter_round(broker, config, outbox, args.n))
                adapter_cpu.append((time.process_time() - cpu) / args.n * 1e6)
                transport_rates.append(await transport_round(broker, "bench-transport", args.n))
                print(
                    f"round {r + 1}: publish {pub:,.0f} msg/s | bare paho {bare_rates[-1]:,.0f} msg/s | "
                    f"adapter+outbox {adapter_rates[-1]:,.0f} msg/s | transport only {transport_rates[-1]:,.0f} msg/s "
                    f"| ratio {adapter_rates[-1] / bare_rates[-1]:.1%}",
                    flush=True,
                )
        finally:
            await outbox.close()
            broker.stop()
    b, a, t = statistics.median(bare_rates), statistics.median(adapter_rates), statistics.median(transport_rates)
    print(
        f"\nmqtt ingest, {args.n:,} QoS1 messages x {args.rounds} rounds, medians "
        f"(outbox durability={args.durability}, commit_interval_ms={buffer_config.commit_interval_ms}, "
        f"max_inflight={args.max_inflight}, {'untuned' if args.untuned else 'tuned as the gateway'}{', no flush' if args.no_flush else ''})"
    )
    cpu_a, cpu_b = statistics.median(bare_cpu), statistics.median(adapter_cpu)
    print(f"  (a) bare paho subscriber : {b:10,.0f} msg/s   {cpu_a:5.1f} µs CPU a message")
    print(f"  (b) MqttAdapter + Outbox : {a:10,.0f} msg/s   {cpu_b:5.1f} µs CPU a message (all threads)")
    print(f"  (c) adapter transport only: {t:9,.0f} msg/s")
    print(f"  ratio (b)/(a)            : {a / b:10.1%}   (target >= 100%)")
    print(f"  CPU ratio (a)/(b)        : {cpu_a / cpu_b:10.1%}   (the rate ratio on an otherwise idle core)")
    print(f"  ratio (b)/(c)            : {a / t:10.1%}   (the rest of (b)'s time is mapping, buffer and acks)")
    print(f"  {load_before} before, {load()} after (2 cores)")


if __name__ == "__main__":
    asyncio.run(main())

"""The uplink within an MQTT 5 broker's Maximum Packet Size (CONNACK property 0x27, mosquitto's max_packet_size).

The review's finding: a backlog's multi-measure message over the broker's limit got "DISCONNECT Packet
too large" at every attempt (delivered 0 of 212, 51 reconnects in 12 s, the will flipping the status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import struct
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.mqtt.packets import CONNECT, PUBLISH, SUBSCRIBE, encode_puback, encode_publish
from gateway.ngsi import iota
from gateway.records import Attribute, Command, CommandResult, Reading, Source
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.uplinks.mqtt.commands import MqttCommandListener
from gateway.uplinks.mqtt.planning import PropertyPacker
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.conftest import T0, reading, subscribe

pytestmark = pytest.mark.both_loops


def measures(payload: bytes) -> list[dict[str, Any]]:
    """The measures of an iota-json message: a multi-measure array, or one measure alone."""
    doc = orjson.loads(payload)
    return doc if isinstance(doc, list) else [doc]


KEEP_USER = "user root\n" if os.geteuid() == 0 else ""
LIMIT = 2000
GATEWAY = "gw-kumamoto-01"
# The planner bounds a PUBLISH's size: its length fields counted at their longest, the `seq` property's
# head counted also when a message has no seqs. A reading it refuses is at most this much under the limit.
SLACK = 16


def uplink(host: str, port: int, context: AdapterContext, **overrides: object) -> MqttUplink:
    conf = {
        "name": "pref-mqtt",
        "type": "mqtt",
        "host": host,
        "port": port,
        "apikey": "K3Y",
        "connect_timeout_s": 3,
        "ack_timeout_s": 5,
    }
    return MqttUplink(MqttUplinkConfig.model_validate(conf | overrides), context)


@pytest.fixture
def small_packet_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"max_packet_size {LIMIT}\n{KEEP_USER}")
    broker.start()
    yield broker
    broker.stop()


def lone_packet(r: Reading) -> int:
    """The size of the PUBLISH of this reading alone, as the uplink sends it (iota-json, MQTT 5)."""
    properties = PropertyPacker("application/json", GATEWAY).pack(str(r.seq))
    payload = iota.json_measure_bytes(r, sequence=None)
    return len(encode_publish(f"/K3Y/{r.entity_id}/attrs", payload, qos=1, packet_id=1, v5=True, properties=properties))


async def test_a_backlog_goes_out_within_the_brokers_maximum_packet_size(
    small_packet_broker: MosquittoBroker, context: AdapterContext
) -> None:
    up = uplink(small_packet_broker.host, small_packet_broker.port, context)
    backlog = [reading("gauge1", at=i, seq=i + 1, waterLevel=float(i)) for i in range(200)]  # ~12 KB in one
    big = reading("gauge2", at=0, seq=201, note="a" * 2500)  # below max_message_bytes, above the broker's limit
    async with subscribe(small_packet_broker, "#") as sub:
        await up.start()
        outcomes = await up.deliver([*backlog, big])
        async with asyncio.timeout(5):
            while sum(len(measures(m.payload)) for m in sub.on("/K3Y/gauge1/attrs")) < 200:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # anything else on its way (nothing should be)
        await up.close()
        await sub.wait(2, topic_prefix=f"edgegw/{GATEWAY}/")  # "online" and the closing "offline"
    assert [o.status for o in outcomes[:200]] == [Status.DELIVERED] * 200
    assert outcomes[200].status is Status.REJECTED
    found = re.fullmatch(
        r"gauge2: the broker takes MQTT packets of at most 2000 bytes \(the Maximum Packet Size of its CONNACK\), "
        r"got one reading whose message alone would be up to (\d+) bytes; raise the broker's max_packet_size or "
        r"split the reading at the source",
        outcomes[200].reason,
    )
    assert found, outcomes[200].reason
    assert lone_packet(big) <= int(found.group(1)) <= lone_packet(big) + SLACK
    values = [m["waterLevel"] for msg in sub.on("/K3Y/gauge1/attrs") for m in measures(msg.payload)]
    assert values == [float(i) for i in range(200)]  # all of them, once, in order
    assert len(sub.on("/K3Y/gauge1/attrs")) > 1
    assert sub.on("/K3Y/gauge2/attrs") == []
    assert up.counters.reconnects == 0
    docs = [orjson.loads(m.payload) for m in sub.on(f"edgegw/{GATEWAY}/pref-mqtt/status")]
    # the will ("connection lost") never fired: the one "offline" is the uplink's own at close
    assert [(d["state"], d.get("reason")) for d in docs] == [("online", None), ("offline", "closed")]


def measured_reading(entity: str, seq: int | None, at: int, sizes: list[int]) -> Reading:
    attrs = {f"a{k}": Attribute(value="v" * n if n % 2 else float(n)) for k, n in enumerate(sizes)}
    return Reading(
        entity_id=entity,
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=T0 + timedelta(seconds=at),
        source=Source(adapter="sim"),
        seq=seq,
    )


@st.composite
def batches(draw: st.DrawFn) -> list[Reading]:
    count = draw(st.integers(1, 60))
    seqs = sorted(draw(st.sets(st.integers(1, 10**9), min_size=count, max_size=count)))  # gaps: ranges split
    no_seq = draw(st.booleans())
    return [
        measured_reading(
            draw(st.sampled_from(["g1", "gauge-with-a-longer-id-2"])),
            None if no_seq else seq,
            draw(st.integers(0, 10_000)),
            draw(st.lists(st.integers(0, 900), min_size=1, max_size=4)),
        )
        for seq in seqs
    ]


@settings(max_examples=150, deadline=None)
@given(
    batch=batches(),
    limit=st.integers(200, 6000),
    fmt=st.sampled_from(["iota-json", "iota-ul", "ngsi-v2"]),
    protocol=st.sampled_from(["5", "3.1.1"]),
)
def test_every_planned_message_fits_the_brokers_maximum_packet_size(
    batch: list[Reading], limit: int, fmt: str, protocol: str
) -> None:
    context = AdapterContext(gateway_id=GATEWAY, data_dir="/nonexistent")
    extra: dict[str, Any] = {} if fmt == "ngsi-v2" else {"apikey": "K3Y"}
    up = uplink("127.0.0.1", 1883, context, format=fmt, protocol=protocol, **extra)
    messages, rejected = up._plan(batch, limit)

    def packet(topic: str, payload: bytes, properties: bytes) -> int:
        return len(encode_publish(topic, payload, qos=1, packet_id=65_535, v5=protocol == "5", properties=properties))

    for m in messages:  # the PUBLISH exactly as the uplink sends it
        assert packet(m.topic, m.payload, up._properties(m)) <= limit
    planned = sorted([i for m in messages for i in m.indices] + list(rejected))
    assert planned == list(range(len(batch)))  # each reading once: sent or rejected
    for i, reason in rejected.items():
        assert "the broker takes MQTT packets of at most" in reason, reason
        [alone] = up._plan([batch[i]])[0]  # planned without the broker's limit
        assert packet(alone.topic, alone.payload, up._properties(alone)) > limit - SLACK


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return first, await reader.readexactly(length)


class SmallBroker:
    """Announces a Maximum Packet Size in its CONNACK and records the size of each packet after it; it
    acknowledges every QoS 1 PUBLISH and refuses nothing (so a client's own discipline is what is seen)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[tuple[int, int]] = []  # (packet type, bytes) after CONNECT
        self.topics: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        props = b"\x27" + struct.pack("!I", self.limit)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first, body = await read_packet(reader)
                kind = first >> 4
                if kind == CONNECT:
                    writer.write(bytes((0x20, 3 + len(props), 0, 0, len(props))) + props)
                    continue
                self.sizes.append((kind, 2 + len(body) if len(body) < 128 else 3 + len(body)))
                if kind == PUBLISH:
                    self.topics.append(body[2 : 2 + ((body[0] << 8) | body[1])].decode())
                    if first & 0x06:
                        at = 2 + ((body[0] << 8) | body[1])
                        writer.write(encode_puback((body[at] << 8) | body[at + 1]))
                elif kind == SUBSCRIBE:
                    writer.write(b"\x90\x04" + body[:2] + b"\x00\x01")
        writer.close()


@contextlib.asynccontextmanager
async def small_broker(limit: int) -> AsyncIterator[tuple[SmallBroker, int]]:
    broker = SmallBroker(limit)
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    try:
        yield broker, server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_status_message_over_the_limit_is_not_sent_and_readings_still_go(
    context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.mqtt")
    status_topic = "edgegw/{gateway_id}/{uplink}/status/" + "s" * 300
    async with small_broker(300) as (broker, port):
        up = uplink("127.0.0.1", port, context, status_topic=status_topic)
        await up.start()
        [outcome] = await up.deliver([reading("gauge1", seq=1)])
        await up.close()  # its "offline" does not fit either: not sent, and no error
    assert outcome.status is Status.DELIVERED
    assert broker.topics == ["/K3Y/gauge1/attrs"]
    assert max(size for _, size in broker.sizes) <= 300
    topic = status_topic.format(gateway_id=GATEWAY, uplink="pref-mqtt")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert re.fullmatch(
        f"status message on {topic} not published: mqtt: the broker takes packets of at most 300 bytes "
        r"\(the Maximum Packet Size in its CONNACK\), got a PUBLISH of \d+ bytes; not sent",
        warnings[0],
    ), warnings


async def test_a_command_answer_over_the_limit_is_cut_to_fit(
    small_packet_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # It went without its text (`OK: result text of 3000 characters left out: …`) before answers refused with
    # PUBACK 0x95 were cut to fit; now the announced limit cuts the same way, keeping as much text as fits
    caplog.set_level(logging.DEBUG, logger="gateway.uplinks.mqtt.commands")
    config = MqttUplinkConfig.model_validate(
        {
            "name": "pref-mqtt",
            "type": "mqtt",
            "host": small_packet_broker.host,
            "port": small_packet_broker.port,
            "apikey": "K3Y",
            "commands": "on",
        }
    )

    async def dispatch(command: Command) -> CommandResult:
        info = "x" * 3000 if command.name == "report" else "done"
        return CommandResult(command_id=command.command_id, ok=True, info=info)

    listener = MqttCommandListener(
        config, AdapterContext(gateway_id=GATEWAY, data_dir="/nonexistent"), dispatch, entity_of=lambda d: d
    )
    listener.start()
    try:
        await listener.wait_connected(5)
        async with subscribe(small_packet_broker, "/K3Y/dev1/cmdexe") as sub:
            for name in ("report", "report", "relay_1"):
                await sub.client.publish("/K3Y/dev1/cmd", orjson.dumps({name: True}), qos=1)
            got = await sub.wait(3)
    finally:
        await listener.stop()

    def packet(payload: bytes) -> int:
        return len(encode_publish("/K3Y/dev1/cmdexe", payload, qos=1, packet_id=1, v5=True))

    cut = [re.fullmatch(rb'\{"report":"OK: (x+) \[(\d+) characters cut\]"\}', m.payload) for m in got[:2]]
    assert all(c is not None and len(c.group(1)) + int(c.group(2)) == 3000 for c in cut), got
    assert got[0].payload == got[1].payload and LIMIT - 8 < packet(got[0].payload) <= LIMIT
    assert got[2].payload == b'{"relay_1":"OK: done"}'
    c = listener.counters
    assert (c.results_published, c.results_shortened, c.results_lost, c.reconnects) == (3, 2, 0, 0)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "sent cut" in r.getMessage()]
    answer = packet(b'{"report":"OK: ' + b"x" * 3000 + b'"}')
    shortened = (
        f"result for device dev1 sent cut to a PUBLISH of {packet(got[0].payload)} bytes: the broker takes packets "
        f"of at most 2000 bytes (the Maximum Packet Size in its CONNACK), got the answer's PUBLISH of {answer} "
        "bytes on /K3Y/dev1/cmdexe; raise the broker's max_packet_size for whole answers"
    )
    assert said == [("WARNING", shortened), ("DEBUG", shortened)]  # the first time at WARNING

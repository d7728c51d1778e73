"""The command listener under a flood, against a broker that acknowledges nothing: tasks stay bounded by
max_pending and REFUSAL_REPLIES, and each spell is logged once (mosquitto always acknowledges, so the
broker here is a raw socket that speaks just enough MQTT 5)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.adapter_api import AdapterContext
from gateway.mqtt.packets import PUBLISH, SUBSCRIBE, encode_puback, encode_publish
from gateway.records import Command, CommandResult
from gateway.uplinks.mqtt import MqttUplinkConfig
from gateway.uplinks.mqtt.commands import REFUSAL_REPLIES, MqttCommandListener

CONTEXT = AdapterContext(gateway_id="gw1", data_dir="/nonexistent")
LOGGER = "gateway.uplinks.mqtt.commands"
MAX_PENDING = 8
FLOOD = 3_000


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return first, await reader.readexactly(length)


class StuckBroker:
    """Grants the listener's subscriptions, then acknowledges none of its results until `ack_all()`."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.unacked: list[int] = []
        self.results = 0
        self.acking = False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_packet(reader)  # CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first, body = await read_packet(reader)
                if first >> 4 == SUBSCRIBE:
                    writer.write(b"\x90\x04" + body[:2] + b"\x00\x01")  # SUBACK: granted QoS 1
                    self.writer = writer
                elif first >> 4 == PUBLISH:  # a result, at QoS 1: topic, then the packet id
                    self.results += 1
                    at = 2 + ((body[0] << 8) | body[1])
                    packet_id = (body[at] << 8) | body[at + 1]
                    if self.acking:
                        writer.write(encode_puback(packet_id))
                    else:
                        self.unacked.append(packet_id)
        writer.close()

    def send(self, payloads: list[bytes], topic: str = "/K3Y/dev1/cmd") -> None:
        assert self.writer is not None
        self.writer.write(b"".join(encode_publish(topic, p, qos=0, v5=True) for p in payloads))

    def ack_all(self) -> None:
        assert self.writer is not None
        self.acking = True
        self.writer.write(b"".join(encode_puback(pid) for pid in self.unacked))
        self.unacked.clear()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def flooded(release: asyncio.Event) -> AsyncIterator[tuple[MqttCommandListener, StuckBroker, int]]:
    """A listener on a StuckBroker whose commands run until `release`; also the tasks there were before."""
    broker = StuckBroker()
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    config = MqttUplinkConfig.model_validate(
        {"name": "u", "type": "mqtt", "host": "127.0.0.1", "port": server.sockets[0].getsockname()[1], "apikey": "K3Y"}
    )

    async def dispatch(command: Command) -> CommandResult:
        await release.wait()
        return CommandResult(command_id=command.command_id, ok=True, info="done")

    before = len(asyncio.all_tasks())
    listener = MqttCommandListener(config, CONTEXT, dispatch, entity_of=lambda d: d, max_pending=MAX_PENDING)
    listener.start()
    try:
        await listener.wait_connected(5)
        await until(lambda: broker.writer is not None, "the subscriptions")
        yield listener, broker, before
    finally:
        await listener.stop()
        server.close()


async def test_a_flood_of_commands_to_a_broker_that_never_acknowledges_stays_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The review's finding: 20,000 commands gave 20,000 tasks, each waiting up to ack_timeout_s (30 s) for
    # a PUBACK, and 20,000 WARNING lines.
    caplog.set_level(logging.INFO, logger=LOGGER)
    release = asyncio.Event()
    async with flooded(release) as (listener, broker, before):
        broker.send([b'{"relay_1": true}'] * FLOOD)
        await until(lambda: listener.counters.received == FLOOD, "the flood")
        # nothing finishes meanwhile (the commands wait, the broker acknowledges nothing): this is the peak
        # besides: the listener's run task, its client's keepalive task and the test broker's connection
        assert len(asyncio.all_tasks()) - before == MAX_PENDING + REFUSAL_REPLIES + 3
        c = listener.counters
        assert (c.commands, c.busy, c.unanswered) == (
            MAX_PENDING,
            FLOOD - MAX_PENDING,
            FLOOD - MAX_PENDING - REFUSAL_REPLIES,
        )
        await until(lambda: broker.results == REFUSAL_REPLIES, "the busy results that could go")
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings == [
            "command for device dev1 refused: gateway busy: 8 command messages in progress, got one more; send it "
            "again later; further refusals are counted, until one is taken again"
        ]
        # the broker acknowledges again and the commands finish: the next one is taken, and the spell ends
        release.set()
        broker.ack_all()
        await until(lambda: listener.counters.results_published == REFUSAL_REPLIES + MAX_PENDING, "the results")
        broker.send([b'{"relay_2": true}'])
        await until(lambda: listener.counters.commands == MAX_PENDING + 1, "one more command taken")
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "taking" in r.getMessage()]
    assert infos == [f"taking commands again; {FLOOD - MAX_PENDING} refused while busy"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == warnings


async def test_a_flood_of_malformed_commands_is_answered_within_the_bound_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    release = asyncio.Event()
    async with flooded(release) as (listener, broker, before):
        # a command name can be read, so each one is answered with an error, if there is room
        broker.send([b'{"": 1, "relay_4": true}'] * FLOOD)
        await until(lambda: listener.counters.received == FLOOD, "the flood")
        assert len(asyncio.all_tasks()) - before == REFUSAL_REPLIES + 3
        c = listener.counters
        assert (c.malformed, c.unanswered, c.commands) == (FLOOD, FLOOD - REFUSAL_REPLIES, 0)
        release.set()
        broker.send([b'{"relay_4": true}'])
        await until(lambda: listener.counters.commands == 1, "a command that reads")
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "malformed" in r.getMessage()] == [
        (
            "WARNING",
            'malformed command on /K3Y/dev1/cmd: command payload: command names cannot be empty, got ""',
        ),
        ("INFO", f"command messages read again; {FLOOD} malformed ones before"),
    ]

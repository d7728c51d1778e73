"""The adapter against a real mosquitto: exact mapping, ack only after commit, malformed input, outages."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.secrets import SecretStore
from tests.adapters.mqtt.casefiles import load_case, reading_json
from tests.adapters.mqtt.peers import Sink, counter_config, numbered, publish, running, wait_for
from tests.support.mosquitto import MosquittoBroker
from tests.support.ports import restartable_port

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

ROOT = Path(__file__).parents[3]


async def assert_nothing_queued(broker: MosquittoBroker, client_id: str, **overrides: object) -> None:
    """Reconnect with the same session: the broker delivers queued messages before a fresh marker."""
    # the acks the adapter wrote before it stopped must have reached the broker, not a takeover
    await wait_for(lambda: broker.closing_clients() == 0, what="the broker to close the stopped adapter's connection")
    sink = Sink()
    async with running(counter_config(broker, client_id, **overrides), sink) as adapter:
        await publish(broker, numbered(1, start=999, device="marker"))
        await wait_for(lambda: adapter.emitted >= 1, what="the marker")
    assert sink.values() == [999]


@pytest.mark.parametrize(
    "name", ["chirpstack_v4_uplink", "zigbee2mqtt_state", "tasmota_sensor", "malformed_payload_personal_data"]
)
async def test_case_through_the_broker(mosquitto_private: MosquittoBroker, name: str) -> None:
    case = load_case(
        name, host=mosquitto_private.host, port=mosquitto_private.port, client_id=f"case-{name}", reconnect_min_s=0.1
    )
    sink = Sink()
    async with running(case.config, sink) as adapter:
        await publish(mosquitto_private, [(m.topic, m.payload) for m in case.messages])
        await wait_for(lambda: adapter.received == len(case.messages), what="all messages")
        await wait_for(lambda: adapter.in_flight == 0, what="all acks")
    want = [r for item in case.expected for r in item.get("readings", [])]
    got = [reading_json(r) for r in sink.readings]
    for g, w in zip(got, want, strict=False):  # a length mismatch is for `got == want` below to show
        if w["time_source"] == "gateway":  # arrival time: only the real clock knows it
            g["observed_at"] = w["observed_at"]
    assert got == want
    errors = [item["error"] for item in case.expected if "error" in item]
    assert dict(adapter.malformed) == {e: errors.count(e) for e in errors}
    assert adapter.emitted == len(want)


async def test_unacknowledged_messages_come_back_after_a_stop(mosquitto_private: MosquittoBroker) -> None:
    cfg = counter_config(mosquitto_private, "ack-after-commit")
    stuck = Sink(auto=False)
    async with running(cfg, stuck) as adapter:
        await publish(mosquitto_private, numbered(5))
        await wait_for(lambda: adapter.received == 5, what="5 messages")
        assert (adapter.emitted, adapter.in_flight) == (0, 5)
    # same client id, commits completing now: the broker hands the 5 back, then the marker
    sink = Sink()
    async with running(cfg, sink) as adapter:
        await publish(mosquitto_private, numbered(1, start=999, device="marker"))
        await wait_for(lambda: adapter.emitted == 6, what="redelivery and marker")
    assert sink.values() == [0, 1, 2, 3, 4, 999]
    await assert_nothing_queued(mosquitto_private, "ack-after-commit")


async def test_committed_messages_are_not_redelivered(mosquitto_private: MosquittoBroker) -> None:
    cfg = counter_config(mosquitto_private, "committed")
    sink = Sink()
    async with running(cfg, sink) as adapter:
        await publish(mosquitto_private, numbered(5))
        await wait_for(lambda: adapter.emitted == 5 and adapter.in_flight == 0, what="5 commits and acks")
    assert sink.values() == [0, 1, 2, 3, 4]
    await assert_nothing_queued(mosquitto_private, "committed")


async def test_messages_queued_while_stopped_arrive_on_start(mosquitto_private: MosquittoBroker) -> None:
    cfg = counter_config(mosquitto_private, "offline-queue")
    async with running(cfg, Sink()):
        pass  # creates the persistent session and its subscription
    await publish(mosquitto_private, numbered(3))
    sink = Sink()
    async with running(cfg, sink) as adapter:
        await wait_for(lambda: adapter.emitted == 3, what="the queued messages")
    assert sink.values() == [0, 1, 2]


KILLED_CHILD = """
import asyncio, json, sys
from adapters.mqtt.adapter import MqttAdapter
from adapters.mqtt.config import MqttAdapterConfig
from gateway.adapter_api import AdapterContext

async def main():
    adapter = MqttAdapter(MqttAdapterConfig.model_validate(json.loads(sys.argv[1])),
                          AdapterContext(gateway_id="gw", data_dir="/x"))
    never = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(adapter.run(lambda reading: never))
    last = None
    while True:
        state = (adapter.connected, adapter.received)
        if state != last:
            print(*state, flush=True)
            last = state
        await asyncio.sleep(0.01)

asyncio.run(main())
"""


async def test_unacknowledged_messages_come_back_after_kill_9(mosquitto_private: MosquittoBroker) -> None:
    cfg = counter_config(mosquitto_private, "killed")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_CHILD,
        cfg.model_dump_json(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 10) == b"False 0\n"
        assert await asyncio.wait_for(child.stdout.readline(), 10) == b"True 0\n"
        await publish(mosquitto_private, numbered(3))
        line = b""
        while line != b"True 3\n":
            line = await asyncio.wait_for(child.stdout.readline(), 10)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    sink = Sink()
    async with running(cfg, sink) as adapter:
        await wait_for(lambda: adapter.emitted == 3, what="the redelivered messages")
    assert sink.values() == [0, 1, 2]


async def test_in_flight_is_bounded_and_acks_go_in_order(mosquitto_private: MosquittoBroker) -> None:
    sink = Sink(auto=False)
    async with running(counter_config(mosquitto_private, "window", max_inflight=3), sink) as adapter:
        await publish(mosquitto_private, numbered(7))
        await wait_for(lambda: adapter.received == 3, what="a full window")
        sink.commit(2)  # the third commits first: its ack must wait for the first two
        await asyncio.sleep(0.3)
        assert (adapter.received, adapter.in_flight, adapter.emitted) == (3, 3, 1)
        sink.commit(0)  # acks message 0 only: room for exactly one more
        await wait_for(lambda: adapter.received == 4, what="one more after the first ack")
        await asyncio.sleep(0.3)
        assert (adapter.received, adapter.in_flight) == (4, 3)
        sink.commit(1)  # acks 1 and 2
        await wait_for(lambda: adapter.received == 6, what="two more")
        await asyncio.sleep(0.3)
        assert (adapter.received, adapter.in_flight) == (6, 3)
        for i in range(3, 6):
            sink.commit(i)
        await wait_for(lambda: adapter.received == 7, what="the last one")
        sink.commit(6)
        await wait_for(lambda: adapter.in_flight == 0, what="all acks")
    assert sink.values() == [0, 1, 2, 3, 4, 5, 6]


async def test_malformed_messages_are_counted_acked_and_dropped(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.mqtt.adapter")
    sink = Sink()
    messages = [
        ("test/dev1", b"\xff\xfe not json"),
        ("test/dev1", b'{"n": "seven"}'),
        ("test/dev1", b"{}"),
        ("test/dev1", b'{"n": 1}'),
        ("test/dev 2", b'{"n": 2}'),
        ("test/dev1", b"[]"),
        ("test/dev1", b'{"n": 3}'),
    ]
    async with running(counter_config(mosquitto_private, "malformed"), sink) as adapter:
        await publish(mosquitto_private, messages)
        await wait_for(lambda: adapter.received == 7 and adapter.in_flight == 0, what="all messages acked")
    assert sink.values() == [1, 3]
    assert dict(adapter.malformed) == {"not_json": 1, "wrong_type": 2, "missing_field": 1, "bad_id": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # one line per topic: the good message between dev1's bad ones does not start a new episode
    assert warnings == [
        "test/dev1: dropping malformed messages (not_json), e.g. test/dev1: payload is not JSON (invalid at "
        "character 0), got '<2 bytes> <3 letters> <4 letters>'; counted per reason",
        "test/dev 2: dropping malformed messages (bad_id), e.g. test/dev 2: entity_id "
        "urn:ngsi-ld:Thing:{topic[1]} renders to an invalid identifier: entity id must be 1-256 printable ASCII "
        "characters without blanks or any of < > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got "
        "'urn:ngsi-ld:Thing:<3 letters> <1 digit>'; counted per reason",
    ]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 5 and all(m.startswith("dropped a message (") for m in debug)
    assert all(getattr(r, "component", None) == "testmqtt" for r in caplog.records)
    assert adapter.diagnostics() == {
        "connected": False,
        "received": 7,
        "emitted": 2,
        "in_flight": 0,
        "retained_skipped": 0,
        "gateway_clock_unsynced": 0,
        "malformed": {"not_json": 1, "wrong_type": 2, "missing_field": 1, "bad_id": 1},
        "malformed_topics": {
            "test/dev1": {"malformed": 4, "last_reason": "wrong_type"},
            "test/dev 2": {"malformed": 1, "last_reason": "bad_id"},
        },
    }
    await assert_nothing_queued(mosquitto_private, "malformed")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_alternating_good_and_bad_messages_log_one_line_per_period(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    clock = FakeClock()
    sink = Sink()
    good_bad = [("test/dev1", b'{"n": 1}'), ("test/dev1", b"not json")] * 5  # 5 bad per round
    async with running(counter_config(mosquitto_private, "alternating"), sink, clock=clock) as adapter:
        for n, now in enumerate((1000.0, 1150.0, 1301.0, 1450.0, 1700.0, 1800.0), start=1):
            clock.now = now
            await publish(mosquitto_private, good_bad)
            await wait_for(
                lambda: adapter.received == 10 * n and adapter.in_flight == 0,  # noqa: B023 -- awaited to the end in this same iteration
                what=f"round {n}",
            )
        clock.now = 2101.0  # quiet for a whole period since the last bad one (1800): the episode ends
        await publish(mosquitto_private, [("test/dev1", b'{"n": 2}')])
        await wait_for(lambda: adapter.received == 61 and adapter.in_flight == 0, what="the good one")
    example = "e.g. test/dev1: payload is not JSON (invalid at character 0), got '<3 letters> <4 letters>'"
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [line for line in lines if "malformed" in line[1] or "map again" in line[1]] == [
        ("WARNING", f"test/dev1: dropping malformed messages (not_json), {example}; counted per reason"),
        # 4 more at 1000, 5 at 1150, and the first of 1301
        (
            "WARNING",
            (
                f"test/dev1: still dropping malformed messages, 10 since the last line 301 s ago (not_json 10), "
                f"{example}"
            ),
        ),
        # 4 more at 1301, 5 at 1450, the first of 1700
        (
            "WARNING",
            (
                f"test/dev1: still dropping malformed messages, 10 since the last line 399 s ago (not_json 10), "
                f"{example}"
            ),
        ),
        ("INFO", "test/dev1: payloads map again; 9 more malformed since the last line (not_json 9)"),
    ]
    assert adapter.malformed == {"not_json": 30}
    assert adapter.diagnostics()["malformed_topics"] == {"test/dev1": {"malformed": 30, "last_reason": "not_json"}}
    assert len(sink.readings) == 31


def broker_has_read_everything(broker: MosquittoBroker) -> bool:
    """Whether every byte sent to the broker has been read by it (/proc/net/tcp: no tx_queue towards its port,
    no rx_queue on its side).

    An ack written is not an ack taken: mosquitto stopped before it read the adapter's PUBACKs saves their
    messages as still in flight and redelivers them after its restart (at-least-once), and it resets the
    connection instead of closing it, as it closes a socket with unread bytes.
    """
    port = f":{broker.port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        tx_queue, rx_queue = fields[4].split(":")
        if (fields[2].endswith(port) and int(tx_queue, 16)) or (fields[1].endswith(port) and int(rx_queue, 16)):
            return False
    return True


async def test_broker_restart_reconnects_and_continues(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    sink = Sink()
    async with running(counter_config(mosquitto_private, "restart"), sink) as adapter:
        await publish(mosquitto_private, numbered(2))
        await wait_for(lambda: adapter.emitted == 2 and adapter.in_flight == 0, what="before the restart")
        # a restart before the broker took the acks redelivers 0 and 1: that case has its own test below
        await wait_for(lambda: broker_has_read_everything(mosquitto_private), what="the broker to read the acks")
        mosquitto_private.stop()
        await wait_for(lambda: not adapter.connected, what="the adapter to notice")
        await asyncio.sleep(0.5)  # several reconnect attempts against a closed port
        mosquitto_private.start()
        await wait_for(lambda: adapter.connected, what="the reconnect")
        await publish(mosquitto_private, numbered(2, start=2))
        # >= and the list below: a redelivery shows as what it is, not as a timeout
        await wait_for(lambda: adapter.emitted >= 4 and adapter.in_flight == 0, what="after the restart")
    assert sink.values() == [0, 1, 2, 3]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [m for m in messages if m[0] == "WARNING"] == [
        ("WARNING", "lost the broker connection: the broker closed the connection; reconnecting with backoff")
    ]
    # whether the session survived is the broker's persistence, not ours: both spellings are fine
    assert [m for m in messages if m[1].startswith("reconnected to the broker (session kept: ")] != []


async def test_acks_a_stopping_broker_did_not_read_are_redelivered_after_its_restart(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # the flake of test_broker_restart_reconnects_and_continues under load: the broker stopped with the
    # adapter's PUBACKs unread in its socket; here it is stopped (SIGSTOP) before they are written
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    sink = Sink(auto=False)
    async with running(counter_config(mosquitto_private, "unread-acks"), sink) as adapter:
        await publish(mosquitto_private, numbered(2))
        await wait_for(lambda: adapter.received == 2, what="2 messages")
        proc = mosquitto_private.proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        sink.commit(0)
        sink.commit(1)
        await wait_for(lambda: adapter.in_flight == 0, what="the acks to be written")
        # SIGTERM ends mosquitto's loop after at most one more pass, which reads one packet per socket:
        # the ack of 1, maybe also that of 0, is still unread when it saves its sessions.
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        mosquitto_private.stop()
        await wait_for(lambda: not adapter.connected, what="the adapter to notice")
        sink.auto = True
        mosquitto_private.start()
        # the broker redelivers before its SUBACK: once connected, the redelivered ones are in
        await wait_for(lambda: adapter.connected and adapter.in_flight == 0, what="the reconnect")
        await publish(mosquitto_private, numbered(2, start=2))
        await wait_for(lambda: sink.values()[-2:] == [2, 3] and adapter.in_flight == 0, what="after the restart")
    # at-least-once: what the broker had not taken the ack of is stored twice, nothing is lost
    assert sink.values() in ([0, 1, 1, 2, 3], [0, 1, 0, 1, 2, 3])
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [m for m in messages if m[0] == "WARNING"] == [
        ("WARNING", "lost the broker connection: [Errno 104] Connection reset by peer; reconnecting with backoff")
    ]
    assert ("INFO", "reconnected to the broker (session kept: True)") in messages
    await assert_nothing_queued(mosquitto_private, "unread-acks")


class Gate:
    """A TCP relay to the broker on a port of its own, which the test opens and shuts: while it is shut
    nothing listens there, so the adapter cannot reconnect while the broker is up."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.port = restartable_port()  # reopened on the same port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def shut(self) -> None:
        """Stops listening; relayed connections stay until either end closes them."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.shut()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
        except OSError:
            writer.close()
            return
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def test_messages_published_while_the_adapter_reconnects_to_a_restarted_broker_arrive(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # No subscription of ours is live on the restarted broker when they are published: only the session
    # it kept in its persistence file holds them (a broker without persistence would drop them).
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    gate = Gate(mosquitto_private)
    await gate.open()
    sink = Sink()
    try:
        async with running(counter_config(mosquitto_private, "gated", port=gate.port), sink) as adapter:
            await publish(mosquitto_private, numbered(2))
            await wait_for(lambda: adapter.emitted == 2 and adapter.in_flight == 0, what="before the restart")
            await wait_for(lambda: broker_has_read_everything(mosquitto_private), what="the broker to read the acks")
            await gate.shut()
            mosquitto_private.stop()
            await wait_for(lambda: not adapter.connected, what="the adapter to notice")
            mosquitto_private.start()
            await publish(mosquitto_private, numbered(2, start=2))
            assert (adapter.connected, adapter.received) == (False, 2)
            await gate.open()
            await wait_for(lambda: adapter.emitted >= 4 and adapter.in_flight == 0, what="the queued messages")
    finally:
        await gate.close()
    assert sink.values() == [0, 1, 2, 3]
    assert ("INFO", "reconnected to the broker (session kept: True)") in [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]


async def test_password_from_the_secret_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    passwd = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-c", "-b", str(passwd), "edgegw", "s3cret-pw"], check=True
    )
    # `user root`: run as root, mosquitto would drop to user mosquitto and could not read the 0600 file
    conf = f"allow_anonymous false\npassword_file {passwd}\nuser root\n"
    broker = MosquittoBroker(tmp_path / "broker", extra_conf=conf)
    broker.start()
    try:
        SecretStore(tmp_path / "data").set("broker", "s3cret-pw")
        SecretStore(tmp_path / "wrong").set("broker", "not-it")
        cfg = counter_config(broker, "auth", username="edgegw", password="secret:broker")
        async with running(cfg, Sink(), data_dir=str(tmp_path / "wrong"), wait_connected=False) as adapter:
            await wait_for(
                lambda: any("refused" in r.getMessage() for r in caplog.records), what="the refusal to be logged"
            )
            assert not adapter.connected
        refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert refusals == [
            f"broker mqtt://127.0.0.1:{broker.port} refused the connection: Not authorized; retrying with backoff"
        ]
        assert not any("not-it" in r.getMessage() for r in caplog.records)
        sink = Sink()
        async with running(cfg, sink, data_dir=str(tmp_path / "data")) as adapter:
            await publish_authenticated(broker)
            await wait_for(lambda: adapter.emitted == 1, what="a message")
        assert sink.values() == [7]
    finally:
        broker.stop()


async def publish_authenticated(broker: MosquittoBroker) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    def go() -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.username_pw_set("edgegw", "s3cret-pw")
        client.connect(broker.host, broker.port)
        client.loop_start()
        client.publish("test/dev1", json.dumps({"n": 7}), qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()

    await asyncio.to_thread(go)


async def test_an_unreachable_broker_is_probed_at_probe_s_not_backed_off_to_reconnect_max_s(
    mosquitto_private: MosquittoBroker,
) -> None:
    # issue 18: after an outage the adapter must be back within seconds, not after a doubled delay
    config = counter_config(mosquitto_private, "probe", reconnect_min_s=0.1, reconnect_max_s=60, probe_s=0.2)
    sink = Sink()
    async with running(config, sink) as adapter:
        mosquitto_private.stop()
        await wait_for(lambda: not adapter.connected, what="the adapter to notice")
        await asyncio.sleep(2.0)  # doubling from 0.1 s, the delay would now be 1.6 s, then 3.2 s
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(mosquitto_private.start)
        back = loop.time()
        await wait_for(lambda: adapter.connected, what="the reconnect")
        assert loop.time() - back < 0.2 + 0.3  # one probe interval, and the connect itself
        await publish(mosquitto_private, numbered(1))
        await wait_for(lambda: adapter.emitted == 1, what="a reading after the outage")

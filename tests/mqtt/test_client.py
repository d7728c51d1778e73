"""gateway.mqtt.client against a real mosquitto (and a silent peer for what a broker never does on purpose)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.mqtt.client import (
    ClientSettings,
    ConnectFailed,
    ConnectionLost,
    ConnectRefused,
    Message,
    MqttClient,
)
from gateway.mqtt.packets import (
    PINGREQ_PACKET,
    PacketTooLarge,
    Publish,
    TooLarge,
    Will,
    decode_connect,
    encode_publish,
    publish_properties,
    user_properties,
)
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.both_loops

KEEP_USER = "user root\n" if os.geteuid() == 0 else ""


def settings(broker: MosquittoBroker, client_id: str, **overrides: object) -> ClientSettings:
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": client_id,
        "connect_timeout_s": 3.0,
    }
    return ClientSettings(**(values | overrides))  # type: ignore[arg-type]


async def test_publish_subscribe_and_user_properties(mosquitto: MosquittoBroker) -> None:
    got: asyncio.Queue[Message] = asyncio.Queue()
    async with (
        MqttClient(settings(mosquitto, "t-sub", clean_start=True), on_message=got.put_nowait) as sub,
        MqttClient(settings(mosquitto, "t-pub", clean_start=True)) as pub,
    ):
        assert await sub.subscribe(["t/client/#"]) == (1,)
        ack = await pub.publish(
            "t/client/a", b"42", properties=publish_properties(content_type="text/plain", user=(("seq", "1-3"),))
        )
        assert await ack == 0
        message = await asyncio.wait_for(got.get(), 3)
    assert (message.topic, message.payload, message.qos, message.retain) == ("t/client/a", b"42", 1, False)
    assert user_properties(message.properties) == (("seq", "1-3"),)


async def test_publishing_does_not_look_up_the_running_loop(
    mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On Python 3.11 each asyncio.get_running_loop() is also a getpid() system call: the client
    # asks once, when it is made, not once a message.
    async with MqttClient(settings(mosquitto, "t-loop", clean_start=True)) as pub:
        real = asyncio.get_running_loop
        calls: list[str] = []

        def counted() -> asyncio.AbstractEventLoop:
            calls.append("get_running_loop")
            return real()

        monkeypatch.setattr(asyncio, "get_running_loop", counted)
        acks = [await pub.publish("t/loop", b"%d" % i, qos=i % 2) for i in range(20)]
        codes = [await ack for ack in acks]  # 0x10 at QoS 1: no subscriber, still a success
        assert len(codes) == 20 and all(code < 0x80 for code in codes)
        monkeypatch.undo()
    assert calls == []


async def test_puback_reason_code_of_a_refused_message(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic write allowed/#\n")
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"acl_file {acl}\n{KEEP_USER}")
    broker.start()
    try:
        async with MqttClient(settings(broker, "t-acl")) as client:
            assert await (await client.publish("allowed/x", b"1")) == 0x10  # success: no matching subscribers
            assert await (await client.publish("denied/x", b"1")) == 0x87  # not authorized
    finally:
        broker.stop()


async def test_last_will_on_a_lost_connection_not_on_a_clean_disconnect(mosquitto: MosquittoBroker) -> None:
    got: asyncio.Queue[Message] = asyncio.Queue()
    will = Will(topic="t/will/state", payload=b"offline", retain=False)
    async with MqttClient(settings(mosquitto, "t-watch", clean_start=True), on_message=got.put_nowait) as watch:
        await watch.subscribe(["t/will/#"])
        clean = MqttClient(settings(mosquitto, "t-clean", clean_start=True, will=will))
        await clean.connect()
        await clean.disconnect()
        crashing = MqttClient(settings(mosquitto, "t-crash", clean_start=True, will=will))
        await crashing.connect()
        crashing._abort("simulated crash")
        message = await asyncio.wait_for(got.get(), 3)
        assert got.empty()  # the clean disconnect published nothing
    assert (message.topic, message.payload) == ("t/will/state", b"offline")
    assert crashing.lost.result() == "simulated crash"


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "gw", "s3cret-pw"], check=True, capture_output=True)
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"{KEEP_USER}allow_anonymous false\npassword_file {pwfile}\n")
    broker.start()
    yield broker
    broker.stop()


async def test_refused_credentials_and_unreachable_broker(password_broker: MosquittoBroker) -> None:
    broker = password_broker
    with pytest.raises(ConnectRefused) as refused:
        await MqttClient(settings(broker, "t-pw", username="gw", password="nope")).connect()
    broker.stop()
    # mosquitto answers a wrong password with "not authorized", as it does for the uplink (test_security)
    assert (refused.value.code, refused.value.reason) == (
        0x87,
        "the broker refused the connection, got Not authorized (0x87)",
    )
    with pytest.raises(ConnectFailed) as unreachable:
        await MqttClient(settings(broker, "t-down")).connect()
    assert unreachable.value.reason == "[Errno 111] Connection refused"


async def _silent_broker(connects: list[bytes], *, connack: bool) -> asyncio.Server:
    """Reads a CONNECT, answers CONNACK (or nothing), then never acknowledges anything."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)
        connects.append(head + await reader.readexactly(head[1]))
        if connack:
            writer.write(b"\x20\x03\x00\x00\x00")
        await reader.read()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_a_connect_cancelled_while_it_waits_for_connack_closes_its_connection() -> None:
    # an adapter stopped while an attempt is under way: its socket (and the quick-ack duplicate) must go
    connects: list[bytes] = []
    silent = await _silent_broker(connects, connack=False)
    client = MqttClient(ClientSettings(host="127.0.0.1", port=silent.sockets[0].getsockname()[1], client_id="t-cancel"))
    attempt = asyncio.create_task(client.connect())
    for _ in range(200):
        if connects:
            break
        await asyncio.sleep(0.01)
    assert connects, "the CONNECT never reached the broker"
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    transport = client._transport
    try:
        assert client.lost.done()
        assert transport is not None and transport.is_closing()
    finally:
        if transport is not None:
            transport.abort()  # else a failing run would hang on the silent broker's open connection
        await asyncio.sleep(0.1)  # the broker's side sees the end and closes its socket
        silent.close()


async def test_connect_timeout_and_max_inflight() -> None:
    connects: list[bytes] = []
    silent = await _silent_broker(connects, connack=False)
    port = silent.sockets[0].getsockname()[1]
    with pytest.raises(ConnectFailed) as timed_out:
        await MqttClient(
            ClientSettings(host="127.0.0.1", port=port, client_id="t-slow", connect_timeout_s=0.2)
        ).connect()
    assert timed_out.value.reason == f"no answer from 127.0.0.1:{port} within 0.2 s"
    silent.close()

    mute = await _silent_broker(connects, connack=True)
    port = mute.sockets[0].getsockname()[1]
    client = MqttClient(
        ClientSettings(host="127.0.0.1", port=port, client_id="t-mute", max_inflight=2, session_expiry_s=600)
    )
    await client.connect()
    assert decode_connect(connects[-1]).session_expiry_s == 600
    first, second = await client.publish("a", b"1"), await client.publish("a", b"2")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.publish("a", b"3"), 0.2)  # a third waits for a PUBACK slot
    mute.close()
    await client.disconnect()
    for fut in (first, second):
        with pytest.raises(ConnectionLost):
            await fut
    with pytest.raises(ConnectionLost):
        await client.publish("a", b"4")


async def test_corked_publishes_go_out_together_in_order_and_a_full_window_sends_what_is_held(
    mosquitto: MosquittoBroker,
) -> None:
    got: asyncio.Queue[Message] = asyncio.Queue()
    async with (
        MqttClient(settings(mosquitto, "t-cork-sub", clean_start=True), on_message=got.put_nowait) as sub,
        MqttClient(settings(mosquitto, "t-cork-pub", clean_start=True, max_inflight=2)) as pub,
    ):
        assert await sub.subscribe(["t/cork/#"]) == (1,)
        pub.cork()
        acks = [await pub.publish(f"t/cork/{i}", b"%d" % i) for i in range(2)]
        await asyncio.sleep(0.1)  # held: nothing reached the broker, so nothing came back
        assert got.empty() and not any(a.done() for a in acks)
        # a third publish needs a slot the held two hold: they are sent first, or it would wait forever
        acks.append(await asyncio.wait_for(pub.publish("t/cork/2", b"2"), 3))
        pub.uncork()
        assert await asyncio.wait_for(asyncio.gather(*acks), 3) == [0, 0, 0]
        messages = [await asyncio.wait_for(got.get(), 3) for _ in range(3)]
    assert [(m.topic, m.payload) for m in messages] == [(f"t/cork/{i}", b"%d" % i) for i in range(3)]


async def test_keepalive_notices_a_silent_broker() -> None:
    connects: list[bytes] = []
    mute = await _silent_broker(connects, connack=True)
    client = MqttClient(
        ClientSettings(host="127.0.0.1", port=mute.sockets[0].getsockname()[1], client_id="t-ka", keepalive_s=1)
    )
    await client.connect()
    reason = await asyncio.wait_for(client.lost, 3)
    assert reason == "no answer from the broker for 1.5 s (keepalive)"
    mute.close()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def publish_each(broker: MosquittoBroker, client_id: str, topic: str, payloads: list[bytes]) -> None:
    async with MqttClient(settings(broker, client_id, clean_start=True)) as pub:
        for payload in payloads:
            assert await (await pub.publish(topic, payload)) in (0, 0x10)


async def test_subscriber_mode_acknowledges_only_what_it_is_told(mosquitto: MosquittoBroker) -> None:
    got: list[Publish] = []
    sub = MqttClient(settings(mosquitto, "t-acker", session_expiry_s=600), on_publish=got.append)
    await sub.connect()
    await sub.subscribe(["t/acker/#"])
    await publish_each(mosquitto, "t-acker-pub", "t/acker/x", [b"0", b"1", b"2", b"3", b"4"])
    await until(lambda: len(got) == 5, "5 messages")
    assert [(m.topic, m.payload, m.qos) for m in got] == [(b"t/acker/x", str(i).encode(), 1) for i in range(5)]
    sub.ack([m.packet_id for m in got[:3]])
    await sub.disconnect()
    # the reconnect below must not take the session over before the broker has read the acks
    await until(lambda: mosquitto.closing_clients() == 0, "the broker to close the old connection")
    # The session kept what was not acknowledged: those two come back, before a fresh marker, and no others.
    # (session expiry 0 now: the broker forgets the session when this client goes)
    again: list[Message] = []
    async with MqttClient(settings(mosquitto, "t-acker"), on_message=again.append):
        await publish_each(mosquitto, "t-acker-pub", "t/acker/x", [b"end"])
        await until(lambda: any(m.payload == b"end" for m in again), "the marker")
    assert [m.payload for m in again] == [b"3", b"4", b"end"]


async def test_pause_reading_holds_the_rest_back_until_resumed(mosquitto: MosquittoBroker) -> None:
    got: list[Publish] = []

    def on_publish(message: Publish) -> None:
        got.append(message)
        if len(got) == 2:
            sub.pause_reading()  # from the callback: the packets behind this one in the same read wait

    bursts: list[int] = []  # how many messages had been handed out at each on_handed_out
    sub = MqttClient(
        settings(mosquitto, "t-pause", clean_start=True),
        on_publish=on_publish,
        on_handed_out=lambda: bursts.append(len(got)),
    )
    async with sub:
        await sub.subscribe(["t/pause/#"])
        await publish_each(mosquitto, "t-pause-pub", "t/pause/x", [str(i).encode() for i in range(6)])
        await until(lambda: len(got) == 2, "the first two")
        await asyncio.sleep(0.3)  # the other four reach the socket meanwhile, and are not handed out
        assert (len(got), sub.reading_paused) == (2, True)
        assert bursts[-1] == 2  # told once the read's handing out stopped, pause or not
        sub.resume_reading()
        await until(lambda: len(got) == 6, "the other four")
        assert not sub.reading_paused
        assert bursts[-1] == 6  # the resume's hand-out, told once at its end
        sub.ack([m.packet_id for m in got])
    assert [m.payload for m in got] == [str(i).encode() for i in range(6)]
    assert bursts == sorted(set(bursts))  # once per hand-out that gave something, never for nothing


async def test_a_slow_consumer_of_a_flood_never_holds_more_than_one_read_unhanded(
    mosquitto_private: MosquittoBroker,
) -> None:
    # A deep backlog arrives faster than its consumer takes it: 20,000 QoS 1 messages queued in the
    # broker for a persistent session while its consumer was away, all sent at once when it comes
    # back (the test broker queues and sends without limit). The consumer pauses after every 50
    # messages (50 KB, less than one socket read), acknowledges them and resumes on the next loop
    # turn. What waits in the reader must stay about one read, however long the flood: the socket is
    # read again only once what waited was handed out.
    count, size = 20_000, 1_000
    payload = b"x" * size
    packet = len(encode_publish("t/flood", payload, qos=1, packet_id=1, v5=True))
    session = {"clean_start": False, "session_expiry_s": 600}
    async with MqttClient(settings(mosquitto_private, "t-flood", **session), on_publish=lambda _: None) as away:
        assert await away.subscribe(["t/flood"]) == (1,)
    await until(lambda: mosquitto_private.closing_clients() == 0, "the broker to close the old connection")
    async with MqttClient(settings(mosquitto_private, "t-flood-pub", clean_start=True, max_inflight=1_000)) as pub:
        acks = [await pub.publish("t/flood", payload) for _ in range(count)]
        assert set(await asyncio.wait_for(asyncio.gather(*acks), 30)) == {0}  # 0: a subscriber (queued for it)

    got: list[int] = []
    unacked: set[int] = set()
    reused: list[int] = []  # packet ids the broker sent again while still in flight (MQTT-2.2.1-4)
    most = 0
    loop = asyncio.get_running_loop()

    def on_publish(message: Publish) -> None:
        nonlocal most
        if message.packet_id in unacked:
            reused.append(message.packet_id)
        unacked.add(message.packet_id)
        got.append(message.packet_id)
        most = max(most, client.unread_bytes)
        if len(got) == 1:
            # a consumer busy at first: the socket's buffers fill meanwhile, so a flood does wait,
            # whatever the machine's pace (a broker no faster than the consumer made a hollow run)
            client.pause_reading()
            loop.call_later(0.2, client.resume_reading)
        elif len(got) % 50 == 0:
            client.pause_reading()
            client.ack(got[-50:])
            unacked.difference_update(got[-50:])
            loop.call_soon(client.resume_reading)

    # session expiry 0 now: the broker forgets the session when this client goes
    client = MqttClient(settings(mosquitto_private, "t-flood"), on_publish=on_publish)
    async with client:
        await until(lambda: len(got) == count, "the whole flood", timeout=30)
    assert reused == []
    assert most <= 256 * 1024 + packet, f"{most:,} bytes waited in the reader"
    assert most >= 50 * packet, f"{most:,} bytes at most waited: the flood never outpaced the consumer"


async def test_keepalive_pings_while_paused_and_counts_silence_from_the_resume() -> None:
    after_connect = bytearray()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)
        await reader.readexactly(head[1])
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK, then silence: no PINGRESP ever
        while data := await reader.read(100):
            after_connect.extend(data)
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    client = MqttClient(
        ClientSettings(host="127.0.0.1", port=server.sockets[0].getsockname()[1], client_id="t-paused", keepalive_s=1),
        on_publish=lambda _: None,
    )
    await client.connect()
    client.pause_reading()
    await asyncio.sleep(2.5)  # past 1.5 x keepalive: paused reads, not a silent broker
    assert not client.lost.done()
    assert len(after_connect) >= 4 and bytes(after_connect) == PINGREQ_PACKET * (len(after_connect) // 2)
    client.resume_reading()
    resumed = time.monotonic()
    reason = await asyncio.wait_for(asyncio.shield(client.lost), 3)
    assert reason == "no answer from the broker for 1.5 s (keepalive)"
    assert time.monotonic() - resumed >= 1.4  # counted from the resume
    server.close()


async def test_one_mode_of_delivery() -> None:
    with pytest.raises(ValueError, match=r"^MqttClient: on_message or on_publish \(subscriber mode\), got both$"):
        MqttClient(
            ClientSettings(host="127.0.0.1", port=1, client_id="t"),
            on_message=lambda _: None,
            on_publish=lambda _: None,
        )


@pytest.fixture
def small_window_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    # mosquitto's max_inflight_messages is the Receive Maximum its CONNACK gives v5 clients (stock: 20)
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"max_inflight_messages 5\n{KEEP_USER}")
    broker.start()
    yield broker
    broker.stop()


async def test_the_window_is_the_brokers_receive_maximum_when_lower(small_window_broker: MosquittoBroker) -> None:
    async with (
        MqttClient(settings(small_window_broker, "t-win5", max_inflight=100)) as v5,
        MqttClient(settings(small_window_broker, "t-win311", max_inflight=100, v5=False)) as v311,
        MqttClient(settings(small_window_broker, "t-win3", max_inflight=3)) as own,
    ):
        assert (v5.window, v311.window, own.window) == (5, 100, 3)  # 3.1.1 has no Receive Maximum
        # PUBACKs not read (reading paused) hold the window: a sixth message must not go out
        v5.pause_reading()
        acks = [fut for i in range(5) if (fut := v5.publish_now("t/win", b"%d" % i)) is not None]
        assert len(acks) == 5 and v5.in_flight == 5
        assert v5.publish_now("t/win", b"5") is None
        sixth = asyncio.ensure_future(v5.publish("t/win", b"5"))
        await asyncio.sleep(0.2)
        assert not sixth.done() and v5.in_flight == 5
        v5.resume_reading()
        codes = await asyncio.wait_for(asyncio.gather(*acks, await asyncio.wait_for(sixth, 3)), 3)
        assert codes == [0x10] * 6  # success, nobody subscribed
        assert v5.in_flight == 0


async def test_a_publish_given_up_holds_its_place_in_the_window_until_its_puback(
    small_window_broker: MosquittoBroker,
) -> None:
    async with MqttClient(settings(small_window_broker, "t-giveup")) as client:
        client.pause_reading()
        acks = [await client.publish("t/win", b"%d" % i) for i in range(5)]
        acks[0].cancel()  # its caller stopped waiting; the broker still counts the message
        assert client.publish_now("t/win", b"x") is None and client.in_flight == 5
        client.resume_reading()
        assert await asyncio.wait_for(asyncio.gather(*acks[1:]), 3) == [0x10] * 4
        assert client.in_flight == 0


async def test_waiting_publishes_take_turns_and_one_that_leaves_passes_its_turn_on(
    small_window_broker: MosquittoBroker,
) -> None:
    async with MqttClient(settings(small_window_broker, "t-turns", max_inflight=1)) as client:
        client.pause_reading()
        ack = await client.publish("t/win", b"0")
        leaving = asyncio.ensure_future(client.publish("t/win", b"1"))
        staying = asyncio.ensure_future(client.publish("t/win", b"2"))
        cancelled_early = asyncio.ensure_future(client.publish("t/win", b"3"))
        await asyncio.sleep(0.05)
        cancelled_early.cancel()  # leaves the queue before its turn
        client.resume_reading()
        while client.in_flight:  # until the PUBACK is read: this task then runs before `leaving`, which it woke
            await asyncio.sleep(0)
        assert not leaving.done()
        leaving.cancel()  # it leaves now: the room it was given must go to `staying`
        assert await asyncio.wait_for(ack, 3) == 0x10
        assert await asyncio.wait_for(await asyncio.wait_for(staying, 3), 3) == 0x10
        assert leaving.cancelled() and cancelled_early.cancelled() and client.in_flight == 0


async def test_publishes_waiting_for_room_fail_when_the_connection_goes(small_window_broker: MosquittoBroker) -> None:
    client = MqttClient(settings(small_window_broker, "t-gone"))
    await client.connect()
    client.pause_reading()
    acks = [await client.publish("t/win", b"%d" % i) for i in range(5)]
    waiting = [asyncio.ensure_future(client.publish("t/win", b"w")) for _ in range(2)]
    await asyncio.sleep(0.05)
    await client.disconnect()
    for fut in acks:
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(fut, 3)
    for publish in waiting:
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(publish, 3)
    assert client.in_flight == 0


@pytest.fixture
def stock_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    # Nagle's algorithm on, as mosquitto is installed: it holds a small packet until the previous
    # one is acknowledged, and a receiver's kernel delays acknowledgements up to 40 ms
    broker = MosquittoBroker(tmp_path / "b", extra_conf=KEEP_USER, tcp_nodelay=False)
    broker.start()
    yield broker
    broker.stop()


async def test_pubacks_of_a_window_come_at_once_from_a_broker_with_nagle(stock_broker: MosquittoBroker) -> None:
    async with MqttClient(settings(stock_broker, "t-nagle-pub")) as client:
        took: list[float] = []
        for _ in range(12):
            started = time.monotonic()
            client.cork()  # six messages in one write, as the uplink sends a window: six PUBACKs back
            acks = [await client.publish("t/nagle", b"%d" % i) for i in range(6)]
            client.uncork()
            await asyncio.wait_for(asyncio.gather(*acks), 3)
            took.append(time.monotonic() - started)
            await asyncio.sleep(0.005)
    # held back for a delayed acknowledgement, the later PUBACKs came ~40 ms after the first
    assert sorted(took)[len(took) // 2] < 0.015, took


async def test_messages_flow_from_a_broker_with_nagle_while_their_acks_wait(stock_broker: MosquittoBroker) -> None:
    # subscriber mode acknowledges after a commit, tens of ms later: the TCP acknowledgements must not wait too
    arrived: dict[bytes, float] = {}

    def on_publish(message: Publish) -> None:
        arrived[message.payload] = time.monotonic()

    sub = MqttClient(settings(stock_broker, "t-nagle-sub", clean_start=True), on_publish=on_publish)
    await sub.connect()
    await sub.subscribe(["t/nagle/#"])
    sent: dict[bytes, float] = {}
    async with MqttClient(settings(stock_broker, "t-nagle-src", clean_start=True)) as pub:
        for i in range(100):
            payload = b"%d" % i
            sent[payload] = time.monotonic()
            await pub.publish("t/nagle/x", payload)
            await asyncio.sleep(0.002)  # 500 messages/s
        await until(lambda: len(arrived) == 100, "100 messages")
    await sub.disconnect()
    # past the first few, which a new connection's kernel acknowledges at once anyway
    delays = sorted(arrived[p] - sent[p] for p in list(sent)[40:])
    # held back for a delayed acknowledgement, they came in bursts every ~40 ms (median ~20 ms)
    assert delays[len(delays) // 2] < 0.008, delays


async def test_a_connection_leaves_no_descriptor_behind(mosquitto: MosquittoBroker) -> None:
    # the quick acknowledgements use a duplicate of the socket's descriptor, closed with the connection
    def open_fds() -> int:  # sockets only: uvloop opens /dev/null once, for good
        sockets = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed by now
                sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        return sockets

    before = open_fds()
    for lost in (False, True):
        client = MqttClient(settings(mosquitto, "t-fds"), on_publish=lambda message: None)
        await client.connect()
        assert open_fds() > before
        if lost:  # the broker ends it: a second client takes the client id over
            async with MqttClient(settings(mosquitto, "t-fds")):
                await asyncio.wait_for(asyncio.shield(client.lost), 5)
        await client.disconnect()
        await until(lambda: open_fds() == before, "the connection's descriptors closed")  # uvloop closes later


# --- the maximum packet size ---------------------------------------------------------------------------


async def test_a_packet_over_the_limit_drops_the_connection_before_its_body_is_sent() -> None:
    # The review's finding: a broker announced MQTT's largest PUBLISH (268,435,455 bytes) and streamed it;
    # the client held 89 MiB. This one sends the fixed header only and waits: the body could come only
    # after the client hung up, so whatever the client did, it did with the header alone.
    connects: list[bytes] = []
    hung_up = asyncio.Event()

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)
        connects.append(head + await reader.readexactly(head[1]))
        writer.write(b"\x20\x03\x00\x00\x00" + b"\x30\xff\xff\xff\x7f\x00\x01t\x00")
        with contextlib.suppress(ConnectionError):
            await reader.read()
        hung_up.set()
        writer.close()

    server = await asyncio.start_server(hostile, "127.0.0.1", 0)
    got: list[Message] = []
    client = MqttClient(
        ClientSettings(host="127.0.0.1", port=server.sockets[0].getsockname()[1], client_id="t-huge"),
        on_message=got.append,
    )
    await client.connect()
    assert decode_connect(connects[0]).maximum_packet_size == 1_048_576  # the default, told to a v5 broker
    reason = await asyncio.wait_for(asyncio.shield(client.lost), 3)
    assert reason == (
        "mqtt: packets from the broker must be at most 1048576 bytes (the maximum packet size), got a PUBLISH "
        "of 268435460 bytes"
    )
    assert isinstance(client.wire_error, PacketTooLarge)
    await asyncio.wait_for(hung_up.wait(), 3)
    assert client.unread_bytes == 9 and got == []  # the fixed header and 4 bytes: nothing of the body
    server.close()


def ack_each(client: Callable[[], MqttClient], into: list[Publish]) -> Callable[[Publish], None]:
    def on_publish(message: Publish) -> None:
        into.append(message)
        client().ack([message.packet_id])

    return on_publish


async def test_a_v5_broker_drops_a_message_over_the_limit_and_the_next_ones_flow(mosquitto: MosquittoBroker) -> None:
    # MQTT 5 §3.1.2.11.4: told our Maximum Packet Size, the broker discards a larger message rather than
    # sending it, and behaves as if it had been delivered: nothing waits in the session for us
    got: list[Publish] = []
    options = {"session_expiry_s": 600, "max_packet_bytes": 4096}
    sub = MqttClient(settings(mosquitto, "t-limit5", **options), on_publish=ack_each(lambda: sub, got))
    await sub.connect()
    await sub.subscribe(["t/limit5/#"])
    await publish_each(mosquitto, "t-limit5-pub", "t/limit5/x", [b"a" * 100, b"b" * 10_000, b"c" * 4000])
    await until(lambda: len(got) == 2, "the two messages within the limit")
    await asyncio.sleep(0.2)
    assert [m.payload for m in got] == [b"a" * 100, b"c" * 4000] and sub.connected
    await sub.disconnect()
    await until(lambda: mosquitto.closing_clients() == 0, "the broker to close the old connection")
    again: list[Publish] = []
    sub = MqttClient(settings(mosquitto, "t-limit5", **options), on_publish=ack_each(lambda: sub, again))
    await sub.connect()
    await publish_each(mosquitto, "t-limit5-pub", "t/limit5/x", [b"d"])
    await until(lambda: len(again) == 1, "the next message")
    assert [m.payload for m in again] == [b"d"]  # the large one is not redelivered
    await sub.disconnect()


async def test_a_3_1_1_message_over_the_limit_comes_back_unless_it_is_skipped_and_acknowledged(
    mosquitto: MosquittoBroker,
) -> None:
    # A 3.1.1 broker cannot be told the limit. Dropping the connection, as for any wire error, leaves the
    # message in the session: it comes back at every reconnect and blocks the queue behind it.
    options = {"v5": False, "max_packet_bytes": 4096}
    first = MqttClient(settings(mosquitto, "t-limit311", **options), on_publish=lambda message: None)
    await first.connect()
    await first.subscribe(["t/limit311/#"])
    await publish_each(mosquitto, "t-limit311-pub", "t/limit311/x", [b"b" * 10_000, b"c" * 200])
    reason = await asyncio.wait_for(asyncio.shield(first.lost), 3)
    assert reason == (
        "mqtt: packets from the broker must be at most 4096 bytes (the maximum packet size), got a PUBLISH of "
        "10019 bytes"
    )
    assert isinstance(first.wire_error, PacketTooLarge)
    await first.disconnect()
    await until(lambda: mosquitto.closing_clients() == 0, "the broker to close the old connection")
    # with on_too_large, the client skips it unread and its user acknowledges it in its turn
    skipped: list[TooLarge] = []
    got: list[Publish] = []

    def on_too_large(packet: TooLarge) -> None:
        skipped.append(packet)
        second.ack([packet.packet_id])

    second = MqttClient(
        settings(mosquitto, "t-limit311", **options),
        on_publish=ack_each(lambda: second, got),
        on_too_large=on_too_large,
    )
    await second.connect()
    await until(lambda: len(got) == 1, "the message behind the large one")
    assert [(t.topic, t.qos, t.size) for t in skipped] == [(b"t/limit311/x", 1, 10_019)]
    assert [m.payload for m in got] == [b"c" * 200] and second.connected
    await second.disconnect()
    await until(lambda: mosquitto.closing_clients() == 0, "the broker to close the old connection")
    skipped.clear()
    third = MqttClient(
        settings(mosquitto, "t-limit311", **options), on_publish=ack_each(lambda: third, got), on_too_large=on_too_large
    )
    await third.connect()
    await publish_each(mosquitto, "t-limit311-pub", "t/limit311/x", [b"d"])
    await until(lambda: len(got) == 2, "the next message")
    assert got[-1].payload == b"d" and skipped == []  # acknowledged: not redelivered
    await third.disconnect()


async def test_on_message_users_get_a_3_1_1_message_over_the_limit_acknowledged_for_them() -> None:
    sent_acks: list[bytes] = []
    big = encode_publish("cmd/x", b"x" * 5000, qos=1, packet_id=9, v5=False)

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)
        await reader.readexactly(head[1])
        writer.write(b"\x20\x02\x00\x00" + big[:3000])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(big[3000:] + encode_publish("cmd/y", b"ok", qos=1, packet_id=10, v5=False))
        sent_acks.append(await reader.readexactly(4))
        sent_acks.append(await reader.readexactly(4))
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    got: list[Message] = []
    skipped: list[TooLarge] = []
    client = MqttClient(
        ClientSettings(
            host="127.0.0.1",
            port=server.sockets[0].getsockname()[1],
            client_id="t-311",
            v5=False,
            max_packet_bytes=4096,
        ),
        on_message=got.append,
        on_too_large=skipped.append,
    )
    async with client:
        await until(lambda: len(sent_acks) == 2, "two PUBACKs")
    server.close()
    assert sent_acks == [b"\x40\x02\x00\x09", b"\x40\x02\x00\x0a"]  # in the order the messages came
    assert [(m.topic, m.payload) for m in got] == [("cmd/y", b"ok")]
    assert skipped == [TooLarge(topic=b"cmd/x", qos=1, packet_id=9, size=len(big), limit=4096)]

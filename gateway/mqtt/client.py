"""The gateway's one asyncio MQTT client (3.1.1 and 5, QoS 0/1) on the sans-I/O codec in packets.py.

Theory of operation: `connect()` opens TCP (or TLS), sends CONNECT and waits for CONNACK within the
timeout; from then on one asyncio Protocol cuts the byte stream into packets (`PacketReader`) and
settles what waits on them: a QoS 1 `publish` returns a future of the PUBACK's reason code (0 for
success, or what a v5 broker refuses the message with: 0x87 not authorized, 0x97 quota …); at most
`max_inflight` publishes wait for their PUBACK at a time, fewer if a v5 broker's CONNACK sets a lower
Receive Maximum (between `cork()` and `uncork()` what is written goes out in one write: a batch of
publishes is one system call); `subscribe` waits for its SUBACK; messages from the broker go to
`on_message` (QoS 1 ones are acknowledged after it returned). A keepalive task
sends PINGREQ when nothing was written for the keep-alive interval and drops the connection when the
broker stays silent for 1.5 × that interval: `keepalive_s`, or the Server Keep Alive of a v5 broker's
CONNACK, which the client must use instead (MQTT-3.2.2-21; mosquitto's `max_keepalive` sets it, and
drops a client pinging at a longer interval whenever it is idle). When the connection goes, `lost`
resolves with the reason and every waiting future fails with `ConnectionLost` carrying it. The client does not reconnect: its
users (the uplink, the command listener, the southbound adapter) decide when, with their backoff.

Subscriber mode (the southbound adapter, which acknowledges a message only once its readings are on
disk): give `on_publish` instead of `on_message`. It gets the codec's `Publish` tuple as read (raw
topic bytes, packet id; nothing else is built per message) and the client does not acknowledge it;
the user calls `ack(packet_ids)` in the order the messages came (MQTT requires it), several in one
write. `on_handed_out`, if given, is called once the packets of one socket read (or of a resume)
were handed out, so the user can deal with them as one burst. Its flow control is
`pause_reading()`: no further packet is handed out (those already read wait in the reader) and the
socket is not read, so TCP holds the broker back, whatever its Receive Maximum handling;
`resume_reading()` hands out what waited. While reading is paused the keepalive still pings but
does not count the broker's silence: its PINGRESP waits unread behind the paused reads, and a slow
buffer is not a dead broker. The silence clock restarts on resume.

Packets over `max_packet_bytes` (1 MiB unless the user says otherwise): a v5 CONNECT asks the broker
not to send them (a conforming broker discards such a message and goes on with the next); one that
comes anyway is refused by its fixed header, before its body is buffered, and drops the connection as
any wire error does (`wire_error` is then a `PacketTooLarge`). A 3.1.1 broker cannot be asked: its
oversized PUBLISH is skipped unread and handed to `on_too_large` (a `TooLarge`: topic and packet id)
to be counted and acknowledged like any message, else a QoS 1 one would come back after every
reconnect; without `on_too_large` it is a wire error too.

The other way round, a v5 broker's CONNACK may set its own Maximum Packet Size (`maximum_packet_size`):
a PUBLISH or SUBSCRIBE larger than that is not sent (MQTT-3.2.2-15; mosquitto answers it with
DISCONNECT 0x95, and a QoS 1 message would come back after every reconnect) but refused with
`TooLargeForBroker`, a ValueError: the message is at fault, not the connection, so it is no
`MqttClientError`. Its users size what they send by `maximum_packet_size` so that it does not happen.

Why its own client: aiomqtt's publish() does not return the v5 PUBACK reason code, and reading it
meant reaching into its private paho client; the southbound adapter's own transport already
outran a bare paho subscriber. Every foreign exception (OSError, ssl.SSLError, timeouts) leaving
`connect` becomes a `ConnectFailed` or `ConnectRefused`, so none leaks upward.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self

from gateway.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    MAX_PACKET_BYTES,
    PINGREQ_PACKET,
    PUBLISH,
    ConnAck,
    Disconnect,
    MqttWireError,
    Packet,
    PacketReader,
    PacketTooLarge,
    PubAck,
    Publish,
    SubAck,
    TooLarge,
    Will,
    encode_connect,
    encode_disconnect,
    encode_puback,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    reason_text,
)

__all__ = [
    "ClientSettings",
    "ConnectFailed",
    "ConnectRefused",
    "ConnectionLost",
    "Message",
    "MqttClient",
    "MqttClientError",
    "OnMessage",
    "OnPublish",
    "OnTooLarge",
    "TooLargeForBroker",
]

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_log = logging.getLogger(__name__)
_UNSUPPORTED_PROTOCOL = 0x84
# The Server Keep Alive last logged per (host, port, client id): said once, not at every reconnect.
_told_keep_alive: dict[tuple[str, int, str], int] = {}


class MqttClientError(ConnectionError):
    """Root of the client's errors; each carries a `reason` a log line can show as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectFailed(MqttClientError):
    """No MQTT session: the broker could not be reached, the TLS handshake failed, or no CONNACK in time."""


# CONNACK codes about the client's settings: unsupported protocol version, client id not valid, bad user
# name or password, not authorized, banned, bad authentication method
_REFUSED_SETTINGS = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})


class ConnectRefused(ConnectFailed):
    """The broker answered CONNACK with a failure code (credentials, client id, protocol, ACL); `fix` says
    what to set when the code alone tells (else it is empty)."""

    def __init__(self, code: int, *, v5: bool = True) -> None:
        self.code = code
        self.fix = ""
        if code == _UNSUPPORTED_PROTOCOL:
            # `protocol` is the key of the uplink's and the adapter's sections alike
            self.fix = (
                'set protocol = "3.1.1" (the broker does not speak MQTT 5)'
                if v5
                else 'set protocol = "5" (the broker does not take MQTT 3.1.1)'
            )
        refused = f"the broker refused the connection, got {reason_text(CONNACK, code)} (0x{code:02X})"
        super().__init__(f"{refused}; {self.fix}" if self.fix else refused)

    @property
    def of_settings(self) -> bool:
        """The broker refused what this gateway is set up with (credentials, client id, protocol), not a
        passing state (busy, shutting down): nothing changes until someone fixes the settings."""
        return self.code in _REFUSED_SETTINGS

    def for_log(self) -> str:
        """`[code:N] text; what to do`, as the uplink and its command listener log it."""
        reason = f"[code:{self.code}] {reason_text(CONNACK, self.code)}"
        if self.fix:
            return f"{reason}; {self.fix}"
        if self.of_settings:
            return f"{reason}; check username, password and client_id against the broker's settings"
        return reason


class ConnectionLost(MqttClientError):
    """The connection went while something waited on it."""


class TooLargeForBroker(ValueError):
    """A packet over the broker's Maximum Packet Size (from its CONNACK), not sent; the connection goes on."""

    def __init__(self, kind: str, size: int, limit: int) -> None:
        super().__init__(
            f"mqtt: the broker takes packets of at most {limit} bytes (the Maximum Packet Size in its CONNACK), "
            f"got a {kind} of {size} bytes; not sent"
        )
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    host: str
    port: int
    client_id: str
    v5: bool = True
    keepalive_s: int = 60
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    clean_start: bool = False
    session_expiry_s: int = 0
    will: Will | None = None
    connect_timeout_s: float = 10.0
    max_inflight: int = 100  # our QoS 1 publishes waiting for their PUBACK at a time
    receive_maximum: int = 0  # v5: the broker's unacknowledged QoS 1 messages to us at a time (0: its default)
    # The largest packet taken from the broker, told to a v5 one in CONNECT. Without a limit a broker (or
    # any device publishing to it) could make us buffer 256 MiB a packet. 1 MiB: what Orion takes in one
    # request, 4x the uplink's largest message by default (max_message_bytes); IoT Agent commands and
    # broker acks are a few hundred bytes, device payloads (ChirpStack, Zigbee2MQTT) a few KB. The
    # southbound adapter makes it a key of its own for devices that send more.
    max_packet_bytes: int = 1_048_576


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message from the broker, topic decoded."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: bytes = b""  # raw v5 properties: packets.user_properties() decodes them


OnMessage = Callable[[Message], None]
OnPublish = Callable[[Publish], None]
OnTooLarge = Callable[[TooLarge], None]


class ClientLog(Protocol):
    """Where the client's lines go (a logger, or a component logger carrying the user's name)."""

    def debug(self, msg: str, *args: object) -> None: ...

    def info(self, msg: str, *args: object) -> None: ...


class _Protocol(asyncio.Protocol):
    """The transport half: bytes and the end of the connection, handed to the client's callbacks.

    After a read, while the client waits for more from the broker (PUBACKs, or messages in
    subscriber mode), it asks the kernel to acknowledge at once (TCP_QUICKACK, Linux). A stock
    mosquitto leaves Nagle's algorithm on: it holds a small packet (the next PUBACK, the next
    message) until the previous one is acknowledged, and the kernel delays that acknowledgement up
    to 40 ms when nothing is written back meanwhile. The race workload against stock mosquittos at
    500 readings/s: p99 53-55 ms and 1,520-1,593 bytes written a reading without, 10.5-11.6 ms and
    624-629 bytes with (README, issue 18). The price is an acknowledgement a read.
    """

    def __init__(
        self, on_data: Callable[[bytes], None], on_lost: Callable[[str], None], expects_more: Callable[[], bool]
    ) -> None:
        self._on_data = on_data
        self._on_lost = on_lost
        self._expects_more = expects_more
        self._quickack: tuple[socket.socket, int] | None = None  # the TCP socket and the option

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if _QUICKACK is not None and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A socket of our own on a duplicate of the descriptor: uvloop's transport socket makes a
            # socket object and a getsockname() call for every setsockopt, ~1.1 µs more a read (measured).
            with contextlib.suppress(OSError):  # no descriptor to spare: no quick acknowledgements
                own = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
                self._quickack = (own, _QUICKACK)

    def data_received(self, data: bytes) -> None:
        self._on_data(data)
        if self._quickack is not None and self._expects_more():
            sock, option = self._quickack
            with contextlib.suppress(OSError):  # the connection is going: connection_lost says why
                sock.setsockopt(socket.IPPROTO_TCP, option, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._quickack is not None:
            self._quickack[0].close()  # the duplicate only: the transport closes its own
            self._quickack = None
        self._on_lost(str(exc) if exc else "the broker closed the connection")


class MqttClient:
    """One MQTT session; see the module docstring. `async with MqttClient(...)` connects and disconnects."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        on_message: OnMessage | None = None,
        on_publish: OnPublish | None = None,
        on_handed_out: Callable[[], None] | None = None,
        on_too_large: OnTooLarge | None = None,
        log: ClientLog | None = None,
    ) -> None:
        if on_message is not None and on_publish is not None:
            raise ValueError("MqttClient: on_message or on_publish (subscriber mode), got both")
        if not 2 <= settings.max_packet_bytes <= MAX_PACKET_BYTES:
            raise ValueError(
                f"MqttClient: max_packet_bytes must be 2..{MAX_PACKET_BYTES}, got {settings.max_packet_bytes}"
            )
        self.settings = settings
        self.on_message = on_message
        self._on_publish = on_publish
        self._on_handed_out = on_handed_out
        self._on_too_large = on_too_large
        self._log = log
        # the subscriber mode's hot path skips v5 properties: its user reads topic and payload only
        self._reader = PacketReader(
            v5=settings.v5, keep_properties=on_publish is None, max_packet_bytes=settings.max_packet_bytes
        )
        self.wire_error: MqttWireError | None = None  # set if what the broker sent ended the connection
        self._paused = False
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[ConnAck] | None = None
        self._acks: dict[int, asyncio.Future[int]] = {}
        self._subacks: dict[int, asyncio.Future[SubAck]] = {}
        self._next_id = 0
        # The in-flight window: QoS 1 publishes whose PUBACK has not come, counted as `_acks` (one whose
        # caller stopped waiting still counts: the broker counts it until it answers). Publishes that
        # find it full wait in `_room_waiters`, first come first served.
        self._window = settings.max_inflight
        self._broker_max = MAX_PACKET_BYTES  # the broker's Maximum Packet Size, once its CONNACK came
        self._room_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._last_write = 0.0
        self._last_read = 0.0
        self._corked: list[bytes] | None = None  # writes held by cork(), sent together by uncork()
        self._keepalive: asyncio.Task[None] | None = None
        self._keepalive_s = settings.keepalive_s  # or the broker's Server Keep Alive, once its CONNACK came
        # The loop it was made on, which all its futures belong to. Asked once: on Python 3.11 each
        # asyncio.get_running_loop() is also a getpid() system call, once a message when publishing.
        self._loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[str] = self._loop.create_future()
        self.session_present = False

    # -- lifecycle -------------------------------------------------------------------------------------

    async def connect(self) -> ConnAck:
        """TCP or TLS, CONNECT, CONNACK within `connect_timeout_s`; ConnectFailed / ConnectRefused otherwise."""
        s = self.settings
        loop = self._loop
        self._connack = loop.create_future()
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                transport, _ = await loop.create_connection(
                    lambda: _Protocol(self._received, self._gone, self._expects_more),
                    s.host,
                    s.port,
                    ssl=s.tls,
                    server_hostname=s.host if s.tls else None,
                )
                self._transport = transport
                if self._log is not None:
                    self._log.debug(
                        "Sending CONNECT (client id %s, MQTT %s, keepalive %d s, clean start %s)",
                        s.client_id,
                        "5" if s.v5 else "3.1.1",
                        s.keepalive_s,
                        s.clean_start,
                    )
                self._write(
                    encode_connect(
                        client_id=s.client_id,
                        keepalive_s=s.keepalive_s,
                        v5=s.v5,
                        session_expiry_s=s.session_expiry_s,
                        username=s.username,
                        password=s.password,
                        clean_start=s.clean_start,
                        will=s.will,
                        receive_maximum=s.receive_maximum,
                        maximum_packet_size=s.max_packet_bytes,
                    )
                )
                connack = await asyncio.shield(self._connack)
        except TimeoutError:
            self._abort("no CONNACK")
            raise ConnectFailed(f"no answer from {s.host}:{s.port} within {s.connect_timeout_s:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            reason = _os_reason(exc, s.host)
            self._abort(reason)
            raise ConnectFailed(reason) from None
        except ConnectionLost as exc:
            raise ConnectFailed(exc.reason) from None
        except asyncio.CancelledError:
            self._abort("cancelled")  # a connection half made must not outlive its attempt (and leak its socket)
            raise
        if self._log is not None:
            self._log.debug(
                "Received CONNACK (session present %s, reason 0x%02X)", connack.session_present, connack.reason
            )
        if connack.reason:
            self._abort("refused")
            raise ConnectRefused(connack.reason, v5=s.v5)
        self.session_present = connack.session_present
        self._window = min(s.max_inflight, connack.receive_maximum)
        self._broker_max = min(MAX_PACKET_BYTES, connack.maximum_packet_size)
        self._take_server_keep_alive(connack.server_keep_alive)
        if self._keepalive_s:
            self._keepalive = asyncio.create_task(self._keep_alive(), name=f"mqtt-keepalive:{s.client_id}")
        return connack

    def _take_server_keep_alive(self, keep_alive: int | None) -> None:
        """Use the broker's keep-alive (MQTT-3.2.2-21); logged once while it overrides what was asked."""
        s = self.settings
        key = (s.host, s.port, s.client_id)
        if keep_alive is None or keep_alive == s.keepalive_s:
            _told_keep_alive.pop(key, None)  # should it override again, that is news
            return
        self._keepalive_s = keep_alive
        if _told_keep_alive.get(key) != keep_alive:
            _told_keep_alive[key] = keep_alive
            (self._log or _log).info(
                "broker %s:%d set the keep-alive of client %s to %d s instead of the %d s asked for "
                "(Server Keep Alive in its CONNACK, mosquitto's max_keepalive); %s",
                s.host,
                s.port,
                s.client_id,
                keep_alive,
                s.keepalive_s,
                "pinging at its interval" if keep_alive else "not pinging, as it asks",
            )

    @property
    def keepalive_s(self) -> int:
        """The keep-alive interval of this connection: the broker's Server Keep Alive if its CONNACK set
        one, else `settings.keepalive_s`; 0: no pings."""
        return self._keepalive_s

    async def disconnect(self, *, timeout: float = 1.0) -> None:
        """A clean DISCONNECT (the broker then drops the will) and the socket closed."""
        if self.close():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self.lost)
        self._gone("disconnected")

    def close(self) -> bool:
        """DISCONNECT and close without waiting, for a `finally` that may run while cancelled; what was
        written before (acks included) still goes out. True if there was a connection to close."""
        transport = self._transport
        if transport is None or self.lost.done():
            return False
        if self._log is not None:
            self._log.debug("Sending DISCONNECT")
        self._write(encode_disconnect())
        transport.close()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()  # the socket is ours to close now: nothing more to ping
        return True

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self.lost.done()

    # -- requests --------------------------------------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: bytes = b"\x00"
    ) -> asyncio.Future[int]:
        """Send now (after waiting for an in-flight slot at QoS 1); a future of the PUBACK's reason code
        (done at once for QoS 0). ConnectionLost if there is no connection."""
        if qos == 0:
            self._check()
            packet = encode_publish(topic, payload, qos=0, retain=retain, v5=self.settings.v5, properties=properties)
            if len(packet) > self._broker_max:
                raise TooLargeForBroker("PUBLISH", len(packet), self._broker_max)
            self._write(packet)
            done: asyncio.Future[int] = self._loop.create_future()
            done.set_result(0)
            return done
        fut = self.publish_now(topic, payload, retain=retain, properties=properties)
        if fut is not None:
            return fut
        await self._room()
        return self._publish_qos1(topic, payload, retain, properties)

    def publish_now(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: bytes = b"\x00"
    ) -> asyncio.Future[int] | None:
        """A QoS 1 `publish` while the in-flight window has room, and None when it is full (then `publish`
        waits for room). No coroutine: a window of publishes made one each (~0.5 µs a message)."""
        if len(self._acks) >= self._window or self._room_waiters:
            return None
        return self._publish_qos1(topic, payload, retain, properties)

    @property
    def maximum_packet_size(self) -> int:
        """The largest packet the broker takes: its CONNACK's Maximum Packet Size, or MQTT's own largest
        (also before the CONNACK and for 3.1.1, which cannot say). Larger publishes raise TooLargeForBroker."""
        return self._broker_max

    @property
    def window(self) -> int:
        """QoS 1 publishes that may wait for their PUBACK at a time: `max_inflight`, or the broker's
        Receive Maximum if its CONNACK set a lower one (a client must not send more, MQTT-3.3.4-7)."""
        return self._window

    @property
    def in_flight(self) -> int:
        """QoS 1 publishes sent (or held by `cork`) whose PUBACK has not come."""
        return len(self._acks)

    def _publish_qos1(self, topic: str, payload: bytes, retain: bool, properties: bytes) -> asyncio.Future[int]:
        self._check()
        packet_id = self._packet_id(self._acks)
        packet = encode_publish(
            topic, payload, qos=1, packet_id=packet_id, retain=retain, v5=self.settings.v5, properties=properties
        )
        if len(packet) > self._broker_max:  # before the packet id is taken: nothing waits on it
            raise TooLargeForBroker("PUBLISH", len(packet), self._broker_max)
        fut: asyncio.Future[int] = self._loop.create_future()
        self._acks[packet_id] = fut
        self._write(packet)
        return fut

    async def _room(self) -> None:
        """Wait until the window has room for one more publish, or the connection is gone."""
        if self._corked:
            self._flush_corked()  # the PUBACKs that free the window answer what is held here: send it first
        first = True
        while True:
            waiter: asyncio.Future[None] = self._loop.create_future()
            if first:
                self._room_waiters.append(waiter)
            else:
                self._room_waiters.appendleft(waiter)  # woken, but the room was taken: it keeps its turn
            first = False
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the room it was given goes to the next
                else:
                    with contextlib.suppress(ValueError):  # a wake-up may have dropped it as done already
                        self._room_waiters.remove(waiter)
                raise
            if len(self._acks) < self._window or self.lost.done():
                return

    def _wake_one(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def subscribe(
        self, filters: list[str], *, timeout: float | None = 10.0, retain_handling: Sequence[int] | None = None
    ) -> tuple[int, ...]:
        """SUBSCRIBE at QoS 1; the SUBACK's granted QoS or failure code (>= 0x80) per filter (timeout None:
        until the connection ends). `retain_handling`: MQTT 5 only, one per filter (packets.RETAIN_*)."""
        self._check()
        packet_id = self._packet_id(self._subacks)
        packet = encode_subscribe(packet_id, filters, v5=self.settings.v5, retain_handling=retain_handling)
        if len(packet) > self._broker_max:
            raise TooLargeForBroker("SUBSCRIBE", len(packet), self._broker_max)
        fut: asyncio.Future[SubAck] = self._loop.create_future()
        self._subacks[packet_id] = fut
        self._write(packet)
        try:
            async with asyncio.timeout(timeout):
                return (await fut).reasons
        finally:
            self._subacks.pop(packet_id, None)

    def cork(self) -> None:
        """Hold what is written until `uncork()`, which sends it in one write.

        Each write to a socket on which nothing waits is a system call of its own, and on a box's
        loopback or LAN it also runs the peer's TCP receive path: a batch of 10 publishes to 10 topics
        paid ~80 µs a reading at 500 readings/s in those calls (py-spy). Corked, the batch is one.
        """
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        """Send what cork() held, in one write, and write directly again."""
        self._flush_corked()
        self._corked = None

    def _flush_corked(self) -> None:
        held = self._corked
        if held:
            self._corked = []
            self._send(held[0] if len(held) == 1 else b"".join(held))

    # -- subscriber mode -------------------------------------------------------------------------------

    def ack(self, packet_ids: Sequence[int]) -> None:
        """PUBACK these messages (subscriber mode) in one write, in the order given, which must be the
        order they came. Nothing is written once the connection is lost: the broker redelivers them."""
        if packet_ids and self._transport is not None and not self.lost.done():
            self._write(encode_pubacks(packet_ids))

    @property
    def reading_paused(self) -> bool:
        return self._paused

    def pause_reading(self) -> None:
        """Hand out no further packet and stop reading the socket, until `resume_reading()`; may be called
        from the `on_publish` callback (the packet being handed out is the last one)."""
        if self._paused:
            return
        self._paused = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Hand out, soon, the packets that waited in the reader, then read the socket again."""
        if not self._paused:
            return
        self._paused = False
        self._last_read = time.monotonic()  # the broker's silence is counted from now, not from the pause
        if self._transport is not None and not self._transport.is_closing():
            self._loop.call_soon(self._resume)

    @property
    def unread_bytes(self) -> int:
        """Bytes read from the socket and not yet handed out (they wait while reading is paused)."""
        return self._reader.buffered

    def _resume(self) -> None:
        # What waited goes first, and the socket is read again only if all of it was taken: a reader
        # that was paused again meanwhile keeps the rest and reads nothing more. Resuming the socket
        # first let each pause-resume cycle add a read (256 KiB) to what waits, so a slow consumer of
        # a deep backlog held megabytes here (6.5 MB draining 120,000 readings under uvloop).
        self._dispatch()
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- the transport half ----------------------------------------------------------------------------

    def _expects_more(self) -> bool:
        """Whether the broker is to send more: PUBACKs or SUBACKs awaited, or messages to a subscriber."""
        return bool(self._acks or self._subacks) or self._on_publish is not None or self.on_message is not None

    def _check(self) -> None:
        if self.lost.done():
            raise ConnectionLost(self.lost.result())
        if self._transport is None:
            raise ConnectionLost("not connected")

    def _packet_id(self, used: dict[int, asyncio.Future[int]] | dict[int, asyncio.Future[SubAck]]) -> int:
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._acks and self._next_id not in self._subacks:
                return self._next_id
        raise ConnectionLost("mqtt: all 65,535 packet ids in use")  # pragma: no cover - max_inflight prevents it

    def _write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        else:
            self._send(data)

    def _send(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)
            self._last_write = time.monotonic()

    def _received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        self._reader.feed(data)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hands out the packets read so far, until the reader is empty, reading is paused or the
        connection is gone (then nothing more is handed out: its packet ids are dead)."""
        reader, on_publish, lost = self._reader, self._on_publish, self.lost
        handed_out = False
        try:
            while not self._paused and not lost.done():
                packet = reader.next()
                if packet is None:
                    break
                if on_publish is not None and type(packet) is Publish:
                    on_publish(packet)
                    handed_out = True
                else:
                    self._handle(packet)
        except MqttWireError as exc:
            self.wire_error = exc
            self._abort(str(exc))
        if handed_out and self._on_handed_out is not None:
            self._on_handed_out()

    def _handle(self, packet: Packet) -> None:
        if isinstance(packet, Publish):
            if self.on_message is not None:
                self.on_message(
                    Message(
                        topic=packet.topic.decode("utf-8", "replace"),
                        payload=packet.payload,
                        qos=packet.qos,
                        retain=packet.retain,
                        properties=packet.properties,
                    )
                )
            if packet.qos:
                self._write(encode_puback(packet.packet_id))
        elif isinstance(packet, PubAck):
            fut = self._acks.pop(packet.packet_id, None)
            if fut is not None:
                if self._room_waiters:
                    self._wake_one()
                if not fut.done():
                    fut.set_result(packet.reason)
        elif isinstance(packet, SubAck):
            sub = self._subacks.pop(packet.packet_id, None)
            if sub is not None and not sub.done():
                sub.set_result(packet)
        elif isinstance(packet, ConnAck):
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
        elif isinstance(packet, Disconnect):
            self._abort(f"the broker disconnected us, got {reason_text(DISCONNECT, packet.reason)}")
        elif isinstance(packet, TooLarge):
            self._too_large(packet)
        # PINGRESP: _last_read is all the keepalive needs

    def _too_large(self, packet: TooLarge) -> None:
        """A 3.1.1 broker's PUBLISH over max_packet_bytes, skipped by the reader (see the module docstring)."""
        if self._on_too_large is None:
            self.wire_error = PacketTooLarge(PUBLISH, packet.size, packet.limit)
            self._abort(str(packet))
            return
        self._on_too_large(packet)
        if self._on_publish is None and packet.qos:
            self._write(encode_puback(packet.packet_id))  # as for a message handed to on_message

    async def _keep_alive(self) -> None:
        interval = self._keepalive_s
        while not self.lost.done():
            now = time.monotonic()
            if not self._paused and now - self._last_read > 1.5 * interval:
                self._abort(f"no answer from the broker for {1.5 * interval:g} s (keepalive)")
                return
            if now - self._last_write >= interval:
                self._write(PINGREQ_PACKET)
            await asyncio.sleep(max(0.05, min(interval - (time.monotonic() - self._last_write), interval / 2)))

    def _abort(self, reason: str) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._gone(reason)

    def _gone(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        error = ConnectionLost(self.lost.result())
        for waiting in (self._acks, self._subacks):
            for fut in waiting.values():
                if not fut.done():
                    fut.set_exception(error)
            waiting.clear()
        while self._room_waiters:
            self._wake_one()  # to find the connection gone
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)
            self._connack.exception()  # connect() may have stopped waiting (timeout): nothing else will read it


def _os_reason(exc: OSError, host: str) -> str:
    """`[Errno 111] Connection refused`: asyncio words a refused connect as "Connect call failed (address)".
    A name that does not resolve says so: its code is getaddrinfo's (EAI_*), which os.strerror does not know."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host}: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLError) or not exc.errno:
        return str(exc) or type(exc).__name__
    return f"[Errno {exc.errno}] {os.strerror(exc.errno)}"

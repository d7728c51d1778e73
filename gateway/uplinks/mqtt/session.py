"""One live MQTT connection of the uplink on gateway.mqtt.client: PUBACK futures with their reason codes,
the loss of the connection reported once (with the refusal that brought it, if one did), the TLS context."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.mqtt.client import MqttClient, MqttClientError
from gateway.mqtt.packets import PUBACK, reason_text
from gateway.tls import client_context
from gateway.uplinks.mqtt.config import MqttUplinkConfig

__all__ = [
    "ACL_FIX",
    "CLOSED_AFTER_REFUSAL_S",
    "NOT_AUTHORIZED",
    "PACKET_TOO_LARGE",
    "PubAckCode",
    "Session",
    "tls_context",
]

# mosquitto closes the connection at once after refusing a publish (with max_queued_messages 0): a drop
# this soon after a refusal is that, not an unreachable broker
CLOSED_AFTER_REFUSAL_S = 2.0
# A PUBACK's "not authorized": the broker's ACL refuses this user the topic (readings and command answers)
NOT_AUTHORIZED = 0x87
# What a technician checks after a PUBACK 0x87 (not authorized), for a reading or a command's answer alike
ACL_FIX = "check the broker's ACL for this uplink's username: it must allow publishing on that topic"
# mosquitto answers a QoS 1 message over its message_size_limit with PUBACK 0x95, a code MQTT 5's table
# of PUBACK codes does not list (reason_text follows that table, as paho does, and would say "reason
# code 0x95"): named here, where the uplink reads it.
PACKET_TOO_LARGE = 0x95


@dataclass(frozen=True, slots=True)
class PubAckCode:
    """A PUBACK's reason code: below 0x80 the broker took the message (0x10: nobody subscribed yet)."""

    value: int

    @property
    def is_failure(self) -> bool:
        return self.value >= 0x80

    def __str__(self) -> str:
        if self.value == PACKET_TOO_LARGE:
            return "Packet too large"
        return reason_text(PUBACK, self.value)


class _Corked:
    """`Session.corked()`: one object a connection, not a generator and its context manager a batch."""

    __slots__ = ("_client",)

    def __init__(self, client: MqttClient) -> None:
        self._client = client

    def __enter__(self) -> None:
        self._client.cork()

    def __exit__(self, *exc: object) -> None:
        self._client.uncork()


class Session:
    """One live connection: QoS 1 publishes resolving to their PUBACK code, and `lost` with the reason.

    `on_lost(reason, refused_on)` is called once when the connection goes (not after `close()`), with the
    topic of a message the broker refused as not authorized just before (`note_refusal`), else None.
    """

    def __init__(self, client: MqttClient, on_lost: Callable[[str, str | None], None]) -> None:
        self.client = client
        self._on_lost = on_lost
        self._closing = False
        self._corked = _Corked(client)
        self._refused_on: str | None = None
        self._refused_at = 0.0
        self.lost = client.lost
        self.lost.add_done_callback(self._lost)

    def _lost(self, lost: asyncio.Future[str]) -> None:
        if not self._closing:
            self._on_lost(lost.result(), self.closed_after_refusal())

    def note_refusal(self, topic: str) -> None:
        """The broker refused a message on `topic` as not authorized (PUBACK 0x87). mosquitto may close the
        connection right after (it does with max_queued_messages 0): that loss is the ACL's, not an outage."""
        self._refused_on = topic
        self._refused_at = time.monotonic()

    def closed_after_refusal(self) -> str | None:
        """The topic of the message refused as not authorized just before the connection went; None if it has not
        gone, or no such refusal came within CLOSED_AFTER_REFUSAL_S."""
        if self._refused_on is None or not self.lost.done():
            return None
        return self._refused_on if time.monotonic() - self._refused_at <= CLOSED_AFTER_REFUSAL_S else None

    async def start_publish(
        self, topic: str, payload: bytes, *, retain: bool, properties: bytes
    ) -> asyncio.Future[int]:
        """Publish at QoS 1 now; the future of its PUBACK's reason code (`PubAckCode(code)` says what it
        means). ConnectionError if it cannot go out."""
        # the client's own future: another future chained to it cost a callback and a loop turn a message
        return await self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)

    def publish_now(self, topic: str, payload: bytes, *, retain: bool, properties: bytes) -> asyncio.Future[int] | None:
        """`start_publish` while the client's in-flight window has room, without a coroutine; None when it is full."""
        return self.client.publish_now(topic, payload, retain=retain, properties=properties)

    @property
    def maximum_packet_size(self) -> int:
        """The broker's Maximum Packet Size (MQTT's largest if its CONNACK set none): see MqttClient."""
        return self.client.maximum_packet_size

    def corked(self) -> _Corked:
        """Publishes started inside go out in one write when it ends (see MqttClient.cork)."""
        return self._corked

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool, properties: bytes, timeout: float
    ) -> PubAckCode:
        """Publish at QoS 1 and wait for the PUBACK; ConnectionError or TimeoutError otherwise.

        The timeout covers the wait for room in the in-flight window too: with its window full of
        messages a mute broker never answers, the publish would wait for ever (a `close()` did).
        """
        async with asyncio.timeout(timeout):
            fut = await self.start_publish(topic, payload, retain=retain, properties=properties)
            return PubAckCode(await fut)

    async def close(self) -> None:
        """Disconnect (a DISCONNECT if the link still works, so the broker drops the will)."""
        self._closing = True
        with contextlib.suppress(MqttClientError):
            await self.client.disconnect()


def tls_context(config: MqttUplinkConfig) -> ssl.SSLContext | None:
    """The client TLS context a `tls` table asks for (None without one); unreadable files are ConfigErrors."""
    return None if config.tls is None else client_context(config.tls, f"uplinks.{config.name}")

"""One live MQTT connection of the uplink on gateway.mqtt.client: PUBACK futures with their reason codes,
the loss of the connection reported once, the TLS context."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from gateway.mqtt.client import MqttClient, MqttClientError
from gateway.mqtt.packets import PUBACK, reason_text
from gateway.tls import client_context
from gateway.uplinks.mqtt.config import MqttUplinkConfig

__all__ = ["PACKET_TOO_LARGE", "PubAckCode", "Session", "tls_context"]

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
    """One live connection: QoS 1 publishes resolving to their PUBACK code, and `lost` with the reason."""

    def __init__(self, client: MqttClient, on_lost: Callable[[str], None]) -> None:
        self.client = client
        self._on_lost = on_lost
        self._closing = False
        self._corked = _Corked(client)
        self.lost = client.lost
        self.lost.add_done_callback(self._lost)

    def _lost(self, lost: asyncio.Future[str]) -> None:
        if not self._closing:
            self._on_lost(lost.result())

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

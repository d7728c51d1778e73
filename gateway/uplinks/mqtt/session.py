"""One live MQTT connection of the uplink: PUBACK futures by message id (with their reason codes), a watch
for its loss, the TLS context."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.tls import client_context
from gateway.uplinks.mqtt.config import (
    MqttUplinkConfig,
)


class Session:
    """One live connection: the aiomqtt client, PUBACK futures by message id, and a watch for its loss."""

    def __init__(self, client: aiomqtt.Client, on_lost: Callable[[str], None]) -> None:
        self.client = client
        self._on_lost = on_lost
        self._closing = False
        # aiomqtt's publish() drops the MQTT 5 PUBACK reason code, and a broker refusing a message (ACL,
        # quota, size) still answers PUBACK; so we publish through its paho client and keep the codes.
        self._paho: paho.Client = client._client
        self._paho.on_publish = self._on_publish
        self._acks: dict[int, asyncio.Future[ReasonCode]] = {}
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._watch = asyncio.create_task(self._watch_loss())

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason_code: ReasonCode, _p: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(reason_code)

    async def _watch_loss(self) -> None:
        # We subscribe to nothing: the message iterator only ends when the connection does.
        reason = "connection closed"
        try:
            async for _ in self.client.messages:
                pass
        except aiomqtt.MqttError as exc:
            reason = str(exc.__cause__ or exc)
        if not self.lost.done():
            self.lost.set_result(reason)
            if not self._closing:
                self._on_lost(reason)
        for fut in list(self._acks.values()):
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self._acks.clear()

    def start_publish(
        self, topic: str, payload: bytes, *, retain: bool, properties: Properties | None
    ) -> tuple[int, asyncio.Future[ReasonCode]]:
        """Publish at QoS 1 now; (message id, future of its PUBACK). ConnectionError if it cannot go out."""
        if self.lost.done():
            raise ConnectionError(self.lost.result())
        info = self._paho.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(paho.error_string(info.rc))
        fut: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        return info.mid, fut

    def forget(self, mid: int) -> None:
        """Stop waiting for a message's PUBACK (timed out or abandoned)."""
        self._acks.pop(mid, None)

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool, properties: Properties | None, timeout: float
    ) -> ReasonCode:
        """Publish at QoS 1 and wait for the PUBACK; ConnectionError or TimeoutError otherwise."""
        mid, fut = self.start_publish(topic, payload, retain=retain, properties=properties)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self.forget(mid)

    async def close(self) -> None:
        """Disconnect (a DISCONNECT if the link still works, so the broker drops the will) and stop watching."""
        self._closing = True
        try:
            await self.client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass
        # The watch ends by itself once aiomqtt saw the disconnect; letting it run (rather than
        # cancelling it) is what consumes aiomqtt's disconnect future and its exception.
        try:
            async with asyncio.timeout(1.0):
                await self._watch
        except TimeoutError:
            pass


class PackedProperties(Properties):
    """PUBLISH properties serialized once, with paho's own encoders and in paho's order.

    paho's Properties builds two dicts in __init__, checks every attribute against its name table
    and packs by probing all 27 property names: with messages of ~30 readings that was ~7 % of the
    gateway's CPU at 45,000 readings/s (py-spy). paho calls nothing but pack() on the properties of
    an outgoing PUBLISH (also when it resends one after a reconnect), so this holds the bytes only.
    """

    _packed: bytes

    def __init__(self, packed: bytes) -> None:  # no super().__init__: its tables are never used
        # Properties.__setattr__ only admits property names, hence object.__setattr__
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "_packed", packed)

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:
        return f"<PUBLISH properties, {len(self._packed)} bytes packed>"

    __repr__ = __str__


def tls_context(config: MqttUplinkConfig) -> ssl.SSLContext | None:
    """The client TLS context a `tls` table asks for (None without one); unreadable files are ConfigErrors."""
    return None if config.tls is None else client_context(config.tls, f"uplinks.{config.name}")

"""The pure planning of MQTT uplink messages: parts of a batch packed into messages that fit the broker's
and the IoT Agent's limits, topics checked, PUBLISH properties packed. No I/O.

A message has three limits: `max_message_bytes` (its payload), the broker's Maximum Packet Size when
its CONNACK announced one (the whole PUBLISH: payload, topic, properties and headers, `PacketRoom`) and,
for the IoT Agent formats, the Orion request the agent makes of it (`AgentLimit`). A part over any of
them alone cannot be sent; a `target` learned from a broker's refusals packs smaller without ever
refusing a part."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.errors import ReadingError
from gateway.mqtt.packets import packed_properties, property_block, user_property
from gateway.ngsi import agent_request
from gateway.records import Reading


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    topic: str
    payload: bytes
    indices: tuple[int, ...]  # positions in the batch
    seqs: tuple[int, ...]


# One rendered record: (observed_at, index in the batch, seq, serialized part, what the IoT Agent adds
# per entity to its Orion request, 0 for ngsi-v2). A plain tuple, not a dataclass: one is built per
# reading, and sorting tuples by (observed_at, index) needs no key function (indexes are unique, so the
# comparison never reaches the bytes).
Part = tuple[datetime, int, "int | None", bytes, int]  # indexed with literals: [1] index, [2] seq, [3] body, [4] entity
_ENTITY_BYTES = operator.itemgetter(4)

# Rendered topics by the reading fields their template uses; a gateway has a bounded set of
# devices, and a template rendering plus topic check per reading cost ~1.5 µs (measured).
TOPIC_CACHE_MAX = 10_000


def check_topic(where: str, topic: str) -> str:
    if not topic or any(c in topic for c in "+#\x00") or len(topic.encode()) > 65_535:
        raise ReadingError(
            f"{where}: rendered MQTT topic is empty, too long or holds a wildcard (+ #), got {topic!r}; "
            "change the topic template or the entity id",
            value=topic,
        )
    return topic


class AgentLimit:
    """Orion's request limit behind an IoT Agent, for the parts of one batch (gateway/ngsi/agent_request.py)."""

    __slots__ = ("_batch", "_extra", "_sizing", "_ul", "limit")

    def __init__(
        self, sizing: agent_request.AgentSizing, batch: Sequence[Reading], *, ul: bool, sequence: bool
    ) -> None:
        self.limit = sizing.limit
        self._sizing = sizing
        self._batch = batch
        self._ul = ul
        self._extra = int(sequence)  # the sequence measure is one more attribute

    def fits(self, parts: list[Part], measure_bytes: int) -> bool:
        """True when the parts surely fit one request, judged by their totals alone (the usual message)."""
        entities = sum(map(_ENTITY_BYTES, parts))
        return agent_request.coarse_bound(measure_bytes, len(parts), entities, self._sizing, ul=self._ul) <= self.limit

    def bound(self, part: Part) -> int:
        """What the part adds to the agent's request at most."""
        attributes = len(self._batch[part[1]].attributes) + self._extra
        if self._ul:
            return agent_request.ul_group_bound(part[3], attributes, part[4], self._sizing)
        return agent_request.json_measure_bound(part[3], attributes, part[4], self._sizing)


# What limit a part too big to send alone breaks (see pack_parts)
MAX_MESSAGE_BYTES = "max_message_bytes"
ORION_MAX_REQUEST_BYTES = "orion_max_request_bytes"
BROKER_MAX_PACKET = "broker_max_packet_size"


def packet_overhead(topic: str, properties: int) -> int:
    """A QoS 1 PUBLISH's bytes besides its payload, at most: the first byte and up to 4 length bytes, the
    topic with its length, the packet id, and `properties` (its v5 property block at most, 0 for 3.1.1)."""
    return 1 + 4 + 2 + len(topic.encode()) + 2 + properties


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketRoom:
    """The broker's Maximum Packet Size for the messages of one topic.

    `overhead`: the packet's bytes besides the payload and the seq list (`packet_overhead`); with
    `seq_property` each part's seq adds its digits and a comma to the v5 `seq` user property at most
    (runs collapse to `a-b`, never longer). Bounds, not exact sizes: a message is judged a few bytes
    large at worst, never small.
    """

    limit: int
    overhead: int
    seq_property: bool

    @property
    def room(self) -> int:
        """Bytes a message's payload and seq list may take."""
        return self.limit - self.overhead

    def extra(self, part: Part) -> int:
        seq = part[2]
        return len(str(seq)) + 1 if self.seq_property and seq is not None else 0


def pack_parts(
    parts: list[Part],
    *,
    limit: int,
    size: Callable[[int, int], int],
    weight: Callable[[Part], int],
    agent: AgentLimit | None,
    packet: PacketRoom | None = None,
    target: int | None = None,
) -> tuple[list[list[Part]], list[tuple[Part, str, int]]]:
    """Greedy split of ordered parts into chunks whose payload `size(count, sum of weights)` fits `limit`,
    whose PUBLISH fits the broker's `packet` limit if it has one and, for the IoT Agent formats, whose
    agent request fits Orion's limit. `target`, if smaller than `limit`, packs to it too, but a part over
    it alone still goes alone: it is what the broker's refusals taught, not a limit a part can break.

    Returns the chunks and the parts too big to send alone, each with the limit it breaks
    (MAX_MESSAGE_BYTES, BROKER_MAX_PACKET or ORION_MAX_REQUEST_BYTES) and its size against that limit
    (for BROKER_MAX_PACKET the whole packet's, at most).
    """
    weights = [weight(p) for p in parts]
    total_weight = sum(weights)
    soft = limit if target is None else min(limit, target)
    room = packet.room if packet is not None else None
    extras = [packet.extra(p) for p in parts] if packet is not None else [0] * len(parts)
    if (
        (agent is None or agent.fits(parts, total_weight))
        and size(len(parts), total_weight) <= soft
        and (room is None or size(len(parts), total_weight) + sum(extras) <= room)
        # one part (a topic's one reading, the usual case at everyday rates): the size above was its own
        and (len(parts) == 1 or all(size(1, w) <= limit for w in weights))
    ):
        # the usual case, a topic's share of a batch fits one message: no per-part size arithmetic
        return ([parts] if parts else []), []
    request = agent_request.REQUEST
    bounds = [agent.bound(p) for p in parts] if agent is not None else [0] * len(parts)
    agent_limit = agent.limit if agent is not None else None
    chunks: list[list[Part]] = []
    too_big: list[tuple[Part, str, int]] = []
    current: list[Part] = []
    total = seq_bytes = 0
    requested = request
    for part, w, bound, x in zip(parts, weights, bounds, extras, strict=True):
        alone = size(1, w)
        if alone > limit:
            too_big.append((part, MAX_MESSAGE_BYTES, alone))
            continue
        if packet is not None and alone + x > packet.room:
            too_big.append((part, BROKER_MAX_PACKET, alone + x + packet.overhead))
            continue
        if agent_limit is not None and request + bound > agent_limit:
            too_big.append((part, ORION_MAX_REQUEST_BYTES, request + bound))
            continue
        if current:
            grown = size(len(current) + 1, total + w)
            if (
                grown > soft
                or (room is not None and grown + seq_bytes + x > room)
                or (agent_limit is not None and requested + bound > agent_limit)
            ):
                chunks.append(current)
                current, total, seq_bytes, requested = [], 0, 0, request
        current.append(part)
        total += w
        seq_bytes += x
        requested += bound
    if current:
        chunks.append(current)
    return chunks, too_big


class PropertyPacker:
    """The v5 property block of one uplink's messages: ContentType, the gateway's UserProperty and, if
    the message carries seqs, a `seq` one (byte for byte what `publish_properties` packs of them).

    All but `seq` are the same on every message, so they are packed once: packing the whole block
    for each message cost ~2 µs of a message's ~17 (five strings each time).
    """

    __slots__ = ("_head", "_no_seq", "fixed_bytes")

    def __init__(self, content_type: str, gateway_id: str) -> None:
        self._head = packed_properties(content_type=content_type, user=(("gateway", gateway_id),))
        self._no_seq = property_block(self._head)
        # the block's bytes besides the seq list, at most: its length (up to 4 bytes), the fixed
        # properties, and the `seq` user property's identifier, key and value length
        self.fixed_bytes = 4 + len(self._head) + len(user_property("seq", ""))

    def pack(self, seq: str) -> bytes:
        """The block for a message whose seqs are `seq` (`seq_ranges`), "" for none."""
        if not seq:
            return self._no_seq
        return property_block(self._head + user_property("seq", seq))

"""MQTT uplink: Readings as IoT Agent JSON / UltraLight 2.0 measures or NGSI v2 envelopes, QoS 1 over gateway.mqtt.client.

A record is DELIVERED only once the broker's PUBACK for its message came back; messages of a batch
are pipelined (bounded in flight). A lost connection turns every unacknowledged record into RETRY and
the next `deliver` reconnects (the delivery loop spaces the calls with its backoff). The session is
persistent (fixed client id, clean start off), and the gateway's state is a retained JSON document on
the status topic: `online` at connect, `offline` on a clean close or, through the last will, on a crash.

For the IoT Agent formats a message is also sized for what the agent makes of it: one Orion request
per message, which must stay under Orion's limit (gateway/ngsi/agent_request.py); and with
`[uplinks.confirm]` a record is DELIVERED only once Orion shows its entity arrived
(confirm.py), one message per entity at a time.

Sizes the broker sets: an MQTT 5 broker's CONNACK may carry a Maximum Packet Size, which no PUBLISH
may exceed (the broker drops the connection, and the message would come back after every
reconnect): messages are planned within it on that connection, and a reading whose message alone
would be larger is REJECTED. A broker's `message_size_limit` is said nowhere; it refuses a message
over it with PUBACK 0x95. A message of several readings so refused is RETRY, and from then on, for
as long as the uplink runs, messages are packed to half its size at most (down to one reading a
message): a broker that drops the connection after such a refusal (mosquitto does with
`max_queued_messages 0`) would otherwise be sent the same message at every reconnect. One reading
refused so is REJECTED.

A message the broker's ACL refuses (PUBACK 0x87) is RETRY as a configuration fault, counted in
`not_authorized`: the record is sound and goes once the ACL lets it, and meanwhile nothing is
dead-lettered. mosquitto may close the connection right after such a refusal; that loss, and the
messages of the batch it took along, are said to be the refusal's (topic, code, the ACL to check), not
an unreachable broker. MQTT 3.1.1 has no PUBACK codes: mosquitto acknowledges a message its ACL denies
and drops it, which no client can tell from a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import orjson

from gateway.adapter_api import AdapterContext
from gateway.buffer.store import settled
from gateway.errors import ReadingError
from gateway.logs import StateLog, component_logger
from gateway.mqtt.client import (
    ClientSettings,
    ConnectFailed,
    ConnectRefused,
    MqttClient,
    TooLargeForBroker,
)
from gateway.mqtt.packets import MAX_PACKET_BYTES, Will
from gateway.ngsi import agent_request, iota, v2
from gateway.ngsi.ld import DropKey, MetadataDrops
from gateway.records import Reading, iso_utc, utc_now
from gateway.secrets import resolve
from gateway.uplinks.api import (
    DELIVERED,
    CommandRoutes,
    Fault,
    Lifecycle,
    Outcome,
    Status,
    UplinkConfig,
)
from gateway.uplinks.mqtt.commands import IDENTITY_TEMPLATE, MqttCommandListener
from gateway.uplinks.mqtt.config import (
    CommandMode,
    MqttFormat,
    MqttProtocol,
    MqttUplinkConfig,
    TopicStyle,
)
from gateway.uplinks.mqtt.confirm import OrionConfirmer
from gateway.uplinks.mqtt.planning import (
    BROKER_MAX_PACKET,
    MAX_MESSAGE_BYTES,
    TOPIC_CACHE_MAX,
    AgentLimit,
    Message,
    PacketRoom,
    Part,
    PropertyPacker,
    check_topic,
    pack_parts,
    packet_overhead,
)
from gateway.uplinks.mqtt.session import ACL_FIX, NOT_AUTHORIZED, PACKET_TOO_LARGE, PubAckCode, Session, tls_context
from gateway.uplinks.seqs import seq_ranges

__all__ = ["MqttCounters", "MqttUplink"]

# PUBACK codes that condemn the message itself; others (quota, not authorized, unspecified) are the
# broker's state or configuration and clear up without touching the record, so they retry. "Packet
# too large" (0x95) condemns a message of one reading only: several are sent again in smaller messages.
_PERMANENT_CODES = {0x90, 0x99}  # topic name invalid, payload format invalid
# A PUBACK's "not authorized" (NOT_AUTHORIZED): the broker refuses this gateway's settings (its ACL). Nothing
# gets through until someone fixes them, so the outcome is a configuration fault and the delivery loop says
# `refused`, at ERROR, as for a refused CONNACK (gateway.mqtt.client.ConnectRefused.of_settings).
NO_PROPERTIES = b"\x00"  # an empty v5 property block
# The link's state while the broker closes the connection after each ACL refusal (StateLog)
_CLOSED_AFTER_REFUSAL = "closed after refusal"


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass(slots=True)
class MqttCounters:
    """Running totals for metrics: messages published / acknowledged, payload bytes acknowledged, reconnects."""

    published: int = 0
    acked: int = 0
    bytes: int = 0
    reconnects: int = 0
    rejected: int = 0  # records dead-lettered: counted when the buffer's acknowledgement settles them
    retried: int = 0
    not_authorized: int = 0  # records of messages the broker's ACL refused (PUBACK 0x87): retried, not dead-lettered
    confirmed: int = 0  # [uplinks.confirm]: records Orion showed arrived
    republished: int = 0  # [uplinks.confirm]: records acknowledged by the broker but not seen in Orion in time
    confirm_errors: int = 0  # [uplinks.confirm]: queries to Orion that failed


def _measures(fmt: MqttFormat, gw: bytes) -> tuple[Callable[[int, int], int], Callable[[Part], int]]:
    """How a format's message grows: its payload's size for n parts of these total weights, and a part's weight."""
    if fmt is MqttFormat.IOTA_JSON:

        def size(n: int, total: int) -> int:
            return total if n == 1 else total + n + 1  # [a,b,c]
    elif fmt is MqttFormat.IOTA_UL:

        def size(n: int, total: int) -> int:
            return total + n - 1  # a#b#c
    else:
        head = len(b'{"gateway":' + gw + b',"seq":[],"entities":[]}')

        def size(n: int, total: int) -> int:
            return head + total + 2 * (n - 1)  # commas in both the seq and the entities list

    def weight(part: Part) -> int:
        seq = part[2]
        if fmt is MqttFormat.NGSI_V2 and seq is not None:
            return len(part[3]) + len(str(seq))  # the envelope also lists the part's seq
        return len(part[3])

    return size, weight


class MqttUplink(Lifecycle):
    """Delivers batches to an MQTT broker; see the module docstring and MQTT.md. With `commands = "on"`
    it is also a command source (gateway.uplinks.api.CommandSource): a listener of its own on the
    agent's command topics, started and stopped by the runtime."""

    config_model: ClassVar[type[UplinkConfig]] = MqttUplinkConfig

    def __init__(self, config: UplinkConfig, context: AdapterContext) -> None:
        if not isinstance(config, MqttUplinkConfig):
            raise TypeError(f"MqttUplink needs an MqttUplinkConfig, got {type(config).__name__}")
        self.config = config
        self.name = config.name
        self._context = context
        self._log = component_logger("gateway.uplinks.mqtt", config.name)  # the family's name, not the module's
        self._client_log = component_logger("gateway.uplinks.mqtt.client", config.name)  # the MQTT client's lines
        self.client_id = config.effective_client_id(context.gateway_id)
        self.status_topic = config.render_status_topic(context.gateway_id)
        self.port = config.port or (8883 if config.tls else 1883)
        self.counters = MqttCounters()
        iota_format = config.format is not MqttFormat.NGSI_V2
        self._apikeys = [
            (rule, re.compile(rule.entity_id_pattern) if rule.entity_id_pattern else None) for rule in config.apikeys
        ]
        self._sequence = config.sequence_measure if iota_format else None
        self._sizing = (
            agent_request.sizing(
                limit=config.orion_max_request_bytes,
                attribute_allowance=config.agent_attribute_bytes,
                entity_allowance=config.agent_entity_bytes,
            )
            if iota_format
            else None
        )
        # the PUBLISH properties: the gateway's id, the payload's content type and each message's seqs
        self._packer = (
            PropertyPacker(
                "text/plain" if config.format is MqttFormat.IOTA_UL else "application/json", context.gateway_id
            )
            if config.protocol is MqttProtocol.V5
            else None
        )
        self._confirmer = None
        if config.confirm is not None and self._sequence is not None:
            self._confirmer = OrionConfirmer(
                config.confirm,
                attribute=self._sequence,
                uplink=config.name,
                data_dir=str(context.data_dir),
                log=self._log,
            )
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._prepared = False
        self._session: Session | None = None
        self._ever_connected = False
        self._link = StateLog(self._log, failing="starting")  # the broker connection: news on change only
        self._last_error = "not connected yet"
        self._link_problem = self._last_error  # what status.json says of the link while it fails, else ""
        self._refused = False  # the broker's last CONNACK refused our settings (credentials, client id)
        self._lock = asyncio.Lock()
        self._commands: MqttCommandListener | None = None
        # payload bytes a message is packed to at most since the broker refused a larger one as too large
        # (PUBACK 0x95); None until it does. Kept while the uplink runs: see the module docstring.
        self._learned_limit: int | None = None
        # (topic, what the agent adds per entity to its Orion request) by the reading fields that decide them
        self._topics: dict[object, tuple[str, int]] = {}
        used = iota.template_fields(config.topic if config.format is MqttFormat.NGSI_V2 else config.device_id)
        if config.confirm is not None:  # the Orion entity id sizes the agent's request too
            used |= iota.template_fields(config.confirm.entity_id) - {"device_id"}
        # the default templates use the entity id alone: key the topic cache by it, no tuple per reading
        self._topic_by_id = used <= {"entity_id", "gateway_id"} and not any(r.entity_type for r in config.apikeys)
        self._gw = orjson.dumps(context.gateway_id)
        self._size, self._weight = _measures(config.format, self._gw)
        # ngsi-v2: the unitCode metadata a unit overrides, counted once its reading is delivered (as the orion
        # uplink does); the IoT Agent formats carry no metadata, and never note any
        self._drops = MetadataDrops(config.name, entity="NGSI v2", logger=v2.log)
        self._planned_drops: dict[int, tuple[DropKey, ...]] = {}  # by batch index, from the last _plan

    # -- lifecycle ---------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Resolve the password and load TLS material: configuration errors surface here, at start."""
        if self._prepared:
            return
        if self.config.password is not None:
            self._password = resolve(self.config.password, self._context.data_dir)
        self._tls = tls_context(self.config)
        if self.config.tls is not None and not self.config.tls.checks_peer:
            # gateway/tls.py's promise for verify = "off": said at every start (the broker password is at stake)
            self._log.warning(
                "TLS certificate checks are off for mqtt://%s:%d; use tls.ca_file instead", self.config.host, self.port
            )
        self._prepared = True

    async def start(self) -> None:
        """Check secrets and TLS files (ConfigError), then try to connect once; a dead broker is not an error."""
        self._prepare()
        if self._confirmer is not None:
            await self._confirmer.start()
        async with self._lock:
            if self._session is None:
                self._session = await self._connect()

    # -- commands (the CommandSource capability) ----------------------------------------------------

    async def start_commands(self, routes: CommandRoutes) -> None:
        """Listen on the agent's command topics and hand each command to `routes`; nothing with commands off."""
        cfg = self.config
        if cfg.commands is not CommandMode.ON or self._commands is not None:
            return
        # an agent names devices by the `device_id` template: the router keeps the reverse map for it
        entity_of = None if cfg.device_id == IDENTITY_TEMPLATE else routes.device_index(cfg.device_id).entity_of
        self._commands = MqttCommandListener(cfg, self._context, routes.dispatch, entity_of=entity_of)
        self._commands.start()

    async def stop_commands(self) -> None:
        listener, self._commands = self._commands, None
        if listener is not None:
            await listener.stop()

    @property
    def commands_connected(self) -> bool:
        """True while the command listener has a live connection (False with commands off)."""
        return self._commands is not None and self._commands.connected

    def diagnostics(self) -> dict[str, Any]:
        """The counters, for status.json: what the broker took, and with confirmation what reached Orion;
        `link`: `connected`, or why the broker connection is failing."""
        out: dict[str, Any] = asdict(self.counters)
        if self._confirmer is None:
            for key in ("confirmed", "republished", "confirm_errors"):
                del out[key]
        out["link"] = self._link_problem or "connected"
        if self.config.format is MqttFormat.NGSI_V2:
            out.update(self._drops.diagnostics())
        return out

    async def close(self) -> None:
        """Publish `offline` (retained) and disconnect cleanly, so the broker drops the last will."""
        async with self._lock:
            if self._confirmer is not None:
                await self._confirmer.close()
            session, self._session = self._session, None
            if session is None:
                return
            if not session.lost.done():
                with contextlib.suppress(ConnectionError, TimeoutError, TooLargeForBroker):
                    await session.publish(
                        self.status_topic,
                        self._status("offline", "closed"),
                        retain=True,
                        properties=NO_PROPERTIES,
                        timeout=min(self.config.ack_timeout_s, 5.0),
                    )
            await session.close()
            self._log.info("disconnected from %s:%d", self.config.host, self.port)

    # -- connection --------------------------------------------------------------------------------

    def _status(self, state: str, reason: str = "") -> bytes:
        doc: dict[str, Any] = {"gateway": self._context.gateway_id, "state": state, "time": iso_utc(utc_now())}
        if reason:
            doc["reason"] = reason
        return orjson.dumps(doc)

    def _mark_up(self) -> None:
        """A connection is made. It ends an outage, not an ACL spell: every retry reconnects and is refused and
        closed again, so only a delivery ends that (`_delivered_again`)."""
        if self._link.state != _CLOSED_AFTER_REFUSAL:
            self._link_problem = ""
            self._link.ok("connected to %s:%d as %s", self.config.host, self.port, self.client_id)

    def _delivered_again(self, final: list[Outcome], retried: int) -> None:
        """After an ACL spell, a batch that went through whole ends it: the broker takes our messages again."""
        if self._link.state == _CLOSED_AFTER_REFUSAL and not retried and DELIVERED in final:
            self._link_problem = ""
            self._link.ok("connected to %s:%d as %s", self.config.host, self.port, self.client_id)

    def _mark_down(self, reason: str) -> None:
        self._last_error = reason
        verb = "refused the connection" if self._refused else "unreachable"
        host, port = self.config.host, self.port
        self._link_problem = f"broker {host}:{port} {verb}: {reason}"
        if not self._link.fail(
            "down", logging.WARNING, "broker %s:%d %s, readings stay buffered: %s", host, port, verb, reason
        ):
            self._log.debug("broker %s:%d still %s: %s", host, port, verb, reason)

    def _lost(self, reason: str, refused_on: str | None) -> None:
        """The connection went (the Session's callback): right after an ACL refusal that is the broker's answer to
        it, not an outage, and said as such: once a spell, which lasts until a batch goes through whole."""
        if refused_on is None:
            self._mark_down(reason)
            return
        host, port = self.config.host, self.port
        what = f"closed the connection after refusing a message on {refused_on} as not authorized (0x87)"
        self._link_problem = f"broker {host}:{port} {what}; {ACL_FIX}"
        if not self._link.fail(
            _CLOSED_AFTER_REFUSAL,
            logging.WARNING,
            "broker %s:%d %s, readings stay buffered; %s",
            host,
            port,
            what,
            ACL_FIX,
        ):
            self._log.debug("broker %s:%d %s again", host, port, what)

    async def _connect(self) -> Session | None:
        cfg = self.config
        v5 = cfg.protocol is MqttProtocol.V5
        client = MqttClient(
            ClientSettings(
                host=cfg.host,
                port=self.port,
                client_id=self.client_id,
                v5=v5,
                keepalive_s=cfg.keepalive_s,
                username=cfg.username,
                password=self._password,
                tls=self._tls,
                # a persistent session: what the broker queued for us survives a reconnect
                clean_start=False,
                session_expiry_s=cfg.session_expiry_s if v5 else 0,
                will=Will(
                    topic=self.status_topic, payload=self._status("offline", "connection lost"), qos=1, retain=True
                ),
                connect_timeout_s=cfg.connect_timeout_s,
                # the in-flight window: the broker's Receive Maximum caps it further (see _send_window)
                max_inflight=cfg.max_inflight,
            ),
            log=self._client_log,
        )
        try:
            await client.connect()
        except ConnectRefused as exc:
            self._refused = exc.of_settings
            self._mark_down(exc.for_log())
            return None
        except ConnectFailed as exc:
            self._refused = False
            self._mark_down(exc.reason)
            return None
        self._refused = False
        session = Session(client, self._lost)
        try:
            code = await session.publish(
                self.status_topic,
                self._status("online"),
                retain=True,
                properties=NO_PROPERTIES,
                timeout=cfg.ack_timeout_s,
            )
        except (ConnectionError, TimeoutError) as exc:
            await session.close()
            # str(TimeoutError()) is empty: say what timed out
            self._mark_down(f"status publish failed: {str(exc) or f'no PUBACK within {cfg.ack_timeout_s:g} s'}")
            return None
        except TooLargeForBroker as exc:  # a broker whose limit is below ~200 bytes: readings may still fit
            self._log.warning("status message on %s not published: %s", self.status_topic, exc)
        else:
            if code.value == NOT_AUTHORIZED:
                session.note_refusal(self.status_topic)
                self._log.log(
                    # at every reconnect of a spell of ACL closes: said once, with the spell
                    logging.DEBUG if self._link.state == _CLOSED_AFTER_REFUSAL else logging.WARNING,
                    "broker refused the status message on %s, got PUBACK not authorized (0x87); %s",
                    self.status_topic,
                    ACL_FIX,
                )
            elif code.is_failure:
                self._log.warning("broker refused the status message on %s: %s", self.status_topic, code)
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self._mark_up()
        return session

    # -- planning (pure) ---------------------------------------------------------------------------

    def _apikey(self, reading: Reading) -> str:
        """The API key of the agent's config group for this reading: the first matching rule, else `apikey`."""
        for rule, pattern in self._apikeys:
            if (rule.entity_type is None or rule.entity_type == reading.entity_type) and (
                pattern is None or pattern.fullmatch(reading.entity_id)
            ):
                return rule.apikey
        if self.config.apikey is None:
            raise ReadingError(
                f"{reading.entity_id}: no apikey for entity type {reading.entity_type!r}, got no [[uplinks.apikeys]] "
                "rule that matches it and no apikey; add a rule or set apikey",
                entity_id=reading.entity_id,
            )
        return self.config.apikey

    def _iota_topic(self, apikey: str, device: str) -> str:
        prefix = ""
        if self.config.topic_style is TopicStyle.PROTOCOL:
            prefix = "/json" if self.config.format is MqttFormat.IOTA_JSON else "/ul"
        return f"{prefix}/{apikey}/{device}/attrs"

    def orion_entity_id(self, reading: Reading) -> str:
        """The id of the Orion entity the agent writes this reading to (`confirm.entity_id`, default the entity id)."""
        confirm = self.config.confirm
        if confirm is None or confirm.entity_id == "{entity_id}":
            return reading.entity_id
        device = iota.device_id(reading, self.config.device_id) if "{device_id}" in confirm.entity_id else ""
        return confirm.entity_id.format(
            entity_id=reading.entity_id,
            entity_type=reading.entity_type,
            adapter=reading.source.adapter,
            device=reading.source.device,
            device_id=device,
        )

    def _make_topic(self, reading: Reading) -> tuple[str, int]:
        cfg = self.config
        if cfg.format is MqttFormat.NGSI_V2:
            topic = cfg.topic.format(
                gateway_id=self._context.gateway_id,
                entity_type=reading.entity_type,
                entity_id=reading.entity_id,
                adapter=reading.source.adapter,
                device=reading.source.device,
            )
            return check_topic(f"{reading.entity_id}: topic", topic), 0
        assert self._sizing is not None
        topic = self._iota_topic(self._apikey(reading), iota.device_id(reading, cfg.device_id))
        return topic, self._sizing.entity(self.orion_entity_id(reading), reading.entity_type)

    def _topic(self, reading: Reading) -> tuple[str, int]:
        """The reading's topic and per-entity agent bytes, from the cache when its template fields were seen before."""
        key: object = (
            reading.entity_id
            if self._topic_by_id
            else (reading.entity_id, reading.entity_type, reading.source.adapter, reading.source.device)
        )
        found = self._topics.get(key)
        if found is None:
            found = self._make_topic(reading)  # a ReadingError is raised each time, never cached
            if len(self._topics) >= TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[key] = found
        return found

    def _render(self, reading: Reading) -> tuple[str, bytes, int]:
        """(topic, serialized part, per-entity agent bytes) of one reading; ReadingError if it cannot be sent so."""
        cfg = self.config
        enc = cfg.value_encoding
        topic, entity = self._topic(reading)
        if cfg.format is MqttFormat.NGSI_V2:
            return topic, orjson.dumps(v2.to_v2_entity(reading, encoding=enc, drops=self._drops)), 0
        if cfg.format is MqttFormat.IOTA_JSON:
            return topic, iota.json_measure_bytes(reading, encoding=enc, sequence=self._sequence), entity
        return topic, iota.ul_group(reading, encoding=enc, sequence=self._sequence).encode(), entity

    def _broker_packet_limit(self) -> int | None:
        """The Maximum Packet Size of the live connection's broker; None without one, or if it set none."""
        session = self._session
        if session is None or session.lost.done() or session.maximum_packet_size >= MAX_PACKET_BYTES:
            return None
        return session.maximum_packet_size

    def _packet_room(self, topic: str, limit: int) -> PacketRoom:
        packer = self._packer
        overhead = packet_overhead(topic, packer.fixed_bytes if packer is not None else 0)
        return PacketRoom(limit=limit, overhead=overhead, seq_property=packer is not None)

    def _plan(self, batch: Sequence[Reading], broker_limit: int | None = None) -> tuple[list[Message], dict[int, str]]:
        """Messages for a batch (one per topic, split by size) and the records that cannot be sent;
        `broker_limit`: the Maximum Packet Size of the broker they go to, if it announced one. The metadata
        each record's entity left out (ngsi-v2) are in `_planned_drops` until the next plan."""
        cfg = self.config
        rejected: dict[int, str] = {}
        self._planned_drops = dropped = {}
        by_topic: dict[str, list[Part]] = {}
        render = self._render
        with self._drops.held() as noted:
            for i, reading in enumerate(batch):
                try:
                    topic, body, entity = render(reading)
                except ReadingError as exc:
                    rejected[i] = str(exc)
                    noted.clear()
                    continue
                if noted:
                    dropped[i] = tuple(noted)
                    noted.clear()
                items = by_topic.get(topic)
                if items is None:
                    items = by_topic[topic] = []
                items.append((reading.observed_at, i, reading.seq, body, entity))

        gw, size, weight = self._gw, self._size, self._weight
        agent = (
            None
            if self._sizing is None
            else AgentLimit(
                self._sizing, batch, ul=cfg.format is MqttFormat.IOTA_UL, sequence=self._sequence is not None
            )
        )
        messages: list[Message] = []
        for topic, items in by_topic.items():
            if cfg.format is not MqttFormat.NGSI_V2:
                # The agents apply a multi-measure in array order; Orion keeps the last one as current.
                # Sorted by (observed_at, index): the index is unique, so the bytes are never compared.
                items.sort()
            chunks, too_big = pack_parts(
                items,
                limit=cfg.max_message_bytes,
                size=size,
                weight=weight,
                agent=agent,
                packet=None if broker_limit is None else self._packet_room(topic, broker_limit),
                target=self._learned_limit,
            )
            for part, key, n in too_big:
                index = part[1]
                entity_id = batch[index].entity_id
                if key == MAX_MESSAGE_BYTES:
                    rejected[index] = (
                        f"{entity_id}: message of {n} bytes exceeds max_message_bytes {cfg.max_message_bytes}, "
                        "got one reading too large to send; raise max_message_bytes (within the broker's limit) "
                        "or split the reading at the source"
                    )
                elif key == BROKER_MAX_PACKET:
                    rejected[index] = (
                        f"{entity_id}: the broker takes MQTT packets of at most {broker_limit} bytes (the "
                        f"Maximum Packet Size of its CONNACK), got one reading whose message alone would be "
                        f"up to {n} bytes; raise the broker's max_packet_size or split the reading at the source"
                    )
                else:
                    rejected[index] = (
                        f"{entity_id}: the IoT Agent would send Orion a request of up to {n} bytes for this one "
                        f"reading, over orion_max_request_bytes {cfg.orion_max_request_bytes}, got one reading too "
                        "large for Orion; raise orion_max_request_bytes to the Orion's -inReqPayloadMaxSize or "
                        "split the reading at the source"
                    )
            # a loop, not extend() over a generator, which resumed a frame a message
            for chunk in chunks:
                messages.append(self._message(topic, chunk, gw))  # noqa: PERF401 -- see above
        return messages, rejected

    def _message(self, topic: str, parts: list[Part], gw: bytes) -> Message:
        if len(parts) == 1 and self.config.format is not MqttFormat.NGSI_V2:
            # a message of one reading, the usual one at everyday rates: its body is the payload
            _, index, seq, body, _ = parts[0]
            return Message(topic=topic, payload=body, indices=(index,), seqs=() if seq is None else (seq,))
        seqs = tuple(p[2] for p in parts if p[2] is not None)
        bodies = [p[3] for p in parts]
        if self.config.format is MqttFormat.IOTA_JSON:
            payload = iota.json_payload(bodies)
        elif self.config.format is MqttFormat.IOTA_UL:
            payload = b"#".join(bodies)
        else:
            payload = (
                b'{"gateway":'
                + gw
                + b',"seq":'
                + orjson.dumps(list(seqs))
                + b',"entities":['
                + b",".join(bodies)
                + b"]}"
            )
        return Message(topic=topic, payload=payload, indices=tuple(p[1] for p in parts), seqs=seqs)

    def _properties(self, message: Message) -> bytes:
        packer = self._packer
        if packer is None:
            return NO_PROPERTIES  # MQTT 3.1.1 has none: the client leaves the block out
        return packer.pack(seq_ranges(message.seqs) if message.seqs else "")

    # -- delivery ----------------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        """One Outcome per record, in order; DELIVERED only after the broker's PUBACK. Never raises for delivery."""
        async with self._lock:
            outcomes: list[Outcome | None] = [None] * len(batch)
            planned_for = self._broker_packet_limit()
            messages, rejected = self._plan(batch, planned_for)
            if messages:
                if self._session is not None and self._session.lost.done():
                    # dropped while idle (already logged by the watch): reconnect now rather than fail a batch
                    await self._session.close()
                    self._session = None
                if self._session is None:
                    self._prepare()
                    self._session = await self._connect()
                if (limit := self._broker_packet_limit()) != planned_for:
                    # the CONNACK just received set another Maximum Packet Size: plan by it (without a
                    # connection none applies, and what was planned goes back to the buffer anyway)
                    messages, rejected = self._plan(batch, limit)
            for i, reason in rejected.items():
                outcomes[i] = Outcome(Status.REJECTED, reason)
            if messages:
                if self._session is None:
                    verb = "refused the connection" if self._refused else "unreachable"
                    retry = Outcome(
                        Status.RETRY,
                        f"broker {self.config.host}:{self.port} {verb}: {self._last_error}",
                        Fault.CONFIGURATION if self._refused else Fault.UNREACHABLE,
                    )
                    for m in messages:
                        for i in m.indices:
                            outcomes[i] = retry
                elif self._confirmer is None:
                    await self._send_all(self._session, messages, outcomes)
                else:
                    await self._send_confirmed(self._confirmer, self._session, messages, outcomes, batch)
            final = [o if o is not None else Outcome(Status.RETRY, "not sent") for o in outcomes]
            retried = sum(1 for o in final if o.status is Status.RETRY)
            self.counters.retried += retried
            done = self._count_settled(batch, final)
            if self._planned_drops:
                for i, keys in self._planned_drops.items():
                    if i in done and final[i].status is Status.DELIVERED:
                        self._drops.count(keys)
            self._delivered_again(final, retried)
            return final

    def _count_settled(self, batch: Sequence[Reading], final: list[Outcome]) -> range | set[int]:
        """Count the rejections the buffer's acknowledgement settles (a lane's records after its first RETRY are
        sent again, and counted then, once); returns the settled positions."""
        if final.count(DELIVERED) == len(final):
            return range(len(final))  # the usual batch: no test per record
        done = settled(batch, final)
        self.counters.rejected += sum(1 for i in done if final[i].status is Status.REJECTED)
        return set(done)

    async def _send_confirmed(
        self,
        confirmer: OrionConfirmer,
        session: Session,
        messages: list[Message],
        outcomes: list[Outcome | None],
        batch: Sequence[Reading],
    ) -> None:
        """Rounds of one message per Orion entity: publish, then wait until Orion shows each entity at its last seq.

        A message of an entity goes out only once the entity's previous message is confirmed: a newer
        message arriving would otherwise also "confirm" an older one that was lost. Records of an
        entity not confirmed in time, and its later messages, are RETRY.
        """
        queues: dict[str, deque[Message]] = {}
        for message in messages:
            # the agent applies the message's elements in time order: its last element's seq is what stays
            queues.setdefault(self.orion_entity_id(batch[message.indices[-1]]), deque()).append(message)
        while queues:
            current = {entity_id: queue.popleft() for entity_id, queue in queues.items()}
            await self._send_all(session, list(current.values()), outcomes)
            targets: dict[str, int] = {}
            for entity_id, message in current.items():
                seq = batch[message.indices[-1]].seq
                if outcomes[message.indices[0]] is DELIVERED and seq is not None:
                    targets[entity_id] = seq
            confirmation = await confirmer.wait(targets) if targets else None
            self.counters.confirm_errors = confirmer.errors
            for entity_id, message in current.items():
                queue = queues[entity_id]
                if confirmation is not None and entity_id in confirmation.confirmed:
                    self.counters.confirmed += len(message.indices)
                    if not queue:
                        del queues[entity_id]
                    continue
                if entity_id in targets:  # the broker has it, Orion does not show it
                    assert confirmation is not None
                    late = Outcome(Status.RETRY, confirmation.reason)
                    self.counters.republished += len(message.indices)
                    for i in message.indices:
                        outcomes[i] = late
                waiting = Outcome(
                    Status.RETRY, f"{entity_id}: not sent, an earlier message of the entity is not confirmed in Orion"
                )
                for later in queue:
                    for i in later.indices:
                        outcomes[i] = waiting
                del queues[entity_id]
            if self._session is not session:
                return  # the connection is gone: what is left was never sent and stays RETRY

    async def _send_window(self, session: Session, messages: list[Message]) -> list[object]:
        """Every message published, at most the client's in-flight window at a time; a result each, in order.

        A result is the PUBACK's code (a `PubAckCode`), the exception that ended its wait
        (`TimeoutError` once no PUBACK came for ack_timeout_s, a `ConnectionError`, `CancelledError`),
        or None for a message the batch ended before publishing. What fits the window goes out in one
        write, and the rest follow as PUBACKs make room, one write for each burst of them: a drain
        batch holds a message per device, and a v5 broker may take fewer at a time (stock mosquitto
        says 20) than max_inflight. One task for the whole batch, a timer a wait (one a batch when the
        window holds it), a callback a PUBACK: a task, a semaphore and a timer a message cost ~40 µs a
        message, and asyncio.wait a callback and a loop turn a message.
        """
        cfg = self.config
        counters = self.counters
        loop = asyncio.get_running_loop()
        count = len(messages)
        results: list[object] = [None] * count
        sent: dict[asyncio.Future[int], int] = {}  # future -> position
        wake: asyncio.Future[None] | None = None
        nxt = left = 0  # the next message to publish; those published and not answered
        answered_at = loop.time()

        def arrived(k: int, fut: asyncio.Future[int]) -> None:
            # counted as PUBACKs arrive, so metrics move during a long batch
            nonlocal left, answered_at
            if not fut.cancelled() and fut.exception() is None:
                counters.published += 1
                code = fut.result()
                if code < 0x80:  # PubAckCode.is_failure, without an object a message
                    counters.acked += 1
                    counters.bytes += len(messages[k].payload)
                elif code == NOT_AUTHORIZED:
                    # noted now, before the loss of the connection mosquitto may follow it with is reported
                    session.note_refusal(messages[k].topic)
            left -= 1
            answered_at = loop.time()
            if (left == 0 or nxt < count) and wake is not None and not wake.done():
                wake.set_result(None)  # room for the next messages, or the batch is answered

        def track(fut: asyncio.Future[int], k: int) -> None:
            nonlocal left
            left += 1
            fut.add_done_callback(functools.partial(arrived, k))
            sent[fut] = k

        try:
            while True:
                with session.corked():  # the publishes that fit the window in one write
                    while nxt < count:
                        message = messages[nxt]
                        try:
                            fut = session.publish_now(
                                message.topic, message.payload, retain=False, properties=self._properties(message)
                            )
                        except ConnectionError as exc:
                            results[nxt:] = [exc] * (count - nxt)  # gone: none of them was sent
                            nxt = count
                            break
                        except TooLargeForBroker as exc:  # planned within the broker's limit: never, but not sent
                            results[nxt] = exc
                            nxt += 1
                            continue
                        if fut is None:
                            break  # the window is full: PUBACKs make room
                        track(fut, nxt)
                        nxt += 1
                if nxt < count and not left:
                    # the window is full of other publishes (the status message, or those of a batch
                    # cancelled while the gateway stopped): wait for room like them, as long as for a PUBACK
                    message = messages[nxt]
                    try:
                        async with asyncio.timeout(cfg.ack_timeout_s):
                            fut = await session.start_publish(
                                message.topic, message.payload, retain=False, properties=self._properties(message)
                            )
                    except ConnectionError as exc:
                        results[nxt:] = [exc] * (count - nxt)
                        break
                    except TooLargeForBroker as exc:
                        results[nxt] = exc
                        nxt += 1
                        continue
                    except TimeoutError as exc:
                        results[nxt] = exc  # the broker answered nothing for ack_timeout_s: a stale session
                        break
                    track(fut, nxt)
                    nxt += 1
                    continue
                if not left:
                    break
                # no PUBACK for ack_timeout_s ends the batch: the deadline moves on with each one
                wake = loop.create_future()
                timer = loop.call_at(answered_at + cfg.ack_timeout_s, _set_done, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                if left and loop.time() >= answered_at + cfg.ack_timeout_s:
                    break
        finally:
            for fut, k in sent.items():
                if fut.cancelled():
                    results[k] = asyncio.CancelledError()
                elif fut.done():
                    error = fut.exception()
                    results[k] = error if error is not None else PubAckCode(fut.result())
                else:
                    fut.cancel()
                    results[k] = TimeoutError()
        return results

    async def _send_all(self, session: Session, messages: list[Message], outcomes: list[Outcome | None]) -> None:
        await self._settle(session, messages, await self._send_window(session, messages), outcomes)

    async def _settle(
        self, session: Session, messages: list[Message], results: list[object], outcomes: list[Outcome | None]
    ) -> None:
        """Outcomes from each message's result (a PUBACK reason code or the exception that ended the wait)."""
        cfg = self.config
        stale = False
        taken_along = None  # the outcome of messages lost with a connection the broker closed after an ACL refusal
        if session.lost.done():
            refused_on = session.closed_after_refusal()
            if refused_on is not None:  # the refusal holds them back, not an outage
                taken_along = Outcome(
                    Status.RETRY,
                    f"connection lost before PUBACK: the broker closed it after refusing a message on {refused_on} "
                    f"as not authorized (0x87); {ACL_FIX}",
                    Fault.CONFIGURATION,
                )
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, PubAckCode):
                if not result.is_failure:
                    outcome = DELIVERED
                elif result.value == PACKET_TOO_LARGE:
                    outcome = self._too_large(message, f"PUBACK {result.value:#04x} {result}")
                elif result.value in _PERMANENT_CODES:
                    outcome = Outcome(
                        Status.REJECTED,
                        f"{message.topic}: broker refused the message, got PUBACK {result.value:#04x} {result}",
                    )
                elif result.value == NOT_AUTHORIZED:
                    self._log.debug("broker refused the message on %s as not authorized (0x87)", message.topic)
                    self.counters.not_authorized += len(message.indices)
                    outcome = Outcome(
                        Status.RETRY,
                        f"{message.topic}: broker refused the message, got PUBACK not authorized (0x87); {ACL_FIX}",
                        Fault.CONFIGURATION,
                    )
                else:
                    self._log.debug("broker answered PUBACK %s on %s", result, message.topic)
                    outcome = Outcome(
                        Status.RETRY,
                        f"{message.topic}: broker refused the message for now, got PUBACK {result.value:#04x} {result}",
                    )
            elif isinstance(result, TooLargeForBroker):
                outcome = self._too_large(message, str(result))
            elif isinstance(result, TimeoutError):
                stale = True
                outcome = Outcome(Status.RETRY, f"no PUBACK within {cfg.ack_timeout_s} s")
            elif isinstance(result, (ConnectionError, OSError)):
                outcome = (
                    Outcome(Status.RETRY, f"connection lost before PUBACK: {result}", Fault.UNREACHABLE)
                    if taken_along is None
                    else taken_along
                )
            elif isinstance(result, asyncio.CancelledError):
                outcome = Outcome(Status.RETRY, "cancelled before PUBACK")
            elif result is None:
                continue  # never published (the batch ended first): "not sent", RETRY
            else:
                assert isinstance(result, BaseException), result
                raise result  # a bug, not a delivery failure
            for i in message.indices:
                outcomes[i] = outcome
        if session.lost.done() or stale:
            self._session = None
            await session.close()
            if stale:
                self._mark_down(f"no PUBACK within {cfg.ack_timeout_s} s, connection dropped")

    def _too_large(self, message: Message, refusal: str) -> Outcome:
        """The outcome of a message the broker refused as too large: a reading alone is at fault (REJECTED);
        several are sent again, and messages are packed smaller from now on (see the module docstring)."""
        size, count = len(message.payload), len(message.indices)
        if count == 1:
            return Outcome(
                Status.REJECTED,
                f"{message.topic}: broker refused a message of one reading ({size} bytes) as too large, got "
                f"{refusal}; raise the broker's message_size_limit (or max_packet_size) or split the reading at "
                "the source",
            )
        limit = size // 2
        if self._learned_limit is None or limit < self._learned_limit:
            level = logging.WARNING if self._learned_limit is None else logging.DEBUG
            self._learned_limit = limit
            self._log.log(
                level,
                "broker refused a message of %d readings (%d bytes) as too large (%s); packing messages of at "
                "most %d bytes from now on, while this uplink runs; set max_message_bytes below the broker's "
                "message_size_limit",
                count,
                size,
                refusal,
                limit,
            )
        return Outcome(
            Status.RETRY,
            f"{message.topic}: broker refused a message of {count} readings ({size} bytes) as too large, got "
            f"{refusal}; sending them again in messages of at most {self._learned_limit} bytes",
            Fault.TRANSIENT,
        )

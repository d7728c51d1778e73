"""IoT Agent commands over MQTT: subscribe to an mqtt uplink's command topics, dispatch, publish the results.

What the FIWARE agents do (telefonicaid/iotagent-json docs/usermanual.md "Commands", iotagent-ul
lib/ulParser.js and lib/commonBindings.js):
- agent → device on `/<apikey>/<device_id>/cmd` (the agent publishes without the protocol prefix;
  `/json/...` and `/ul/...` are accepted too). JSON: `{"<command>": <value>}`, one key per command.
  UltraLight: `<device_id>@<command>|<value>`, or `<device_id>@<command>|<k>=<v>|...` for an object.
- device → agent on `/<apikey>/<device_id>/cmdexe` (or `/json/...`, `/ul/...`). JSON: `{"<command>":
  "<result>"}`; UL: `<device_id>@<command>|<result>` (the agent keeps the text up to the next `|`).
- The agent then sets `<command>_info` to the result text and `<command>_status` to `OK` — always:
  neither agent has a way for a device to report a failure (ERROR only comes from the agent itself,
  e.g. an expired command). So a failure is told in the text: every result starts with `OK: ` or
  `ERROR: `. The text reaches Orion unchecked, typed `commandResult`: Orion refuses its forbidden characters
  in that type and the agents cannot be told to send another, so the text is always percent-encoded,
  whatever the uplink's `value_encoding` says.

The codec half of this module is pure (topics and payloads in, commands and payloads out); the
listener half owns its own connection (gateway.mqtt.client), separate from the uplink's publishing one.

Bounds (a flood of commands must not grow the gateway): at most `max_pending` command messages run at
a time; one more is refused with a busy result. Busy and malformed results wait for the broker in at
most `REFUSAL_REPLIES` tasks besides; beyond, a refusal goes unanswered (counted) and the agent lets
the command expire, which is what a busy gateway means to it. A busy spell, a run of malformed
messages and a run of results the broker did not take are each logged once at WARNING, and their end
once at INFO with the count; the rest at DEBUG and in the counters.

An answer the broker refuses (a PUBACK reason code of 0x80 or more, e.g. 0x87 when its ACL does not let
the gateway publish on cmdexe) is lost like one it never acknowledged: counter `results_lost`, and a
WARNING naming the topic and the reason.

An answer over the broker's Maximum Packet Size (an MQTT 5 broker's CONNACK may set one; no packet
may exceed it) is sent without its text: `OK: ` or `ERROR: ` and why the text was left out, so the
agent still learns how the command ended (counter `results_shortened`, a WARNING the first time).

An answer the broker refuses as too large (PUBACK 0x95: a limit no CONNACK announces, such as mosquitto's
message_size_limit) goes once more with its texts cut to fit CUT_ANSWER_BYTES (see answer_cut.py for
what the agent still gets); counter `results_shortened`, a WARNING the first time, naming the sizes. Only
if that is refused too is it lost. mosquitto may close the connection after a refusal: that drop is
logged as such, not as an unreachable broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.adapter_api import AdapterContext
from gateway.backoff import Backoff
from gateway.errors import ConfigError, GatewayError
from gateway.logs import StateLog, component_logger
from gateway.mqtt.client import (
    ClientSettings,
    ConnectRefused,
    Message,
    MqttClient,
    MqttClientError,
    TooLargeForBroker,
)
from gateway.mqtt.packets import MAX_PACKET_BYTES, SUBACK, PacketTooLarge, TooLarge, reason_text
from gateway.ngsi.values import encode_percent
from gateway.records import Command, CommandResult
from gateway.secrets import resolve
from gateway.uplinks.mqtt.answer_cut import cut_results
from gateway.uplinks.mqtt.config import (
    COMMAND_CLIENT_SUFFIX,
    MqttFormat,
    MqttProtocol,
    MqttUplinkConfig,
    TopicStyle,
    command_topics,
    protocol_prefix,
)
from gateway.uplinks.mqtt.session import PACKET_TOO_LARGE, PubAckCode, tls_context

__all__ = [
    "CommandListenerCounters",
    "CommandMessage",
    "CommandPayloadError",
    "Dispatch",
    "MqttCommandListener",
    "command_topics",
    "device_of_topic",
    "parse_command",
    "result_messages",
    "result_text",
    "uplink_apikeys",
]

Dispatch = Callable[[Command], Awaitable[CommandResult]]

IDENTITY_TEMPLATE = "{entity_id}"
# Refusals answered at a time. Each answer takes a PUBACK's round trip from a working broker, so a few
# keep up with any flood; from one that does not acknowledge, each waits up to ack_timeout_s, and more
# of them would only pile up (20,000 tasks for a flood of 20,000 commands).
REFUSAL_REPLIES = 16
# What a technician checks when the broker refuses an answer, by PUBACK reason code
_REFUSED_ANSWER_FIX = {0x87: "the broker's ACL does not allow publishing to that topic for this user"}
# The size an answer refused as too large is cut to (payload bytes, or half the refused one if that is
# less). The broker does not say its limit and the cut answer goes once, so small: a broker that takes
# less carries few IoT Agent measures either, and 200 bytes still hold the head of the text ("OK: relays:
# command relay_3 written ..."), not only its OK.
CUT_ANSWER_BYTES = 200
# mosquitto closes the connection at once after refusing a publish (with max_queued_messages 0): a drop
# this soon after a refusal is that, not an unreachable broker
CLOSED_AFTER_REFUSAL_S = 2.0


class CommandPayloadError(GatewayError, ValueError):
    """A command message we cannot read; `names` holds the command names that could be read, if any."""

    code = "command_malformed"

    def __init__(self, message: str, names: Sequence[str] = ()) -> None:
        super().__init__(message, names=tuple(names))
        self.names = tuple(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandMessage:
    """One command message: its device id and its (command name, value) pairs in payload order."""

    device_id: str
    commands: tuple[tuple[str, Any], ...]


# --- codec (pure) ------------------------------------------------------------------------------------


def device_of_topic(topic: str, apikey: str, fmt: MqttFormat) -> str | None:
    """The device id of a command topic of ours, else None."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "" and parts[1] == apikey and parts[3] == "cmd":
        return parts[2] or None
    if (
        len(parts) == 5
        and parts[0] == ""
        and "/" + parts[1] == protocol_prefix(fmt)
        and parts[2] == apikey
        and parts[4] == "cmd"
    ):
        return parts[3] or None
    return None


def _parse_json(payload: bytes) -> tuple[tuple[str, Any], ...]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise CommandPayloadError(
            f"command payload: must be a JSON object, got {len(payload)} bytes that are not JSON"
        ) from None
    if not isinstance(doc, dict) or not doc:
        kind = "an empty object" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise CommandPayloadError(f'command payload: must be a JSON object of {{"<command>": <value>}}, got {kind}')
    empty = [k for k in doc if not k]
    if empty:
        raise CommandPayloadError('command payload: command names cannot be empty, got ""', names=[k for k in doc if k])
    return tuple(doc.items())


def _parse_ul(payload: bytes, device_id: str) -> tuple[tuple[str, Any], ...]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandPayloadError(
            f"command payload: must be UTF-8 UltraLight text, got {len(payload)} bytes that are not UTF-8"
        ) from None
    head, bar, rest = text.partition("|")
    named, at, name = head.partition("@")
    if not at or not name:
        raise CommandPayloadError(
            "command payload: must be <device_id>@<command>|<value>, got no <device_id>@<command> before the first '|'"
        )
    if named != device_id:
        raise CommandPayloadError(
            f'command {name}: the payload names device "{named}", got it on the topic of device "{device_id}"',
            names=[name],
        )
    if not bar:
        return ((name, None),)
    fields = rest.split("|")
    if len(fields) == 1 and "=" not in fields[0]:
        return ((name, fields[0]),)
    # UltraLight is untyped: values stay text, the adapter reads them by its profile's types
    params: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq or not key or "=" in value:
            raise CommandPayloadError(
                f"command {name}: parameters must be <name>=<value> separated by '|', got "
                f"{len(fields)} fields of which one is not",
                names=[name],
            )
        params[key] = value
    return ((name, params),)


def parse_command(topic: str, payload: bytes, *, apikey: str, fmt: MqttFormat) -> CommandMessage:
    """A command message from one of our command topics; CommandPayloadError if it cannot be read."""
    device_id = device_of_topic(topic, apikey, fmt)
    if device_id is None:
        raise CommandPayloadError(f"command topic: must be /{apikey}/<device_id>/cmd, got {topic!r}")
    commands = _parse_json(payload) if fmt is MqttFormat.IOTA_JSON else _parse_ul(payload, device_id)
    return CommandMessage(device_id=device_id, commands=commands)


def result_text(ok: bool, info: str, *, fmt: MqttFormat) -> str:
    """`OK: <info>` / `ERROR: <info>`, percent-encoded whatever the uplink's value_encoding says.

    The agent writes it unchecked to `<command>_info`, of type commandResult, which Orion checks for its
    forbidden characters and which cannot be provisioned TextUnrestricted: raw, an answer with a bracket
    (most of them: "written (modbus unit 4 ...)") left the command PENDING in Orion for good. And `reject`
    cannot refuse our own answer."""
    text = encode_percent(("OK: " if ok else "ERROR: ") + info)
    if fmt is MqttFormat.IOTA_UL:
        # the agent keeps the result only up to the next '|'; '#' separates UL groups
        text = text.replace("|", "%7C").replace("#", "%23")
    return text


def result_messages(
    device_id: str,
    results: Sequence[tuple[str, bool, str]],
    *,
    apikey: str,
    fmt: MqttFormat,
    style: TopicStyle,
) -> list[tuple[str, bytes]]:
    """(topic, payload) of the cmdexe messages for one command message's results (name, ok, info)."""
    prefix = protocol_prefix(fmt) if style is TopicStyle.PROTOCOL else ""
    topic = f"{prefix}/{apikey}/{device_id}/cmdexe"
    if fmt is MqttFormat.IOTA_JSON:
        doc = {name: result_text(ok, info, fmt=fmt) for name, ok, info in results}
        return [(topic, orjson.dumps(doc))]
    # the UL agent reads one result per cmdexe message
    return [(topic, f"{device_id}@{name}|{result_text(ok, info, fmt=fmt)}".encode()) for name, ok, info in results]


# --- listener (I/O) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _TooLarge:
    """A PUBACK 0x95 for an answer: on which connection, when, for how many payload bytes, and the broker's
    Maximum Packet Size if its CONNACK announced one (then the limit that refused it is a lower one)."""

    client: MqttClient
    at: float
    size: int
    announced: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sent:
    """How one answer message went: the last attempt's topic, PUBACK code (None: no PUBACK came) and payload
    size, the size of the whole answer if a smaller one had to go instead, and why that was not sent if it
    was over the broker's Maximum Packet Size too."""

    topic: str
    code: PubAckCode | None
    size: int
    whole: int | None = None
    announced: int | None = None
    not_sent: str | None = None

    def too_large(self) -> str:
        """Why the broker refused it, for a technician: the sizes and what its limit is known to be."""
        if self.whole is None:
            sizes = f"the answer of {self.size} bytes"
        else:
            sizes = f"the answer of {self.whole} bytes, and cut to {self.size} bytes,"
        if self.announced is None:
            limit = "over a limit it does not announce"
        else:
            limit = f"over a limit below the Maximum Packet Size of {self.announced} bytes in its CONNACK"
        return (
            f"the broker refused {sizes} on {self.topic} as too large, got PUBACK 0x95 Packet too large, {limit} "
            "(mosquitto: message_size_limit)"
        )


@dataclass(slots=True)
class CommandListenerCounters:
    """Running totals for metrics."""

    received: int = 0  # messages on the command topics
    commands: int = 0  # commands handed to dispatch
    ok: int = 0
    failed: int = 0  # error results, whatever the cause
    malformed: int = 0
    unknown_device: int = 0
    stale: int = 0  # retained messages ignored
    busy: int = 0  # refused because too many commands were in progress
    unanswered: int = 0  # busy or malformed, and no result sent: REFUSAL_REPLIES results were waiting already
    results_published: int = 0
    results_lost: int = 0  # not acknowledged in time, or refused by the broker
    results_shortened: int = 0  # sent without their text or cut: too large for the broker
    reconnects: int = 0


def uplink_apikeys(config: MqttUplinkConfig) -> tuple[str, ...]:
    """Every API key an uplink publishes with (its `[[apikeys]]` rules, then `apikey`), each once."""
    return config.all_apikeys()


class MqttCommandListener:
    """Receives IoT Agent commands for one mqtt uplink's apikeys and answers each one; see the module docstring.

    `entity_of` maps an agent device id to an entity id; without it the uplink's `device_id` template
    must be `{entity_id}` (the default), so the device id *is* the entity id. With another template pass
    `CommandRouter.device_index(config.device_id).entity_of`. `max_pending`: command messages run at a
    time (see the module docstring for what happens beyond).
    """

    def __init__(
        self,
        config: MqttUplinkConfig,
        context: AdapterContext,
        dispatch: Dispatch,
        *,
        entity_of: Callable[[str], str | None] | None = None,
        max_pending: int = 64,
    ) -> None:
        where = f"uplinks.{config.name}"
        apikeys = uplink_apikeys(config)
        if config.format is MqttFormat.NGSI_V2 or not apikeys:
            raise ConfigError(
                [(f"{where}.format: commands need format iota-json or iota-ul, got {config.format.value}")]
            )
        if entity_of is None:
            if config.device_id != IDENTITY_TEMPLATE:
                raise ConfigError(
                    [
                        (
                            f"{where}.device_id: commands need a map from device id to entity id for "
                            f"template {config.device_id!r}, got none; the gateway passes the command "
                            "router's device index"
                        )
                    ]
                )
            entity_of = _same
        self.config = config
        self.name = config.name
        self.apikeys = apikeys
        self.format = config.format
        self.client_id = config.effective_client_id(context.gateway_id) + COMMAND_CLIENT_SUFFIX
        self.port = config.port or (8883 if config.tls else 1883)
        self.topics = tuple(topic for apikey in apikeys for topic in command_topics(apikey, self.format))
        self.counters = CommandListenerCounters()
        self.max_pending = max_pending
        self._dispatch = dispatch
        self._entity_of = entity_of
        self._password = resolve(config.password, context.data_dir) if config.password is not None else None
        self._tls = tls_context(config)
        self._log = component_logger(__name__, config.name)
        self._client: MqttClient | None = None
        self._connected = asyncio.Event()
        self._link = StateLog(self._log, failing="starting")  # the broker connection: news on change only
        self._ever_connected = False
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # command messages being run
        self._replies: set[asyncio.Task[None]] = set()  # results of refused messages, waiting for the broker
        self._busy = StateLog(self._log)  # refusing commands because max_pending run
        self._busy_refused = 0  # in the current busy spell
        self._unreadable = StateLog(self._log)  # malformed messages since the last command that read
        self._unreadable_count = 0
        self._unpublished = StateLog(self._log)  # results the broker did not take in time
        self._unpublished_count = 0
        self._seq = 0
        self._id_base = f"{config.name}-{int(time.time())}"
        self._stale_logged = False
        self._shortened_logged = False
        self._cut_logged = False
        self._closed_logged = False
        self._too_large: _TooLarge | None = None  # the last answer the broker refused as too large
        self._closed_after: int | None = None  # the connection went right after refusing an answer of so many bytes

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the listener as a task of its own (it reconnects by itself until `stop`)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"commands:{self.name}")

    async def stop(self) -> None:
        """Stop listening; commands in progress are cancelled (the agent lets them expire)."""
        tasks = [t for t in (self._task, *self._pending, *self._replies) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def run(self) -> None:
        """Connect, subscribe and serve until cancelled; a lost broker is retried with backoff, never raised."""
        backoff = Backoff(initial=self.config.retry_initial_s, cap=self.config.retry_max_s)
        while True:
            refused = False
            try:
                reason = await self._session(backoff)
            except ConnectRefused as exc:
                refused, reason = exc.of_settings, exc.for_log()
            except MqttClientError as exc:
                reason = exc.reason
            except Exception as exc:  # a bug here must not end command handling for good
                if not self._link.fail(
                    "down", logging.ERROR, "command listener failed, restarting it: %s", exc, exc_info=True
                ):
                    self._log.debug("command listener failed again: %s", exc)
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._client = None
                self._connected.clear()
            self._mark_down(reason, refused=refused)
            await asyncio.sleep(backoff.next())

    async def _session(self, backoff: Backoff) -> str:
        """One connection, served until it goes; returns why it went."""
        cfg = self.config
        # A clean session on purpose: a command queued by the broker while the gateway was away would
        # run late (a locker opening an hour after it was asked); the agent expires it instead.
        client = MqttClient(
            ClientSettings(
                host=cfg.host,
                port=self.port,
                client_id=self.client_id,
                v5=cfg.protocol is MqttProtocol.V5,
                keepalive_s=cfg.keepalive_s,
                username=cfg.username,
                password=self._password,
                tls=self._tls,
                clean_start=True,
                connect_timeout_s=cfg.connect_timeout_s,
            ),
            on_message=self._on_message,
            on_too_large=self._on_too_large,
        )
        await client.connect()
        try:
            for topic in self.topics:
                [code] = await client.subscribe([topic], timeout=cfg.ack_timeout_s)
                if code >= 0x80:
                    self._log.warning(
                        "broker refused the subscription to %s, got %s; check the broker's ACL",
                        topic,
                        reason_text(SUBACK, code),
                    )
            self._client = client
            self._connected.set()
            backoff.reset()
            self._mark_up()
            reason = await asyncio.shield(client.lost)
            if isinstance(client.wire_error, PacketTooLarge):
                self.counters.malformed += 1  # a v5 broker sent a message over the limit it was told
            refusal = self._too_large
            if (
                refusal is not None
                and refusal.client is client
                and time.monotonic() - refusal.at <= CLOSED_AFTER_REFUSAL_S
            ):
                self._closed_after = refusal.size
            return reason
        finally:
            await client.disconnect()

    def _on_message(self, message: Message) -> None:
        try:
            self._received(message)
        except Exception as exc:  # one odd message must not drop the subscription
            self.counters.malformed += 1
            self._log.error("command message on %s not handled: %s", message.topic, exc, exc_info=True)

    def _on_too_large(self, packet: TooLarge) -> None:
        # MQTT 3.1.1 (a v5 broker is told the limit): skipped unread, acknowledged by the client; no
        # command name could be read, so there is nobody to answer
        self.counters.received += 1
        self._malformed(packet.topic.decode("utf-8", "replace"), str(packet))

    def _mark_up(self) -> None:
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        # every (re)connect is news: it says which topics are listened to now
        self._link.ok()
        self._log.info(
            "listening for commands on %s:%d as %s (%s)",
            self.config.host,
            self.port,
            self.client_id,
            ", ".join(self.topics),
        )

    def _closed_after_refusal(self, size: int) -> None:
        host, port = self.config.host, self.port
        what = f"an answer of {size} bytes as too large"
        # the refusal's own WARNING says what to fix; the drops it brings are news once
        level = logging.DEBUG if self._closed_logged else logging.WARNING
        self._closed_logged = True
        if not self._link.fail(
            "closed after refusal",
            level,
            "broker %s:%d closed the connection after refusing %s; reconnecting, commands cannot arrive meanwhile",
            host,
            port,
            what,
        ):
            self._log.debug("broker %s:%d closed the connection again after refusing %s", host, port, what)

    def _mark_down(self, reason: str, *, refused: bool = False) -> None:
        host, port = self.config.host, self.port
        if self._closed_after is not None:
            self._closed_after_refusal(self._closed_after)
            self._closed_after = None
            return
        verb = "refused the connection" if refused else "unreachable"
        if not self._link.fail(
            "refused" if refused else "down",
            logging.WARNING,
            "broker %s:%d %s, commands cannot arrive: %s",
            host,
            port,
            verb,
            reason,
        ):
            self._log.debug("broker %s:%d still %s: %s", host, port, verb, reason)

    # -- one message -----------------------------------------------------------------------------------

    def _received(self, message: Message) -> None:
        self.counters.received += 1
        topic = message.topic
        if message.retain:
            # a retained command would run again at every reconnect of every subscriber
            self.counters.stale += 1
            level = self._log.warning if not self._stale_logged else self._log.debug
            level("ignored a retained command on %s; commands must not be published with retain", topic)
            self._stale_logged = True
            return
        payload = message.payload
        apikey = next((k for k in self.apikeys if device_of_topic(topic, k, self.format) is not None), self.apikeys[0])
        device_id = device_of_topic(topic, apikey, self.format)
        try:
            parsed = parse_command(topic, payload, apikey=apikey, fmt=self.format)
        except CommandPayloadError as exc:
            self._malformed(topic, exc.message)
            if device_id is not None and exc.names:
                self._reply(apikey, device_id, [(n, False, exc.message) for n in exc.names])
            return
        if self._unreadable.failing:
            self._unreadable.ok("command messages read again; %d malformed ones before", self._unreadable_count)
            self._unreadable_count = 0
        if len(self._pending) >= self.max_pending:
            self.counters.busy += 1
            self._busy_refused += 1
            info = f"gateway busy: {len(self._pending)} command messages in progress, got one more; send it again later"
            if not self._busy.fail(
                "busy",
                logging.WARNING,
                "command for device %s refused: %s; further refusals are counted, until one is taken again",
                parsed.device_id,
                info,
            ):
                self._log.debug("command for device %s refused: %s", parsed.device_id, info)
            self._reply(apikey, parsed.device_id, [(n, False, info) for n, _ in parsed.commands])
            return
        if self._busy.failing:
            self._busy.ok("taking commands again; %d refused while busy", self._busy_refused)
            self._busy_refused = 0
        self._spawn(self._execute(apikey, parsed), self._pending)

    def _malformed(self, topic: str, what: str) -> None:
        self.counters.malformed += 1
        self._unreadable_count += 1
        if not self._unreadable.fail("malformed", logging.WARNING, "malformed command on %s: %s", topic, what):
            self._log.debug("malformed command on %s: %s", topic, what)

    def _reply(self, apikey: str, device_id: str, results: list[tuple[str, bool, str]]) -> None:
        """Answer a refused message, unless REFUSAL_REPLIES answers wait for the broker already: then it goes
        unanswered, and the agent lets the command expire."""
        if len(self._replies) >= REFUSAL_REPLIES:
            self.counters.unanswered += 1
            self._log.debug("no result for device %s: %d results of refusals wait already", device_id, REFUSAL_REPLIES)
            return
        self._spawn(self._answer(apikey, device_id, results), self._replies)

    @staticmethod
    def _spawn(work: Awaitable[None], tasks: set[asyncio.Task[None]]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._id_base}-{self._seq}"

    async def _execute(self, apikey: str, parsed: CommandMessage) -> None:
        results: list[tuple[str, bool, str]] = []
        # a message's commands run in payload order: they usually address one device
        for name, value in parsed.commands:
            entity_id = self._entity_of(parsed.device_id)
            if entity_id is None:
                self.counters.unknown_device += 1
                info = (
                    f'command {name}: no entity known for device id "{parsed.device_id}", got no reading '
                    f"of it since the gateway started; check the device_id template {self.config.device_id!r}"
                )
                self._log.warning("%s", info)
                results.append((name, False, info))
                continue
            self.counters.commands += 1
            command = Command(command_id=self._next_id(), entity_id=entity_id, name=name, value=value, uplink=self.name)
            try:
                result = await self._dispatch(command)
            except Exception as exc:  # dispatch should never raise; if it does, the agent still gets an answer
                result = CommandResult(
                    command_id=command.command_id,
                    ok=False,
                    info=f"command {name}: dispatch failed, got {type(exc).__name__}: {exc}",
                )
            results.append((name, result.ok, result.info))
        await self._answer(apikey, parsed.device_id, results)

    async def _answer(self, apikey: str, device_id: str, results: list[tuple[str, bool, str]]) -> None:
        for _, ok, _ in results:
            if ok:
                self.counters.ok += 1
            else:
                self.counters.failed += 1
        # one message a group: JSON answers a command message in one, UltraLight each command in its own
        groups = [results] if self.format is MqttFormat.IOTA_JSON else [[r] for r in results]
        for group in groups:
            sent = await self._publish_results(apikey, device_id, group)
            topic, code = sent.topic, sent.code
            if code is not None and not code.is_failure:
                self.counters.results_published += 1
                if self._unpublished.failing:
                    self._unpublished.ok("results reach the broker again; %d lost before", self._unpublished_count)
                    self._unpublished_count = 0
                continue
            self.counters.results_lost += 1
            self._unpublished_count += 1
            if sent.not_sent is not None:
                state: object = "too large"
                why = f"too large for the broker also shortened to {sent.size} bytes: {sent.not_sent}"
            elif code is None and sent.whole is not None:
                state = "lost"
                why = (
                    f"the broker refused it as too large at {sent.whole} bytes, and no PUBACK came within "
                    f"{self.config.ack_timeout_s:g} s for it cut to {sent.size} bytes (broker unreachable)"
                )
            elif code is None:
                state = "lost"
                why = f"no PUBACK within {self.config.ack_timeout_s:g} s (broker unreachable)"
            elif code.value == PACKET_TOO_LARGE:
                state = ("refused", code.value)
                why = f"{sent.too_large()}; raise that limit"
            else:
                state = ("refused", code.value)
                fix = _REFUSED_ANSWER_FIX.get(code.value, "check the broker's log")
                why = f"the broker refused it on {topic}, got PUBACK 0x{code.value:02X} {code}; {fix}"
            if not self._unpublished.fail(
                state,
                logging.WARNING,
                "result for device %s not published: %s (the agent will let the command expire)",
                device_id,
                why,
            ):
                self._log.debug("result for device %s not published either: %s", device_id, why)

    def _result_message(self, apikey: str, device_id: str, results: list[tuple[str, bool, str]]) -> tuple[str, bytes]:
        [message] = result_messages(
            device_id,
            results,
            apikey=apikey,
            fmt=self.format,
            style=self.config.topic_style,
        )
        return message

    async def _publish_results(self, apikey: str, device_id: str, results: list[tuple[str, bool, str]]) -> _Sent:
        """Publish one answer message; if it is too large for the broker, once more smaller (without its texts
        over the Maximum Packet Size of the CONNACK, cut after a PUBACK 0x95)."""
        topic, payload = self._result_message(apikey, device_id, results)
        try:
            code = await self._publish(topic, payload)
        except TooLargeForBroker as exc:
            self.counters.results_shortened += 1
            level = logging.DEBUG if self._shortened_logged else logging.WARNING
            self._shortened_logged = True
            self._log.log(level, "result for device %s sent without its text: %s", device_id, exc)
            short = [
                (
                    name,
                    ok,
                    f"result text of {len(info)} characters left out: over the maximum packet size of the broker",
                )
                for name, ok, info in results
            ]
            return await self._publish_smaller(apikey, device_id, short, len(payload))
        if code is None or code.value != PACKET_TOO_LARGE:
            return _Sent(topic=topic, code=code, size=len(payload))
        budget = min(CUT_ANSWER_BYTES, len(payload) // 2)
        cut = cut_results(results, lambda rs: len(self._result_message(apikey, device_id, rs)[1]) <= budget)
        announced = self._too_large.announced if self._too_large is not None else None
        if cut == results:  # every text is shorter than its note would be: nothing smaller to send
            return _Sent(topic=topic, code=code, size=len(payload), announced=announced)
        self.counters.results_shortened += 1
        sent = await self._publish_smaller(apikey, device_id, cut, len(payload))
        if sent.code is not None and not sent.code.is_failure:
            level = logging.DEBUG if self._cut_logged else logging.WARNING
            self._cut_logged = True
            told = _Sent(topic=topic, code=code, size=len(payload), announced=announced).too_large()
            self._log.log(
                level,
                "result for device %s sent cut to %d bytes: %s; raise that limit for whole answers",
                device_id,
                sent.size,
                told,
            )
        return sent

    async def _publish_smaller(
        self, apikey: str, device_id: str, results: list[tuple[str, bool, str]], whole: int
    ) -> _Sent:
        """The one smaller attempt at an answer of `whole` bytes the broker cannot take."""
        topic, payload = self._result_message(apikey, device_id, results)
        try:
            code = await self._publish(topic, payload)
        except TooLargeForBroker as exc:
            return _Sent(topic=topic, code=None, size=len(payload), whole=whole, not_sent=str(exc))
        refusal = self._too_large
        announced = refusal.announced if refusal is not None else None
        return _Sent(topic=topic, code=code, size=len(payload), whole=whole, announced=announced)

    async def _publish(self, topic: str, payload: bytes) -> PubAckCode | None:
        """Publish at QoS 1, across a reconnect if one happens before the ack timeout; the PUBACK's code (a
        refusal is final: not sent again), None if none came. TooLargeForBroker if the broker's maximum
        packet size leaves no room for it."""
        deadline = time.monotonic() + self.config.ack_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            client = self._client
            if client is None:
                try:
                    async with asyncio.timeout(left):
                        await self._connected.wait()
                except TimeoutError:
                    return None
                continue
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                    ack = await client.publish(topic, payload, qos=1)  # room in the in-flight window first
                    code = PubAckCode(await ack)
            except TimeoutError:
                return None
            except MqttClientError as exc:
                self._log.debug("result publish on %s failed: %s", topic, exc)
                if self._client is client:
                    # the session is going down: wait for the next one rather than spin
                    await asyncio.sleep(min(0.1, max(left, 0)))
                continue
            if code.value == PACKET_TOO_LARGE:
                limit = client.maximum_packet_size
                self._too_large = _TooLarge(
                    client=client,
                    at=time.monotonic(),
                    size=len(payload),
                    announced=limit if limit < MAX_PACKET_BYTES else None,
                )
            return code


def _same(device_id: str) -> str:
    return device_id

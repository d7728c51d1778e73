"""The IoT Agent command listener of one mqtt uplink: its own connection (gateway.mqtt.client, apart from the
uplink's publishing one), the subscriptions to its apikeys' command topics, reconnects, and each command
message read (command_codec.py), run through `dispatch` and answered (answer_publisher.py).

Bounds (a flood of commands must not grow the gateway): at most `max_pending` command messages run at a
time; one more is refused with a busy result. Busy and malformed results wait for the broker in at most
`REFUSAL_REPLIES` tasks besides; beyond, a refusal goes unanswered (counted) and the agent lets the command
expire, which is what a busy gateway means to it. A busy spell and a run of malformed messages are each
logged once at WARNING, and their end once at INFO with the count; the rest at DEBUG and in the counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.adapter_api import AdapterContext
from gateway.backoff import Backoff
from gateway.errors import ConfigError
from gateway.logs import StateLog, component_logger
from gateway.mqtt.client import ClientSettings, ConnectRefused, Message, MqttClient, MqttClientError
from gateway.mqtt.packets import SUBACK, PacketTooLarge, TooLarge, reason_text
from gateway.records import Command, CommandResult
from gateway.secrets import resolve
from gateway.uplinks.mqtt.answer_cut import Result
from gateway.uplinks.mqtt.answer_publisher import AnswerPublisher, AnswerRefusal
from gateway.uplinks.mqtt.command_codec import CommandMessage, CommandPayloadError, device_of_topic, parse_command
from gateway.uplinks.mqtt.command_counters import CommandListenerCounters
from gateway.uplinks.mqtt.config import (
    COMMAND_CLIENT_SUFFIX,
    MqttFormat,
    MqttProtocol,
    MqttUplinkConfig,
    command_topics,
)
from gateway.uplinks.mqtt.session import tls_context

__all__ = ["IDENTITY_TEMPLATE", "REFUSAL_REPLIES", "Dispatch", "MqttCommandListener", "uplink_apikeys"]

Dispatch = Callable[[Command], Awaitable[CommandResult]]

IDENTITY_TEMPLATE = "{entity_id}"
# Refusals answered at a time. Each answer takes a PUBACK's round trip from a working broker, so a few
# keep up with any flood; from one that does not acknowledge, each waits up to ack_timeout_s, and more
# of them would only pile up (20,000 tasks for a flood of 20,000 commands).
REFUSAL_REPLIES = 16
# The listener logged as gateway.uplinks.mqtt.commands before it had a module of its own: log filters and
# alerts on a gateway select it by that name
LOGGER_NAME = "gateway.uplinks.mqtt.commands"


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
        self._log = component_logger(LOGGER_NAME, config.name)
        self._client: MqttClient | None = None
        self._connected = asyncio.Event()
        self._link = StateLog(self._log, failing="starting")  # the broker connection: news on change only
        self._answers = AnswerPublisher(
            config, self.counters, self._log, client_of=lambda: self._client, connected=self._connected
        )
        self._ever_connected = False
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # command messages being run
        self._replies: set[asyncio.Task[None]] = set()  # results of refused messages, waiting for the broker
        self._busy = StateLog(self._log)  # refusing commands because max_pending run
        self._busy_refused = 0  # in the current busy spell
        self._unreadable = StateLog(self._log)  # malformed messages since the last command that read
        self._unreadable_count = 0
        self._seq = 0
        self._id_base = f"{config.name}-{int(time.time())}"
        self._stale_logged = False
        self._closed_logged: set[str] = set()  # the kinds of refusal a drop was said after at WARNING
        self._closed_after: AnswerRefusal | None = None  # the connection went right after refusing that answer

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
            self._closed_after = self._answers.refused_before(client)
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

    def _closed_after_refusal(self, refusal: AnswerRefusal) -> None:
        host, port, what = self.config.host, self.port, refusal.what
        # the drops one kind of refusal brings are news once; another kind is another cause to fix
        level = logging.DEBUG if refusal.kind in self._closed_logged else logging.WARNING
        self._closed_logged.add(refusal.kind)
        fix = "" if refusal.fix is None else f"; {refusal.fix}"
        if not self._link.fail(
            ("closed after refusal", refusal.kind),
            level,
            "broker %s:%d closed the connection after refusing %s; reconnecting, commands cannot arrive meanwhile%s",
            host,
            port,
            what,
            fix,
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

    def _reply(self, apikey: str, device_id: str, results: list[Result]) -> None:
        """Answer a refused message, unless REFUSAL_REPLIES answers wait for the broker already: then it goes
        unanswered, and the agent lets the command expire."""
        if len(self._replies) >= REFUSAL_REPLIES:
            self.counters.unanswered += 1
            self._log.debug("no result for device %s: %d results of refusals wait already", device_id, REFUSAL_REPLIES)
            return
        self._spawn(self._answers.answer(apikey, device_id, results), self._replies)

    @staticmethod
    def _spawn(work: Awaitable[None], tasks: set[asyncio.Task[None]]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._id_base}-{self._seq}"

    async def _execute(self, apikey: str, parsed: CommandMessage) -> None:
        results: list[Result] = []
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
        await self._answers.answer(apikey, parsed.device_id, results)


def _same(device_id: str) -> str:
    return device_id

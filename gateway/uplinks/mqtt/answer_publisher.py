"""Publishing the command listener's answers: at QoS 1 across reconnects, made smaller when too large for the
broker, each outcome counted and the news logged.

Theory of operation. An answer is published once and waits up to `ack_timeout_s` for its PUBACK, across a
reconnect of the listener's connection if one happens meanwhile (it is sent again on the new one). Its end
is one of:
- acknowledged (a PUBACK code below 0x80): `results_published`;
- no PUBACK in time: lost (`results_lost`), the agent lets the command expire;
- refused (a PUBACK code of 0x80 or more, e.g. 0x87 when the broker's ACL does not let the gateway publish on
  cmdexe): lost like one never acknowledged, with a WARNING naming the topic and the reason. MQTT 3.1.1 has
  no PUBACK codes: mosquitto acknowledges an answer its ACL denies and drops it, so it counts as published
  (and a drop of the connection after it, see below, cannot be told from an outage);
- over the broker's Maximum Packet Size (an MQTT 5 broker's CONNACK may set one; no packet may exceed it,
  so the client does not send it): sent once more within it, with its texts cut to the longest that fit
  the whole PUBLISH (answer_cut.py: every command's name and `OK: ` / `ERROR: ` kept, `[N characters cut]`);
  only if no cut fits, without its texts (`result text of N characters left out`); only if neither fits,
  without any text (answer_cut.without_texts: each command's name and `OK: ` / `ERROR: `), and if even that
  is over, lost; counter `results_shortened`, a WARNING the first time;
- refused as too large (PUBACK 0x95: a limit no CONNACK announces, such as mosquitto's message_size_limit),
  the whole answer or one cut to the announced maximum: sent again with its texts cut to fit CUT_ANSWER_BYTES,
  and if that is refused too, without any text; each only if smaller than what the broker refused. Counter
  `results_shortened`, a WARNING the first time, naming the sizes. Only if the broker refuses even the
  answer without any text is it lost (`results_lost` and `results_too_large`, a WARNING naming every size
  tried): then no answer fits, and the agent lets the command expire.
mosquitto may close the connection right after refusing an answer as not authorized or as too large (it does
with max_queued_messages 0): `refused_before` lets the listener log that drop as the refusal's, with the
topic or the size and what to check, not as an unreachable broker.
A run of answers the broker did not take is logged once at WARNING, and its end once at INFO with the
count; the rest at DEBUG and in the counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.logs import ComponentLogger, StateLog
from gateway.mqtt.client import MqttClient, MqttClientError, TooLargeForBroker
from gateway.mqtt.packets import MAX_PACKET_BYTES, encode_publish
from gateway.uplinks.mqtt.answer_cut import Result, cut_results, fit_results, left_out, without_texts
from gateway.uplinks.mqtt.command_codec import result_messages
from gateway.uplinks.mqtt.command_counters import CommandListenerCounters
from gateway.uplinks.mqtt.config import MqttFormat, MqttProtocol, MqttUplinkConfig
from gateway.uplinks.mqtt.session import ACL_FIX, CLOSED_AFTER_REFUSAL_S, NOT_AUTHORIZED, PACKET_TOO_LARGE, PubAckCode

__all__ = ["CLOSED_AFTER_REFUSAL_S", "CUT_ANSWER_BYTES", "AnswerPublisher", "AnswerRefusal", "answer_packet_bytes"]

# What a technician checks when the broker refuses an answer, by PUBACK reason code
_REFUSED_ANSWER_FIX = {NOT_AUTHORIZED: ACL_FIX}  # the uplink's words for its readings: one phrase finds both
# The size an answer refused as too large is cut to (payload bytes, or half the refused one if that is
# less). The broker does not say its limit, so small: a broker that takes less carries few IoT Agent
# measures either, and 200 bytes still hold the head of the text ("OK: relays: command relay_3 written ..."),
# not only its OK. Below that only the answer without any text is tried.
CUT_ANSWER_BYTES = 200
# How a log line names the answer without any text
_NO_TEXT = "its command names and OK/ERROR only"


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerRefusal:
    """An answer the broker refused just before the connection went, as the listener's line about that drop
    says it: `what` follows "after refusing" ("an answer of 3710 bytes as too large"), `fix` is what to check
    if the refusal's own line does not say it all; `kind` tells a new cause from the same one again."""

    kind: Literal["too large", "not authorized"]
    what: str
    fix: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Refused:
    """The last answer the broker refused in a way mosquitto closes the connection after: on which connection,
    when, and how to say it."""

    client: MqttClient
    at: float
    refusal: AnswerRefusal


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
    size; if smaller ones had to go instead, the size of the whole answer and each smaller attempt as a log
    line says it ("cut to 200 bytes"), the last one's last; and why the last was not sent if it was over the
    broker's Maximum Packet Size too."""

    topic: str
    code: PubAckCode | None
    size: int
    whole: int | None = None
    smaller: tuple[str, ...] = ()
    announced: int | None = None
    not_sent: str | None = None

    @property
    def too_large_for_broker(self) -> bool:
        return self.not_sent is not None or (self.code is not None and self.code.value == PACKET_TOO_LARGE)

    def too_large(self) -> str:
        """Why the broker refused it, for a technician: the sizes and what its limit is known to be."""
        if self.whole is None:
            sizes = f"the answer of {self.size} bytes"
        elif len(self.smaller) == 1:
            sizes = f"the answer of {self.whole} bytes, and {self.smaller[0]},"
        else:
            sizes = f"the answer of {self.whole} bytes, {', '.join(self.smaller[:-1])}, and {self.smaller[-1]},"
        if self.announced is None:
            limit = "over a limit it does not announce"
        else:
            limit = f"over a limit below the Maximum Packet Size of {self.announced} bytes in its CONNACK"
        return (
            f"the broker refused {sizes} on {self.topic} as too large, got PUBACK 0x95 Packet too large, {limit} "
            "(mosquitto: message_size_limit)"
        )


class AnswerPublisher:
    """Publishes the answers of one command listener on its connection; see the module docstring.

    `client_of` gives the connection's client while it is up (None between connections), and `connected` is
    set meanwhile; `counters` and `log` are the listener's."""

    def __init__(
        self,
        config: MqttUplinkConfig,
        counters: CommandListenerCounters,
        log: ComponentLogger,
        *,
        client_of: Callable[[], MqttClient | None],
        connected: asyncio.Event,
    ) -> None:
        self.config = config
        self.format = config.format
        self.counters = counters
        self._log = log
        self._client_of = client_of
        self._connected = connected
        self._unpublished = StateLog(log)  # results the broker did not take in time
        self._unpublished_count = 0
        self._shortened_logged = False
        self._cut_logged = False
        self._too_large: _TooLarge | None = None  # the last answer the broker refused as too large
        self._refused: _Refused | None = None  # the last answer refused as too large or not authorized

    def refused_before(self, client: MqttClient) -> AnswerRefusal | None:
        """The answer `client`'s broker refused as too large or as not authorized just before its connection
        went (mosquitto closes it after such a refusal), else None."""
        refused = self._refused
        if refused is not None and refused.client is client and time.monotonic() - refused.at <= CLOSED_AFTER_REFUSAL_S:
            return refused.refusal
        return None

    async def answer(self, apikey: str, device_id: str, results: list[Result]) -> None:
        """Publish the answer to one command message's results (name, ok, info), counting each outcome."""
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
            if sent.too_large_for_broker:
                self.counters.results_too_large += 1
            self._unpublished_count += 1
            if sent.not_sent is not None:
                state: object = "too large"
                why = f"too large for the broker also shortened to {sent.size} bytes: {sent.not_sent}"
            elif code is None and sent.whole is not None:
                state = "lost"
                why = (
                    f"the broker refused it as too large at {sent.whole} bytes, and no PUBACK came within "
                    f"{self.config.ack_timeout_s:g} s for it {sent.smaller[-1]} (broker unreachable)"
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

    def _result_message(self, apikey: str, device_id: str, results: list[Result]) -> tuple[str, bytes]:
        [message] = result_messages(
            device_id,
            results,
            apikey=apikey,
            fmt=self.format,
            style=self.config.topic_style,
        )
        return message

    async def _publish_results(self, apikey: str, device_id: str, results: list[Result]) -> _Sent:
        """Publish one answer message; if it is too large for the broker, again smaller until the broker takes it or
        nothing smaller is left (see the module docstring)."""
        topic, payload = self._result_message(apikey, device_id, results)
        try:
            code = await self._publish(topic, payload)
        except TooLargeForBroker as exc:
            sent = await self._publish_within(apikey, device_id, results, len(payload), exc)
        else:
            sent = _Sent(topic=topic, code=code, size=len(payload), announced=self._announced())
        if sent.code is None or sent.code.value != PACKET_TOO_LARGE:
            return sent
        return await self._publish_after_refusal(apikey, device_id, results, sent)

    async def _publish_after_refusal(self, apikey: str, device_id: str, results: list[Result], refused: _Sent) -> _Sent:
        """After a PUBACK 0x95 for `refused`: the answer cut to CUT_ANSWER_BYTES (or half the refused size), then
        without any text, each only if smaller than the last one refused. The first the broker takes, else the
        last attempt (refused too, or lost otherwise)."""
        whole = refused.whole if refused.whole is not None else refused.size
        budget = min(CUT_ANSWER_BYTES, refused.size // 2)
        cut = cut_results(results, lambda rs: len(self._result_message(apikey, device_id, rs)[1]) <= budget)
        last = refused
        for smaller, bare in ((cut, False), (without_texts(results), True)):
            size = len(self._result_message(apikey, device_id, smaller)[1])
            if size >= last.size:
                continue  # the texts are shorter than their notes, or there were none: nothing smaller to send
            if last.whole is None:
                self.counters.results_shortened += 1  # once an answer, however many tries
            sent = await self._publish_smaller(apikey, device_id, smaller, whole, last.smaller, bare=bare)
            if sent.code is not None and not sent.code.is_failure:
                level = logging.DEBUG if self._cut_logged else logging.WARNING
                self._cut_logged = True
                how = f"without any text ({sent.size} bytes: {_NO_TEXT})" if bare else f"cut to {sent.size} bytes"
                self._log.log(
                    level,
                    "result for device %s sent %s: %s; raise that limit for whole answers",
                    device_id,
                    how,
                    last.too_large(),
                )
                return sent
            if not sent.too_large_for_broker:
                return sent  # no PUBACK, or another refusal: the caller says why it is lost
            last = sent
        return last

    async def _publish_within(
        self, apikey: str, device_id: str, results: list[Result], whole: int, over: TooLargeForBroker
    ) -> _Sent:
        """An answer of `whole` payload bytes over the Maximum Packet Size of the CONNACK, once more within it: its
        texts cut to the longest that fit, else left out (a text no cut makes smaller), else without any text,
        which the client refuses if it does not fit either; the caller reports that lost."""

        def packet(candidate: list[Result]) -> int:
            topic, payload = self._result_message(apikey, device_id, candidate)
            return answer_packet_bytes(topic, payload, v5=self.config.protocol is MqttProtocol.V5)

        smaller = fit_results(results, packet, over.limit)
        self.counters.results_shortened += 1
        noted = smaller == left_out(results)
        bare = not noted and smaller == without_texts(results)
        sent = await self._publish_smaller(apikey, device_id, smaller, whole, (), bare=bare, noted=noted)
        if sent.code is None or sent.code.is_failure:
            return sent
        level = logging.DEBUG if self._shortened_logged else logging.WARNING
        self._shortened_logged = True
        if noted:
            self._log.log(level, "result for device %s sent without its text: %s", device_id, over)
        elif bare:
            self._log.log(
                level,
                "result for device %s sent without any text (a PUBLISH of %d bytes: %s): %s",
                device_id,
                packet(smaller),
                _NO_TEXT,
                over,
            )
        else:
            self._log.log(
                level,
                "result for device %s sent cut to a PUBLISH of %d bytes: the broker takes packets of at most %d "
                "bytes (the Maximum Packet Size in its CONNACK), got the answer's PUBLISH of %d bytes on %s; raise "
                "the broker's max_packet_size for whole answers",
                device_id,
                packet(smaller),
                over.limit,
                over.size,
                sent.topic,
            )
        return sent

    async def _publish_smaller(
        self,
        apikey: str,
        device_id: str,
        results: list[Result],
        whole: int,
        before: tuple[str, ...],
        *,
        bare: bool = False,
        noted: bool = False,
    ) -> _Sent:
        """One smaller attempt at an answer of `whole` bytes the broker cannot take, after the smaller ones `before`
        (as a log line says them); `bare`: it is the answer without any text, `noted`: with its texts left out."""
        topic, payload = self._result_message(apikey, device_id, results)
        size = len(payload)
        if bare:
            step = f"without any text ({size} bytes)"
        elif noted:
            step = f"with its texts left out ({size} bytes)"
        else:
            step = f"cut to {size} bytes"
        try:
            code = await self._publish(topic, payload)
        except TooLargeForBroker as exc:
            return _Sent(topic=topic, code=None, size=size, whole=whole, smaller=(*before, step), not_sent=str(exc))
        return _Sent(
            topic=topic, code=code, size=size, whole=whole, smaller=(*before, step), announced=self._announced()
        )

    def _announced(self) -> int | None:
        """The Maximum Packet Size the CONNACK announced on the connection of the last refusal as too large."""
        refusal = self._too_large
        return refusal.announced if refusal is not None else None

    async def _publish(self, topic: str, payload: bytes) -> PubAckCode | None:
        """Publish at QoS 1, across a reconnect if one happens before the ack timeout; the PUBACK's code (a
        refusal is final: not sent again), None if none came. TooLargeForBroker if the broker's maximum
        packet size leaves no room for it."""
        deadline = time.monotonic() + self.config.ack_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            client = self._client_of()
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
                if self._client_of() is client:
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
                refusal = AnswerRefusal(kind="too large", what=f"an answer of {len(payload)} bytes as too large")
                self._refused = _Refused(client=client, at=time.monotonic(), refusal=refusal)
            elif code.value == NOT_AUTHORIZED:
                # noted here, on the connection that refused it: mosquitto may drop that one before the caller
                # has logged the refusal
                refusal = AnswerRefusal(
                    kind="not authorized", what=f"an answer on {topic} as not authorized (0x87)", fix=ACL_FIX
                )
                self._refused = _Refused(client=client, at=time.monotonic(), refusal=refusal)
            return code


def answer_packet_bytes(topic: str, payload: bytes, *, v5: bool) -> int:
    """The size of the PUBLISH an answer goes in (QoS 1, no properties): what a Maximum Packet Size counts."""
    return len(encode_publish(topic, payload, qos=1, packet_id=1, v5=v5))

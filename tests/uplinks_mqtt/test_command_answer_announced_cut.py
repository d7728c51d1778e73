"""A command answer over the Maximum Packet Size an MQTT 5 broker announces in its CONNACK (mosquitto's max_packet_size).

The review's finding: such an answer went without its text (`OK: result text of 3053 characters left out`),
so the platform learned that a diagnostics command worked and nothing of what it read, while an answer
refused with PUBACK 0x95 (a limit nobody announces) kept as much of its text as fits. Now the announced
limit cuts the same way (answer_cut.py), to the longest text whose whole PUBLISH fits; the answer goes
without its text only when no cut fits.

Real mosquitto with a small max_packet_size, the command listener, and aiomqtt playing the IoT Agent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.mqtt.packets import encode_publish
from gateway.ngsi.values import decode_percent
from gateway.records import Command, CommandResult
from gateway.uplinks.mqtt.answer_cut import cut_info
from gateway.uplinks.mqtt.commands import Dispatch, MqttCommandListener, result_messages
from gateway.uplinks.mqtt.config import MqttFormat, TopicStyle
from tests.uplinks_mqtt.conftest import Subscriber
from tests.uplinks_mqtt.test_command_answer_size import REPORT, settled, start_broker, stored_by_agent
from tests.uplinks_mqtt.test_command_answer_size import agent_and_listener as listening
from tests.uplinks_mqtt.test_command_answer_size import dispatch as reports

LIMIT = 2000
LOGGER = "gateway.uplinks.mqtt.commands"


@asynccontextmanager
async def agent_and_listener(
    tmp_path: Path, limit: int, dispatch: Dispatch = reports, fmt: MqttFormat = MqttFormat.IOTA_JSON
) -> AsyncIterator[tuple[MqttCommandListener, Subscriber]]:
    """The listener and the agent on a broker of their own that announces `limit` as its Maximum Packet Size."""
    broker = start_broker(tmp_path, f"max_packet_size {limit}\n")
    try:
        async with listening(broker, tmp_path, fmt, dispatch=dispatch, fast_retry=False) as rig:
            yield rig
    finally:
        broker.stop()


def answer(results: list[tuple[str, bool, str]], fmt: MqttFormat = MqttFormat.IOTA_JSON) -> tuple[str, bytes]:
    [message] = result_messages("dev1", results, apikey="K3Y", fmt=fmt, style=TopicStyle.PLAIN)
    return message


def publish_bytes(topic: str, payload: bytes) -> int:
    """The size of the PUBLISH the listener sends for it (QoS 1, MQTT 5, no properties): what the limit counts."""
    return len(encode_publish(topic, payload, qos=1, packet_id=1, v5=True))


def kept_of(text: str) -> str:
    """The part of REPORT an answer's decoded `OK: … [N characters cut]` text kept."""
    match = re.fullmatch(r"OK: (.*) \[(\d+) characters cut\]", text, re.DOTALL)
    assert match is not None, text
    kept, cut = match.group(1), int(match.group(2))
    assert REPORT.startswith(kept) and len(kept) + cut == len(REPORT)
    return kept


def logged(caplog: pytest.LogCaptureFixture, part: str) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if part in r.getMessage()]


@pytest.mark.parametrize("fmt", [MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL], ids=["json", "ul"])
async def test_an_answer_over_the_announced_maximum_keeps_the_longest_text_that_fits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fmt: MqttFormat
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with agent_and_listener(tmp_path, LIMIT, fmt=fmt) as (listener, agent):
        for name in ("report", "report", "relay_1"):
            command = orjson.dumps({name: True}) if fmt is MqttFormat.IOTA_JSON else f"dev1@{name}".encode()
            await agent.client.publish("/K3Y/dev1/cmd", command, qos=1)
        await settled(listener, 3)
        got = await agent.wait(3)
    stored = [stored_by_agent(fmt, m.payload) for m in got]
    assert [name for name, _ in stored] == ["report", "report", "relay_1"]
    assert stored[2][1] == "OK: done"  # an answer that fits goes whole
    topic, whole = answer([("report", True, REPORT)], fmt)
    for m, (_, text) in zip(got[:2], stored[:2], strict=True):
        kept = kept_of(decode_percent(text.replace("%7C", "|").replace("%23", "#")))
        assert kept.startswith("diagnostics: register 40000 (waterLevel)")
        assert publish_bytes(m.topic, m.payload) <= LIMIT
        # the longest: one more character of the text and the PUBLISH is over the broker's maximum
        longer = answer([("report", True, cut_info(REPORT, len(kept) + 1))], fmt)
        assert publish_bytes(*longer) > LIMIT
    c = listener.counters
    assert (c.results_published, c.results_shortened, c.results_lost, c.reconnects) == (3, 2, 0, 0)
    said = (
        f"result for device dev1 sent cut to a PUBLISH of {publish_bytes(got[0].topic, got[0].payload)} bytes: the "
        f"broker takes packets of at most {LIMIT} bytes (the Maximum Packet Size in its CONNACK), got the answer's "
        f"PUBLISH of {publish_bytes(topic, whole)} bytes on {topic}; raise the broker's max_packet_size for whole "
        "answers"
    )
    assert logged(caplog, "sent cut") == [("WARNING", said), ("DEBUG", said)]  # news the first time only
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [said]


async def test_several_commands_in_one_answer_each_keep_their_outcome_within_the_announced_maximum(
    tmp_path: Path,
) -> None:
    limit = 300
    async with agent_and_listener(tmp_path, limit) as (listener, agent):
        await agent.client.publish("/K3Y/dev1/cmd", b'{"report": true, "fail": 1, "relay_1": true}', qos=1)
        await settled(listener, 1)
        [got] = await agent.wait(1)
    doc: dict[str, Any] = orjson.loads(got.payload)
    assert list(doc) == ["report", "fail", "relay_1"]
    assert (doc["fail"], doc["relay_1"]) == ("ERROR: done", "OK: done")  # short texts stay whole
    kept_of(decode_percent(doc["report"]))
    assert publish_bytes(got.topic, got.payload) <= limit
    assert listener.counters.results_shortened == 1


# JSON escapes each control character to 6 bytes, and 19 characters are fewer than a cut note's
# (" [19 characters cut]"), so no cut makes this text smaller: only leaving it out does
UNCUTTABLE = "\x01" * 19


async def uncuttable(command: Command) -> CommandResult:
    return CommandResult(command_id=command.command_id, ok=True, info=UNCUTTABLE)


async def test_an_answer_no_cut_makes_fit_goes_without_its_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    textless = "OK: result text of 19 characters left out: over the maximum packet size of the broker"
    topic, whole = answer([("report", True, UNCUTTABLE)])
    limit = publish_bytes(*answer([("report", True, textless[4:])]))
    assert publish_bytes(topic, whole) > limit  # the rig: the whole answer is over, the text-less one is not
    async with agent_and_listener(tmp_path, limit, dispatch=uncuttable) as (listener, agent):
        await agent.client.publish("/K3Y/dev1/cmd", b'{"report": true}', qos=1)
        await settled(listener, 1)
        [got] = await agent.wait(1)
    assert orjson.loads(got.payload) == {"report": textless}
    c = listener.counters
    assert (c.results_published, c.results_shortened, c.results_lost) == (1, 1, 0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"result for device dev1 sent without its text: mqtt: the broker takes packets of at most {limit} bytes "
        f"(the Maximum Packet Size in its CONNACK), got a PUBLISH of {publish_bytes(topic, whole)} bytes; not sent"
    ]

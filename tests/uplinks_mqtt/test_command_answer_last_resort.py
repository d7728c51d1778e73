"""A command answer too large for the broker even cut goes once more with no text before it is given up.

The finding: an answer cut to the Maximum Packet Size a broker announces (mosquitto's max_packet_size) and
then refused with PUBACK 0x95 (its message_size_limit, which no CONNACK announces) was lost, and so was an
answer refused again when cut to 200 bytes: there was one smaller try only, though the command's name and
`OK: ` / `ERROR: ` alone would have fitted, and they are all the agent needs to end the command. Now an
answer refused as too large goes cut to 200 bytes (or less), then with no text at all, and only if even that
is refused is it lost (`results_lost`, `results_too_large`), with a WARNING naming every size tried.

Real mosquitto with small limits, the command listener, and aiomqtt playing the IoT Agent.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from gateway.records import Command, CommandResult
from gateway.uplinks.mqtt.answer_publisher import answer_packet_bytes
from gateway.uplinks.mqtt.config import MqttFormat
from tests.uplinks_mqtt.test_command_answer_size import (
    CLOSES,
    KEEPS,
    NOT_ANNOUNCED,
    ask,
    stored_by_agent,
    warnings,
    whole,
)
from tests.uplinks_mqtt.test_command_answer_size import REPORT as REPORT

LOGGER = "gateway.uplinks.mqtt.commands"
WHOLE = len(whole("report", True, REPORT))
CLOSED = "closed the connection after refusing an answer of {} bytes as too large; reconnecting, commands cannot arrive"


def no_text(fmt: MqttFormat = MqttFormat.IOTA_JSON) -> bytes:
    """The answer to `report` with its command name and `OK: ` only."""
    return b'{"report":"OK: "}' if fmt is MqttFormat.IOTA_JSON else b"dev1@report|OK: "


@pytest.mark.parametrize("conf", [KEEPS, CLOSES], ids=["keeps-connection", "closes-connection"])
async def test_an_answer_cut_to_the_announced_maximum_and_refused_with_0x95_goes_cut_smaller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, conf: str
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limit = 300  # payload bytes, below the 2000-byte PUBLISH the announced maximum lets through
    asked = await ask(
        tmp_path, f"max_packet_size 2000\nmessage_size_limit {limit}\n{conf}", b'{"report": true}', answers=1
    )
    [answer] = asked.answers
    name, stored = stored_by_agent(MqttFormat.IOTA_JSON, answer.payload)
    assert name == "report"
    assert re.fullmatch(r"OK: diagnostics: .* \[\d+ characters cut\]", stored, re.DOTALL), stored
    assert len(answer.payload) <= limit
    c = asked.listener.counters
    assert (c.ok, c.results_published, c.results_shortened, c.results_lost, c.results_too_large) == (1, 1, 1, 0, 0)
    said = warnings(caplog)
    if conf is CLOSES:
        closed = said.pop(0)
        assert re.fullmatch(f"broker 127.0.0.1:{asked.port} " + CLOSED.format(r"\d+") + " meanwhile", closed), closed
    [line] = said
    match = re.fullmatch(
        re.escape(
            f"result for device dev1 sent cut to {len(answer.payload)} bytes: the broker refused the answer of "
            f"{WHOLE} bytes, and cut to "
        )
        + r"(\d+)"
        + re.escape(
            " bytes, on /K3Y/dev1/cmdexe as too large, got PUBACK 0x95 Packet too large, over a limit below the "
            "Maximum Packet Size of 2000 bytes in its CONNACK (mosquitto: message_size_limit); raise that limit for "
            "whole answers"
        ),
        line,
    )
    assert match is not None, line
    assert limit < int(match.group(1)) < 2000  # the first cut: within the announced maximum, over the real limit


@pytest.mark.parametrize("conf", [KEEPS, CLOSES], ids=["keeps-connection", "closes-connection"])
@pytest.mark.parametrize("fmt", [MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL], ids=["json", "ul"])
async def test_an_answer_refused_also_cut_goes_with_its_command_name_and_outcome_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, conf: str, fmt: MqttFormat
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limit = 20  # below any cut text with its note (`{"report":"OK:  [3690 characters cut]"}`), not below no text
    command = b'{"report": true}' if fmt is MqttFormat.IOTA_JSON else b"dev1@report"
    asked = await ask(tmp_path, f"message_size_limit {limit}\n{conf}", command, fmt=fmt, answers=1)
    [answer] = asked.answers
    assert answer.payload == no_text(fmt)
    assert stored_by_agent(fmt, answer.payload) == ("report", "OK: ")  # the agent ends the command, and says OK
    c = asked.listener.counters
    assert (c.ok, c.results_published, c.results_shortened, c.results_lost, c.results_too_large) == (1, 1, 1, 0, 0)
    refused = len(whole("report", True, REPORT, fmt))
    said = warnings(caplog)
    if conf is CLOSES:  # closed after each refusal: news the first time only
        assert said.pop(0) == f"broker 127.0.0.1:{asked.port} " + CLOSED.format(refused) + " meanwhile"
    [line] = said
    match = re.fullmatch(
        re.escape(
            f"result for device dev1 sent without any text ({len(no_text(fmt))} bytes: its command names and OK/ERROR "
            f"only): the broker refused the answer of {refused} bytes, and cut to "
        )
        + r"(\d+)"
        + re.escape(f" bytes, on /K3Y/dev1/cmdexe as too large, got PUBACK 0x95 Packet too large, {NOT_ANNOUNCED}; ")
        + re.escape("raise that limit for whole answers"),
        line,
    )
    assert match is not None, line
    assert limit < int(match.group(1)) <= 200


async def done(command: Command) -> CommandResult:
    return CommandResult(command_id=command.command_id, ok=False, info="done")


async def test_an_answer_whose_text_no_cut_shortens_goes_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    # `{"fail":"ERROR: done"}` is 22 bytes, and "done" is shorter than a cut's note: only no text is smaller
    asked = await ask(tmp_path, f"message_size_limit 20\n{KEEPS}", b'{"fail": 1}', dispatch=done, answers=1)
    [answer] = asked.answers
    assert answer.payload == b'{"fail":"ERROR: "}'
    c = asked.listener.counters
    assert (c.failed, c.results_published, c.results_shortened, c.results_lost) == (1, 1, 1, 0)
    assert warnings(caplog) == [
        "result for device dev1 sent without any text (18 bytes: its command names and OK/ERROR only): the broker "
        f"refused the answer of 22 bytes on /K3Y/dev1/cmdexe as too large, got PUBACK 0x95 Packet too large, "
        f"{NOT_ANNOUNCED}; raise that limit for whole answers"
    ]


async def test_an_answer_over_the_announced_maximum_with_no_cut_that_fits_goes_without_any_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    # room for the command and for the answer's name and `OK: `, not for its text cut to its note, nor left out
    device = "d" * 50
    asked = await ask(tmp_path, f"max_packet_size 100\n{KEEPS}", b'{"report": true}', device=device, answers=1)
    [answer] = asked.answers
    assert answer.payload == no_text()
    c = asked.listener.counters
    assert (c.ok, c.results_published, c.results_shortened, c.results_lost) == (1, 1, 1, 0)
    sent = answer_packet_bytes(answer.topic, answer.payload, v5=True)
    [line] = warnings(caplog)
    assert re.fullmatch(
        re.escape(
            f"result for device {device} sent without any text (a PUBLISH of {sent} bytes: its command names and "
            "OK/ERROR only): mqtt: the broker takes packets of at most 100 bytes (the Maximum Packet Size in its "
            "CONNACK), got a PUBLISH of "
        )
        + r"\d+ bytes; not sent",
        line,
    ), line

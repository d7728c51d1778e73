"""The IoT Agent command codec: topics, JSON and UltraLight command payloads, cmdexe results."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ngsi.values import decode_percent
from gateway.uplinks.mqtt.commands import (
    CommandMessage,
    CommandPayloadError,
    command_topics,
    device_of_topic,
    parse_command,
    result_messages,
    result_text,
)
from gateway.uplinks.mqtt.config import MqttFormat, TopicStyle

JSON, UL = MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL


def test_topics_as_the_agents_publish_them() -> None:
    assert command_topics("K3Y", JSON) == ("/K3Y/+/cmd", "/json/K3Y/+/cmd")
    assert command_topics("K3Y", UL) == ("/K3Y/+/cmd", "/ul/K3Y/+/cmd")
    assert device_of_topic("/K3Y/urn:ngsi-ld:Device:gw1-relays/cmd", "K3Y", JSON) == "urn:ngsi-ld:Device:gw1-relays"
    assert device_of_topic("/json/K3Y/d1/cmd", "K3Y", JSON) == "d1"
    assert device_of_topic("/ul/K3Y/d1/cmd", "K3Y", JSON) is None
    assert device_of_topic("/OTHER/d1/cmd", "K3Y", JSON) is None
    assert device_of_topic("/K3Y/d1/cmdexe", "K3Y", JSON) is None


def test_json_commands() -> None:
    assert parse_command("/K3Y/d1/cmd", b'{"relay_3": true}', apikey="K3Y", fmt=JSON) == CommandMessage(
        device_id="d1", commands=(("relay_3", True),)
    )
    two = parse_command("/K3Y/d1/cmd", b'{"a": 1, "ping": {"data": "22"}}', apikey="K3Y", fmt=JSON)
    assert two.commands == (("a", 1), ("ping", {"data": "22"}))


@pytest.mark.parametrize(
    ("payload", "error", "names"),
    [
        (b"relay_3=on", "command payload: must be a JSON object, got 10 bytes that are not JSON", ()),
        (b"[1, 2]", 'command payload: must be a JSON object of {"<command>": <value>}, got a JSON list', ()),
        (b"{}", 'command payload: must be a JSON object of {"<command>": <value>}, got an empty object', ()),
        (b'{"": 1, "relay_1": true}', 'command payload: command names cannot be empty, got ""', ("relay_1",)),
    ],
)
def test_malformed_json(payload: bytes, error: str, names: tuple[str, ...]) -> None:
    with pytest.raises(CommandPayloadError) as exc:
        parse_command("/K3Y/d1/cmd", payload, apikey="K3Y", fmt=JSON)
    assert (str(exc.value), exc.value.names) == (error, names)


def test_ultralight_commands() -> None:
    assert parse_command("/K3Y/d1/cmd", b"d1@relay_5|on", apikey="K3Y", fmt=UL).commands == (("relay_5", "on"),)
    assert parse_command("/ul/K3Y/d1/cmd", b"d1@reboot", apikey="K3Y", fmt=UL).commands == (("reboot", None),)
    assert parse_command("/K3Y/d1/cmd", b"d1@ping|param1=1|param2=x", apikey="K3Y", fmt=UL).commands == (
        ("ping", {"param1": "1", "param2": "x"}),
    )


@pytest.mark.parametrize(
    ("payload", "error", "names"),
    [
        (
            b"relay_5|on",
            "command payload: must be <device_id>@<command>|<value>, got no <device_id>@<command> before the first '|'",
            (),
        ),
        (
            b"d1@|on",
            "command payload: must be <device_id>@<command>|<value>, got no <device_id>@<command> before the first '|'",
            (),
        ),
        (
            b"d2@relay_5|on",
            'command relay_5: the payload names device "d2", got it on the topic of device "d1"',
            ("relay_5",),
        ),
        (
            b"d1@ping|a=1|b",
            "command ping: parameters must be <name>=<value> separated by '|', got 2 fields of which one is not",
            ("ping",),
        ),
        (b"\xff\xfe", "command payload: must be UTF-8 UltraLight text, got 2 bytes that are not UTF-8", ()),
    ],
)
def test_malformed_ultralight(payload: bytes, error: str, names: tuple[str, ...]) -> None:
    with pytest.raises(CommandPayloadError) as exc:
        parse_command("/K3Y/d1/cmd", payload, apikey="K3Y", fmt=UL)
    assert (str(exc.value), exc.value.names) == (error, names)


_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # lone surrogates cannot be encoded to UTF-8
_UL_TEXT = st.text(st.characters(exclude_characters="|#@=", exclude_categories=_SURROGATES), min_size=1, max_size=20)


@settings(max_examples=150)
@given(device=_UL_TEXT.filter(lambda s: "/" not in s), name=_UL_TEXT, value=_UL_TEXT)
def test_ultralight_command_round_trip(device: str, name: str, value: str) -> None:
    payload = f"{device}@{name}|{value}".encode()
    parsed = parse_command(f"/K3Y/{device}/cmd", payload, apikey="K3Y", fmt=UL)
    assert parsed == CommandMessage(device_id=device, commands=((name, value),))


def test_results_as_the_json_agent_reads_them() -> None:
    info = "relays: command relay_3 written (modbus unit 4 FC05 @2 x1)"
    assert result_messages("d1", [("relay_3", True, info)], apikey="K3Y", fmt=JSON, style=TopicStyle.PLAIN) == [
        ("/K3Y/d1/cmdexe", b'{"relay_3":"OK: relays: command relay_3 written %28modbus unit 4 FC05 @2 x1%29"}')
    ]
    assert result_messages(
        "d1",
        [("a", False, 'no "x"'), ("b", True, "done")],
        apikey="K3Y",
        fmt=JSON,
        style=TopicStyle.PROTOCOL,
    ) == [("/json/K3Y/d1/cmdexe", b'{"a":"ERROR: no %22x%22","b":"OK: done"}')]


def test_results_as_the_ultralight_agent_reads_them() -> None:
    assert result_messages(
        "d1",
        [("relay_5", True, "written (FC05)"), ("x", False, "a|b#c")],
        apikey="K3Y",
        fmt=UL,
        style=TopicStyle.PROTOCOL,
    ) == [
        ("/ul/K3Y/d1/cmdexe", b"d1@relay_5|OK: written %28FC05%29"),
        ("/ul/K3Y/d1/cmdexe", b"d1@x|ERROR: a%7Cb%23c"),
    ]


@settings(max_examples=150)
@given(info=st.text(max_size=60), ok=st.booleans())
def test_result_text_is_orion_safe_and_reversible(info: str, ok: bool) -> None:
    text = result_text(ok, info, fmt=UL)
    assert not set(text) & set("|#\"'()<>;=")
    assert decode_percent(text.replace("%7C", "|").replace("%23", "#")) == ("OK: " if ok else "ERROR: ") + info

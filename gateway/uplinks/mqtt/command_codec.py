"""The IoT Agent command codec: command topics and payloads in, commands out; results in, answer payloads out. Pure.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.ngsi.values import encode_percent
from gateway.uplinks.mqtt.config import MqttFormat, TopicStyle, protocol_prefix

__all__ = [
    "CommandMessage",
    "CommandPayloadError",
    "device_of_topic",
    "parse_command",
    "result_messages",
    "result_text",
]


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

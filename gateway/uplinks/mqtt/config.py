"""The `[[uplinks]] type = "mqtt"` section: broker, session, formats, topics, apikeys, commands, TLS; checked offline."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

from pydantic import ValidationInfo, field_validator, model_validator

from gateway.configbase import BrokerClient, Field, Host, Section
from gateway.ngsi import identifiers, iota
from gateway.ngsi.config import ValueEncoding
from gateway.secrets import SecretRef
from gateway.tls import TlsSection
from gateway.uplinks.api import UplinkConfig
from gateway.uplinks.mqtt.confirm import ConfirmConfig

__all__ = [
    "DEFAULT_SEQUENCE_ATTRIBUTE",
    "DEFAULT_STATUS_TOPIC",
    "ApikeyRule",
    "CommandMode",
    "MqttFormat",
    "MqttProtocol",
    "MqttUplinkConfig",
    "TopicStyle",
    "command_topics",
    "protocol_prefix",
]

DEFAULT_SEQUENCE_ATTRIBUTE = "edgegwSeq"
COMMAND_CLIENT_SUFFIX = "-cmd"  # the command listener's client id: the uplink's and this
DEFAULT_STATUS_TOPIC = "edgegw/{gateway_id}/{uplink}/status"


class MqttProtocol(enum.Enum):
    V5 = "5"
    V311 = "3.1.1"


class MqttFormat(enum.Enum):
    IOTA_JSON = "iota-json"
    IOTA_UL = "iota-ul"
    NGSI_V2 = "ngsi-v2"


class TopicStyle(enum.Enum):
    PLAIN = "plain"  # /<apikey>/<device_id>/attrs
    PROTOCOL = "protocol"  # /json/<apikey>/<device_id>/attrs or /ul/<apikey>/<device_id>/attrs


class CommandMode(enum.Enum):
    OFF = "off"
    ON = "on"  # IoT Agent commands on /<apikey>/<device_id>/cmd, see gateway/uplinks/mqtt/commands.py


def protocol_prefix(fmt: MqttFormat) -> str:
    """The level a `topic_style = "protocol"` topic starts with: `/json` or `/ul`."""
    return "/json" if fmt is MqttFormat.IOTA_JSON else "/ul"


def command_topics(apikey: str, fmt: MqttFormat) -> tuple[str, ...]:
    """The command listener's subscriptions for one apikey: the agents publish commands without a protocol
    prefix; some setups add it."""
    return (f"/{apikey}/+/cmd", f"{protocol_prefix(fmt)}/{apikey}/+/cmd")


TOPIC_FIELDS = ("gateway_id", "entity_type", "entity_id", "adapter", "device")
STATUS_TOPIC_FIELDS = ("gateway_id", "uplink")


def _check_template(value: str, allowed: Sequence[str]) -> str:
    unknown = iota.template_fields(value) - set(allowed)
    if unknown:
        valid = ", ".join("{" + f + "}" for f in allowed)
        raise ValueError(f"unknown placeholder {{{min(unknown)}}}; valid: {valid}")
    return value


def _check_topic_text(value: str) -> str:
    if not value or any(c in value for c in "+#\x00"):
        raise ValueError("must be a non-empty MQTT topic without the wildcards + and #")
    return value


def _check_apikey(v: str) -> str:
    if not v or any(c in v for c in "/+#\x00"):
        raise ValueError("must be one MQTT topic level (not empty, no '/', '+', '#')")
    return v


class ApikeyRule(Section):
    """One `[[uplinks.apikeys]]` entry: the API key of the agent's config group for some entities."""

    apikey: str
    entity_type: str | None = None
    entity_id_pattern: str | None = Field(default=None, description="a regular expression the whole entity id matches")

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, v: str) -> str:
        return _check_apikey(v)

    @field_validator("entity_id_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"must be a regular expression, {exc}") from None
        return v

    @model_validator(mode="after")
    def _selects(self) -> ApikeyRule:
        if self.entity_type is None and self.entity_id_pattern is None:
            raise ValueError(
                "needs entity_type or entity_id_pattern (or both), got neither; without them use the uplink's apikey"
            )
        return self


class MqttUplinkConfig(UplinkConfig):
    """An `[[uplinks]]` entry of type `mqtt`."""

    host: Host = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="default 1883, or 8883 with tls")
    protocol: MqttProtocol = MqttProtocol.V5
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    username: str | None = Field(default=None, min_length=1)
    password: SecretRef | None = None
    keepalive_s: int = Field(default=60, ge=5, le=65535)
    session_expiry_s: int = Field(default=86_400, ge=0, le=4_294_967_295, description="MQTT 5 only")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    ack_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_inflight: int = Field(
        default=100,
        ge=1,
        le=65_535,
        description="unacknowledged messages at most; an MQTT 5 broker's lower Receive Maximum wins",
    )
    max_message_bytes: int = Field(default=262_144, ge=512, le=268_435_455)
    tls: TlsSection | None = None
    format: MqttFormat = MqttFormat.IOTA_JSON
    apikeys: tuple[ApikeyRule, ...] = ()
    apikey: str | None = None
    topic_style: TopicStyle = TopicStyle.PLAIN
    device_id: str = "{entity_id}"
    topic: str = "edgegw/{gateway_id}/entities/{entity_type}"
    status_topic: str = DEFAULT_STATUS_TOPIC
    value_encoding: ValueEncoding = ValueEncoding.PERCENT
    commands: CommandMode = CommandMode.OFF
    orion_max_request_bytes: int = Field(
        default=1_048_576, ge=4096, le=268_435_455, description="the request limit of the Orion behind the IoT Agent"
    )
    agent_attribute_bytes: int = Field(
        default=48, ge=0, le=65_536, description="what the agent's provisioning adds to each attribute"
    )
    agent_entity_bytes: int = Field(
        default=128, ge=0, le=1_048_576, description="what the agent's provisioning adds to each entity"
    )
    sequence_attribute: str | None = None
    confirm: ConfirmConfig | None = None

    @field_validator("password")
    @classmethod
    def _password_needs_user(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("username") is None and "username" in info.data:
            raise ValueError("needs a username (MQTT sends no password without one)")
        return v

    @field_validator("apikeys")
    @classmethod
    def _apikeys(cls, v: tuple[ApikeyRule, ...], info: ValidationInfo) -> tuple[ApikeyRule, ...]:
        if v and info.data.get("format") is MqttFormat.NGSI_V2:
            raise ValueError("must be empty with format ngsi-v2 (API keys are for the IoT Agent formats)")
        return v

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, v: str | None, info: ValidationInfo) -> str | None:
        fmt = info.data.get("format")
        if v is None:
            if fmt in (MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL) and not info.data.get("apikeys"):
                raise ValueError(f"required when format is {fmt.value} (the IoT Agent service's API key)")
            return v
        return _check_apikey(v)

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: CommandMode, info: ValidationInfo) -> CommandMode:
        fmt = info.data.get("format")
        if v is CommandMode.ON and fmt is MqttFormat.NGSI_V2:
            raise ValueError(
                'must be "off" with format ngsi-v2 (commands come from an IoT Agent: format iota-json or iota-ul)'
            )
        return v

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        return _check_template(v, iota.DEVICE_ID_FIELDS)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return _check_template(_check_topic_text(v), TOPIC_FIELDS)

    @field_validator("status_topic")
    @classmethod
    def _status_topic(cls, v: str) -> str:
        return _check_template(_check_topic_text(v), STATUS_TOPIC_FIELDS)

    @field_validator("sequence_attribute")
    @classmethod
    def _sequence_attribute(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("format") is MqttFormat.NGSI_V2:
            raise ValueError("must be unset with format ngsi-v2 (its envelope carries the sequence numbers)")
        identifiers.check_attribute_name(v)
        if v in (iota.TIME_INSTANT, "id", "type") or "@" in v:
            raise ValueError("must be a measure name the IoT Agents pass on (not TimeInstant, id or type, no '@')")
        return v

    @model_validator(mode="after")
    def _confirmation(self) -> MqttUplinkConfig:
        if self.confirm is not None and self.format is MqttFormat.NGSI_V2:
            raise ValueError(
                "confirm needs format iota-json or iota-ul (it reads what an IoT Agent wrote to "
                "Orion), got ngsi-v2; drop [uplinks.confirm]"
            )
        return self

    @property
    def sequence_measure(self) -> str | None:
        """The measure carrying each reading's seq: `sequence_attribute`, or edgegwSeq when confirmation needs one."""
        if self.sequence_attribute is None and self.confirm is not None:
            return DEFAULT_SEQUENCE_ATTRIBUTE
        return self.sequence_attribute

    def config_warnings(self) -> list[tuple[str, str]]:
        """Those of `[uplinks.confirm]` (credentials over plain http), under its key; the broker connection has none."""
        return [(f"confirm.{key}", text) for key, text in self.confirm.config_warnings()] if self.confirm else []

    def all_apikeys(self) -> tuple[str, ...]:
        """Every API key the uplink publishes with (its `[[apikeys]]` rules, then `apikey`), each once."""
        keys = [rule.apikey for rule in self.apikeys] + ([self.apikey] if self.apikey is not None else [])
        return tuple(dict.fromkeys(keys))

    def broker_key(self) -> tuple[str, int]:
        """(host, port) of the broker, to tell uplinks that share one."""
        return self.host.lower(), self.port or (8883 if self.tls else 1883)

    def render_status_topic(self, gateway_id: str) -> str:
        return self.status_topic.format(gateway_id=gateway_id, uplink=self.name)

    def effective_client_id(self, gateway_id: str) -> str:
        """The client id the uplink connects with: `client_id`, or edgegw-<gateway id>-<name>."""
        return self.client_id or f"edgegw-{gateway_id}-{self.name}"

    def broker_clients(self, gateway_id: str) -> tuple[BrokerClient, ...]:
        """Each connection the uplink makes to its broker: its own, and with commands on its listener's
        (`<client id>-cmd`, commands.py). No other connection may share one (gateway/config.py)."""
        own = self.effective_client_id(gateway_id)
        clients = [BrokerClient(self.broker_key(), own)]
        if self.commands is CommandMode.ON:
            clients.append(BrokerClient(self.broker_key(), own + COMMAND_CLIENT_SUFFIX, "the command listener of "))
        return tuple(clients)

    @classmethod
    def check_together(cls, sections: Sequence[tuple[int, UplinkConfig]], gateway_id: str) -> list[str]:
        """Errors between `mqtt` uplinks on one broker: they must not share a retained status topic, nor listen
        for the same commands. (Nor a client id, with any other connection: checked across adapters and
        uplinks, gateway/config.py.)"""
        mqtt = [(i, s) for i, s in sections if isinstance(s, MqttUplinkConfig)]
        return _shared_status_topics(mqtt, gateway_id) + _shared_command_topics(mqtt)


def _shared_status_topics(sections: Sequence[tuple[int, MqttUplinkConfig]], gateway_id: str) -> list[str]:
    seen: dict[tuple[tuple[str, int], str], int] = {}
    errors: list[str] = []
    for i, section in sections:
        key = (section.broker_key(), section.render_status_topic(gateway_id))
        if key in seen:
            errors.append(
                f"uplinks[{i}].status_topic: must differ from uplinks[{seen[key]}].status_topic on the same "
                f"broker (one's last will would overwrite the other's online), got {key[1]!r} for both; "
                "put {uplink} in the template"
            )
        seen.setdefault(key, i)
    return errors


def _shared_command_topics(sections: Sequence[tuple[int, MqttUplinkConfig]]) -> list[str]:
    """Two listeners whose subscriptions overlap would both run every command (a locker pulsed twice) and
    both answer it. Every command filter has its one `+` at the same level, so two overlap only when equal."""
    listening: dict[tuple[tuple[str, int], str], tuple[int, str, str]] = {}  # (broker, filter) -> (i, name, key)
    errors: list[str] = []
    for i, section in sections:
        if section.commands is not CommandMode.ON:
            continue
        broker = section.broker_key()
        clash = next(
            (
                (listening[(broker, topic)], topic)
                for apikey in section.all_apikeys()
                for topic in command_topics(apikey, section.format)
                if (broker, topic) in listening
            ),
            None,
        )
        if clash is not None:
            (j, name, apikey), topic = clash
            errors.append(
                f'uplinks[{i}].commands: must be "off" while uplinks[{j}] ("{name}") takes the commands of apikey '
                f'"{apikey}" on the same broker {broker[0]}:{broker[1]} (both would subscribe to {topic} and run '
                'every command twice: a locker would open twice), got "on"; set commands = "off" on one of them, '
                "or give them different apikeys"
            )
        for apikey in section.all_apikeys():
            for topic in command_topics(apikey, section.format):
                listening.setdefault((broker, topic), (i, section.name, apikey))
    return errors

"""The gateway's TOML configuration, validated into typed sections with key-path errors."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway import registry
from gateway.adapter_api import AdapterConfig, ProcessingChecked
from gateway.backup.config import BackupConfig
from gateway.buffer.config import BufferConfig
from gateway.configbase import (
    ConnectsToBrokers,
    Field,
    Identifier,
    Section,
    format_validation_error,
    read_toml,
    show_value,
)
from gateway.errors import ConfigError
from gateway.fleet.config import FleetConfig
from gateway.mail.config import MailConfig
from gateway.ngsi.config import NgsiConfig, ValueEncoding
from gateway.processing.api import ProcessorConfig
from gateway.processing.registry import parse_processing
from gateway.uplinks.api import UplinkConfig
from gateway.web.config import WebConfig


class LogFormat(enum.Enum):
    AUTO = "auto"  # JSON lines when stderr is not a terminal, readable text when it is
    JSON = "json"
    TEXT = "text"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class GatewaySection(Section):
    id: Identifier = Field(description="this box's id, unique across the platform; in every message it sends")
    data_dir: Path = Field(default=Path("/var/lib/edgegw"), description="buffer database and state")
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.AUTO
    control_socket: Path | None = Field(
        default=None,
        description="the control socket the web UI and local tools talk to (owner and group only); default <data_dir>/control.sock",
    )
    status_interval_s: float = Field(
        default=5.0,
        ge=0.1,
        le=300,
        description="how often status.json (`edgegw status`) is rewritten; each time is a small write to the card",
    )

    def control_path(self) -> Path:
        return self.control_socket if self.control_socket is not None else self.data_dir / "control.sock"


class _Top(Section):
    gateway: GatewaySection
    buffer: BufferConfig = BufferConfig()
    ngsi: NgsiConfig = NgsiConfig()
    adapters: list[dict[str, Any]] = []  # noqa: RUF012 - pydantic model: the default is copied for each instance
    uplinks: list[dict[str, Any]] = []  # noqa: RUF012 - pydantic model: the default is copied for each instance
    processing: list[dict[str, Any]] = []  # noqa: RUF012 - pydantic model: the default is copied for each instance
    web: WebConfig = WebConfig()
    mail: MailConfig | None = None
    fleet: FleetConfig | None = None
    backup: BackupConfig = BackupConfig()


class GatewayConfig(Section):
    gateway: GatewaySection
    buffer: BufferConfig
    ngsi: NgsiConfig
    adapters: tuple[AdapterConfig, ...]
    uplinks: tuple[UplinkConfig, ...]
    processing: tuple[ProcessorConfig, ...] = ()  # in file order: the order they run in
    web: WebConfig = WebConfig()
    mail: MailConfig | None = None  # the one outgoing-mail component; None: features that mail are off
    fleet: FleetConfig | None = None  # Device entity, metrics, alarms, remote config, safe mode (gateway/fleet)
    backup: BackupConfig = BackupConfig()


def _sections(
    raw: list[tuple[int, dict[str, Any]]], key: str, group: str, base: type[Section], errors: list[str]
) -> list[tuple[int, Any]]:
    out = []
    for i, item in raw:
        where = f"{key}[{i}]"
        kind = item.get("type")
        if not isinstance(kind, str):
            what = "required key is missing" if "type" not in item else f"must be a string, got {show_value(kind)}"
            errors.append(f"{where}.type: {what}; valid: {', '.join(registry.available(group))}")
            continue
        try:
            cls = registry.load(group, kind)
        except KeyError as exc:
            errors.append(f"{where}.type: {exc.args[0]}")
            continue
        model = cls.config_model
        assert issubclass(model, base)
        try:
            out.append((i, model.model_validate(item)))
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, model, where))
    return out


def parse_config(doc: dict[str, Any], source: str = "") -> GatewayConfig:
    """Validate a parsed TOML document; raises ConfigError listing every problem found."""
    errors: list[str] = []
    top: _Top | None = None
    try:
        top = _Top.model_validate(doc)
    except ValidationError as exc:
        errors.extend(format_validation_error(exc, _Top))
    # check the adapters and uplinks even when the top level has errors, so one run shows everything
    raw_adapters = doc.get("adapters", [])
    raw_uplinks = doc.get("uplinks", [])
    adapters = _sections(_tables(raw_adapters), "adapters", registry.ADAPTER_GROUP, AdapterConfig, errors)
    uplinks = _sections(_tables(raw_uplinks), "uplinks", registry.UPLINK_GROUP, UplinkConfig, errors)
    seen: dict[str, str] = {}
    for key, items in (("adapters", adapters), ("uplinks", uplinks)):
        for i, section in items:
            if section.name in seen:
                errors.append(
                    f"{key}[{i}].name: must be unique, got {section.name!r}; {seen[section.name]} has it already"
                )
            seen.setdefault(section.name, f"{key}[{i}]")
    errors.extend(_checked_together(uplinks, doc))
    errors.extend(_shared_client_ids((("adapters", adapters), ("uplinks", uplinks)), doc))
    raw_processing = doc.get("processing", [])
    processing: list[ProcessorConfig] = parse_processing(raw_processing, errors)
    errors.extend(_unknown_adapters(doc.get("processing"), raw_adapters))
    if isinstance(raw_processing, list) and len(processing) == len(raw_processing):
        errors.extend(_checked_with_processing(adapters, processing))
    if not raw_uplinks:
        errors.append("uplinks: at least one [[uplinks]] entry is needed, got none")
    if errors or top is None:
        raise ConfigError(errors, source)
    return GatewayConfig(
        gateway=top.gateway,
        buffer=top.buffer,
        ngsi=top.ngsi,
        adapters=tuple(s for _, s in adapters),
        uplinks=tuple(_with_ngsi_defaults(s, raw_uplinks[i], top.ngsi) for i, s in uplinks),
        processing=tuple(processing),
        web=top.web,
        mail=top.mail,
        fleet=top.fleet,
        backup=top.backup,
    )


def _unknown_adapters(raw: Any, raw_adapters: Any) -> list[str]:
    """A `match.adapter` naming no adapter would silently match nothing: most often a typo."""
    names = [a.get("name") for _, a in _tables(raw_adapters)]
    errors = []
    for i, item in _tables(raw):
        match = item.get("match")
        wanted = match.get("adapter") if isinstance(match, dict) else None
        if isinstance(wanted, str) and wanted not in names:
            known = ", ".join(str(n) for n in names) or "none"
            errors.append(f'processing[{i}].match.adapter: no such adapter, got "{wanted}"; adapters: {known}')
    return errors


def _checked_with_processing(adapters: list[tuple[int, Any]], processing: list[ProcessorConfig]) -> list[str]:
    """Errors between an adapter and the `[[processing]]` entries, from its config's optional
    `check_with_processing` (e.g. the scanner's `card_numbers = "stage"` needs a pseudonymize entry).
    Not asked while an entry is invalid: the one it needs may be that entry, and "got none" would mislead."""
    errors: list[str] = []
    for i, section in adapters:
        if isinstance(section, ProcessingChecked):
            errors.extend(section.check_with_processing(i, processing))
    return errors


def _checked_together(uplinks: list[tuple[int, Any]], doc: dict[str, Any]) -> list[str]:
    """Errors between uplinks of one type, from the type's optional `check_together(sections, gateway_id)`
    (e.g. two `mqtt` uplinks on one broker sharing a retained status topic)."""
    gateway_id = _gateway_id(doc)
    if gateway_id is None:
        return []
    errors: list[str] = []
    for model in dict.fromkeys(type(section) for _, section in uplinks):
        check = getattr(model, "check_together", None)
        if check is not None:
            errors.extend(check([(i, s) for i, s in uplinks if type(s) is model], gateway_id))
    return errors


def _shared_client_ids(groups: tuple[tuple[str, list[tuple[int, Any]]], ...], doc: dict[str, Any]) -> list[str]:
    """Two connections to one broker with one client id, whether adapters' or uplinks': the broker keeps
    one connection per client id, so each would take the other's session over, reconnecting forever."""
    gateway_id = _gateway_id(doc)
    if gateway_id is None:
        return []
    first: dict[tuple[tuple[str, int], str], tuple[str, str]] = {}  # -> (where, who connects with it)
    errors: list[str] = []
    for key, sections in groups:
        for i, section in sections:
            if not isinstance(section, ConnectsToBrokers):
                continue
            where, name = f"{key}[{i}]", getattr(section, "name", "")
            for client in section.broker_clients(gateway_id):
                who = f'{client.role}{where} ("{name}")'
                taken = first.setdefault((client.broker, client.client_id), (where, who))
                if taken[0] != where:
                    host, port = client.broker
                    errors.append(
                        f"{where}.client_id: must differ from the client id of every other connection to broker "
                        f'{host}:{port}, got "{client.client_id}" for {taken[1]} and for {who}; the broker keeps '
                        "one connection per client id, so each would take the other's session over; set "
                        "client_id on one of them"
                    )
    return errors


def _gateway_id(doc: dict[str, Any]) -> str | None:
    gateway = doc.get("gateway")
    gateway_id = gateway.get("id") if isinstance(gateway, dict) else None
    return gateway_id if isinstance(gateway_id, str) else None  # else reported by the top-level validation


def _with_ngsi_defaults(section: UplinkConfig, raw: dict[str, Any], ngsi: NgsiConfig) -> UplinkConfig:
    """`[ngsi] value_encoding` is the default of every uplink that does not set its own."""
    if "value_encoding" in type(section).model_fields and "value_encoding" not in raw:
        return section.model_copy(update={"value_encoding": ngsi.value_encoding})
    return section


def _tables(raw: Any) -> list[tuple[int, dict[str, Any]]]:
    # entries that are not tables were already reported by the top-level validation
    return [(i, item) for i, item in enumerate(raw) if isinstance(item, dict)] if isinstance(raw, list) else []


def config_warnings(cfg: GatewayConfig) -> list[str]:
    """What a valid configuration does that the admin should know of, each line after its key path, in file
    order: `edgegw check-config` prints them (exit 0) and the gateway starts with them. Warnings, not errors:
    such configs were valid before, and a box upgraded with one must keep reading and buffering (the package
    starts the units only when check-config passes). A section's own `config_warnings() -> [(key, text)]`
    (credentials over plain http) is logged by its component at start; see `start_warnings`."""
    lines = [line for i, adapter in enumerate(cfg.adapters) for line in _own_warnings(f"adapters[{i}]", adapter)]
    for i, section in enumerate(cfg.uplinks):
        lines.extend(_own_warnings(f"uplinks[{i}]", section))
        lines.extend(_stricter_encoding(i, section, cfg.ngsi))
    return lines


def _own_warnings(where: str, section: object) -> list[str]:
    own = getattr(section, "config_warnings", None)
    return [f"{where}.{key}: {text}" for key, text in (own() if own is not None else [])]


def start_warnings(cfg: GatewayConfig) -> list[str]:
    """The config warnings no component logs at its start, for the gateway to log once at start."""
    return [line for i, section in enumerate(cfg.uplinks) for line in _stricter_encoding(i, section, cfg.ngsi)]


def _stricter_encoding(i: int, section: UplinkConfig, ngsi: NgsiConfig) -> list[str]:
    """An uplink's own `value_encoding = "reject"` under an `[ngsi] value_encoding` that is not: readings are
    checked with the gateway-wide one before the buffer (App._emit), so a value such as 人吉(水の手橋) passes there,
    goes out unencoded and is dead-lettered when the broker (or the uplink) refuses it, instead of being refused
    at the source with a counter and a log line. The other way round is harmless: under `[ngsi] value_encoding = "reject"` no such
    value reaches an uplink. An uplink that sets none has `[ngsi]`'s (_with_ngsi_defaults), so "reject" here
    under another `[ngsi]` one is the uplink's own."""
    if (
        ngsi.value_encoding is ValueEncoding.REJECT
        or getattr(section, "value_encoding", None) is not ValueEncoding.REJECT
    ):
        return []
    return [
        f'uplinks[{i}].value_encoding: "reject" is stricter than [ngsi] value_encoding = "{ngsi.value_encoding.value}"; '
        "readings are checked at the source with [ngsi]'s, so a value such as 人吉(水の手橋) passes there and is "
        'dead-lettered on this uplink instead of delivered: set [ngsi] value_encoding = "reject" to refuse such '
        "readings at the source (counted and logged), or drop this uplink's value_encoding to send them encoded"
    ]


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    return parse_config(read_toml(path, missing_hint="create it or pass --config"), str(path))

"""The `[[adapters]] type = "modbus"` section: buses (ports, serial settings), devices on them, checks; no I/O but profile files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, PrivateAttr, model_validator

from gateway.adapter_api import AdapterConfig
from gateway.configbase import ConfigProblems, Field, Identifier, Section
from gateway.errors import ConfigError
from gateway.location import Location
from gateway.ngsi.identifiers import check_attribute_name, check_id_template, template_fields
from gateway.processing.quality import QualityConfig
from gateway.processing.river import LEVEL_FACTORS, RiverConfig
from gateway.profiles.loader import DEFAULT_SEARCH_PATH, load_profile
from gateway.profiles.schema import ControlledProperties, DataType, Parity, Profile, Transport

__all__ = [
    "DEFAULT_DEVICE_ENTITY_ID",
    "DEFAULT_ENTITY_ID",
    "LEVEL_FACTORS",
    "PORT_HELP",
    "TEMPLATE_FIELDS",
    "BusConfig",
    "DeviceConfig",
    "ModbusConfig",
    "PortAddress",
    "RiverSetup",
    "SerialSettings",
    "parse_port",
]

_T = TypeVar("_T")

PORT_HELP = (
    "must be tcp://HOST:PORT (Modbus TCP), rtu-over-tcp://HOST:PORT (RTU through a serial server), "
    "rtu:///dev/ttyUSB0 or a bare /dev/… path (RS-485), or rtu://socket://HOST:PORT (a pyserial URL)"
)
_HOST_PORT_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class PortAddress:
    """Where a bus is: `transport` with `host`/`port` (TCP kinds) or `path` (a pyserial URL or device path)."""

    transport: Transport
    text: str
    host: str = ""
    port: int = 0
    path: str = ""


def parse_port(text: str) -> PortAddress:
    """`tcp://10.0.0.5:502`, `rtu-over-tcp://10.0.0.6:4001`, `rtu:///dev/ttyUSB0`, `/dev/ttyUSB0`, `rtu://socket://h:p`."""
    text = text.strip()
    if text.startswith("/"):
        return PortAddress(transport=Transport.RTU, text=text, path=text)
    for scheme, transport in (("tcp://", Transport.TCP), ("rtu-over-tcp://", Transport.RTU_OVER_TCP)):
        if text.startswith(scheme):
            m = _HOST_PORT_RE.match(text[len(scheme) :])
            if m is None:
                raise ValueError(PORT_HELP)
            port = int(m.group("port") or (502 if transport is Transport.TCP else 0))
            if not 1 <= port <= 65535:
                raise ValueError(f"{PORT_HELP}; the TCP port must be 1..65535")
            return PortAddress(transport=transport, text=text, host=m.group("host").strip("[]"), port=port)
    if text.startswith("rtu://"):
        path = text[len("rtu://") :]
        if not path or not (path.startswith("/") or re.match(r"^[a-z]+://", path)):
            raise ValueError(PORT_HELP)
        return PortAddress(transport=Transport.RTU, text=text, path=path)
    raise ValueError(PORT_HELP)


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialSettings:
    baud: int = 9600
    parity: Parity = Parity.NONE
    data_bits: int = 8
    stop_bits: int = 1

    def describe(self) -> str:
        return f"{self.baud} {self.data_bits}{self.parity.value}{self.stop_bits}"


def _check_port(v: str) -> str:
    parse_port(v)
    return v


Port = Annotated[str, AfterValidator(_check_port)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]

# placeholders an entity id template may use
TEMPLATE_FIELDS = ("gateway", "adapter", "bus", "device", "unit_id", "entity_type")
DEFAULT_ENTITY_ID = "urn:ngsi-ld:{entity_type}:{gateway}-{device}"
DEFAULT_DEVICE_ENTITY_ID = "urn:ngsi-ld:Device:{gateway}-{device}"


def _check_template(v: str) -> str:
    check_id_template(v)
    unknown = [f for f in template_fields(v) if f not in TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(
            f"has an unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        )
    return v


Template = Annotated[str, AfterValidator(_check_template)]


class BusConfig(Section):
    """One line: a serial port (RS-485), a Modbus TCP host, or a TCP serial server."""

    name: Identifier
    port: Port
    # serial settings; unset means "what every device's profile on this bus says"
    baud: int | None = None
    parity: Parity | None = None
    data_bits: Annotated[int, Field(ge=7, le=8)] | None = None
    stop_bits: Annotated[int, Field(ge=1, le=2)] | None = None
    connect_timeout: Seconds = 3.0
    reopen_max: Seconds = 60.0  # longest wait between attempts to reopen a lost port or connection

    @property
    def address(self) -> PortAddress:
        return parse_port(self.port)


class RiverSetup(RiverConfig):
    """`[adapters.devices.river]`: which point is the water level (or the distance down to it) and its thresholds."""

    point: str
    level_attribute: Annotated[str, AfterValidator(check_attribute_name)] = (
        "waterLevel"  # the level computed with `stage`
    )


class DeviceConfig(Section):
    """One unit on a bus, described by its firmware profile."""

    name: Identifier
    bus: Identifier
    profile: str
    unit_id: Annotated[int, Field(ge=1, le=255)]  # 248-255 are reserved, yet some sensors answer there (S8: 254)
    entity_id: Template = DEFAULT_ENTITY_ID
    device_entity_id: Template = DEFAULT_DEVICE_ENTITY_ID
    poll_interval: Seconds | None = None  # replaces the profile's default; points with their own keep it
    timeout: Annotated[float, Field(gt=0, le=60)] | None = None
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    inter_request_delay: Annotated[float, Field(ge=0, le=60)] | None = None
    # point name → checks (replace the ones derived from the profile)
    quality: dict[str, QualityConfig] = {}  # noqa: RUF012 - pydantic model: the default is copied for each instance
    river: RiverSetup | None = None
    location: Location | None = None  # where the device is: every entity it makes gets it as `location`
    # what it senses or switches (its Device entity's controlledProperty); unset: what its profile says
    controlled_property: ControlledProperties | None = None


class ModbusConfig(AdapterConfig):
    type: Literal["modbus"]
    # emptiness is checked below: pydantic's own length check also fires when one item is merely invalid
    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]
    profiles_dir: tuple[str, ...] = ()  # searched before /etc/edgegw/profiles and the shipped profiles
    offline_after: Annotated[int, Field(ge=1, le=100)] = 3  # failed polls in a row before a device is offline
    probe_initial: Seconds = 5.0  # first probe of an offline device after this, then doubling …
    probe_max: Seconds = 300.0  # … up to this
    # Each profile named by a device, read and validated once, by the check below: the adapter, the bus
    # settings and the tools ask again and again, and a file edited under a running gateway must not
    # change one device's points half-way (a reload re-reads them all)
    _profiles: dict[str, Profile] = PrivateAttr(default_factory=dict)

    @property
    def search_path(self) -> tuple[Path, ...]:
        return tuple(Path(p) for p in self.profiles_dir) + DEFAULT_SEARCH_PATH

    def profile_of(self, device: DeviceConfig) -> Profile:
        """The device's profile as validated with this config (loaded on first use, then kept)."""
        profile = self._profiles.get(device.profile)
        if profile is None:
            profile = self._profiles[device.profile] = load_profile(device.profile, self.search_path)
        return profile

    def serial_settings(self, bus: BusConfig) -> SerialSettings:
        """The bus's own settings, else the (agreeing, checked at validation) settings of its devices' profiles."""
        profiles = [self.profile_of(d).interface for d in self.devices if d.bus == bus.name]

        def pick(key: str, own: _T | None) -> _T:
            if own is not None:
                return own
            value: _T = getattr(profiles[0], key) if profiles else getattr(SerialSettings(), key)
            return value

        return SerialSettings(
            baud=int(pick("baud", bus.baud)),
            parity=pick("parity", bus.parity),
            data_bits=int(pick("data_bits", bus.data_bits)),
            stop_bits=int(pick("stop_bits", bus.stop_bits)),
        )

    @model_validator(mode="after")
    def _consistent(self) -> ModbusConfig:
        problems: list[tuple[str, str]] = []  # (key path in this section, message)
        problems.extend(
            (key, f"at least one [[adapters.{key}]] table is needed, got none")
            for key in ("buses", "devices")
            if not getattr(self, key)
        )
        if self.probe_max < self.probe_initial:
            problems.append(
                ("probe_max", f"must not be below probe_initial ({self.probe_initial:g}), got {self.probe_max:g}")
            )
        buses = {b.name: i for i, b in enumerate(self.buses)}
        if len(buses) != len(self.buses):
            problems.append(("buses", "names must be unique"))
        names: set[str] = set()
        units: dict[tuple[str, int], str] = {}
        profiles: dict[str, Profile] = {}
        for i, d in enumerate(self.devices):
            where = f"devices[{i}]"
            if d.name in names:
                problems.append((f"{where}.name", f'must be unique, got "{d.name}"'))
            names.add(d.name)
            if d.bus not in buses:
                problems.append((f"{where}.bus", f'no such bus, got "{d.bus}"; buses: {", ".join(buses)}'))
            other = units.get((d.bus, d.unit_id))
            if other is not None:
                problems.append(
                    (
                        f"{where}.unit_id",
                        (
                            f"{other} has the same unit id on bus {d.bus}, got {d.unit_id}; "
                            "every device on one bus needs its own"
                        ),
                    )
                )
            units[(d.bus, d.unit_id)] = d.name
            try:
                profile = profiles[d.name] = self.profile_of(d)
            except ConfigError as exc:
                # a profile file's own problems are one line each, after the file they are in
                file = "" if exc.source == d.profile or not exc.source else f"{exc.source}: "
                problems.extend((f"{where}.profile", f"{file}{error}") for error in exc.errors)
                continue
            problems.extend(_device_problems(where, d, profile))
        for name, bi in buses.items():
            bus = self.buses[bi]
            on_bus = [(d, profiles[d.name]) for d in self.devices if d.bus == name and d.name in profiles]
            if bus.address.transport is Transport.TCP:
                continue
            for key in ("baud", "parity", "data_bits", "stop_bits"):
                if getattr(bus, key) is not None:
                    continue
                seen = {getattr(p.interface, key) for _, p in on_bus}
                if len(seen) > 1:
                    said = ", ".join(f"{d.name}: {_show(getattr(p.interface, key))}" for d, p in on_bus)
                    problems.append(
                        (
                            f"buses[{bi}].{key}",
                            (
                                f"the devices' profiles disagree ({said}); set {key} for "
                                "the bus and configure every device on it to match"
                            ),
                        )
                    )
        if problems:
            raise ConfigProblems(problems)
        return self


def _show(v: object) -> str:
    return str(getattr(v, "value", v))


def _device_problems(where: str, d: DeviceConfig, profile: Profile) -> list[tuple[str, str]]:
    names = {p.name: p for p in profile.points}
    problems: list[tuple[str, str]] = [
        (f"{where}.quality.{point}", f"no such point in {d.profile}; points: {', '.join(names)}")
        for point in d.quality
        if point not in names
    ]
    if d.river is not None:
        p = names.get(d.river.point)
        if p is None:
            problems.append(
                (
                    f"{where}.river.point",
                    (f'no such point in {d.profile}, got "{d.river.point}"; points: {", ".join(names)}'),
                )
            )
        elif p.data_type in (DataType.BOOL, DataType.STRING, DataType.BITFIELD):
            problems.append((f"{where}.river.point", f'must be a numeric point, got "{p.name}" ({p.data_type.value})'))
        elif p.unit not in LEVEL_FACTORS:
            problems.append(
                (
                    f"{where}.river.point",
                    (
                        "must be in metres, centimetres or millimetres (MTR, CMT, MMT), "
                        f'got unit {p.unit or "none"} for "{p.name}"'
                    ),
                )
            )
        elif d.river.stage is None and p.attribute is None:
            problems.append(
                (
                    f"{where}.river.point",
                    (
                        f'"{p.name}" is not published (no attribute in the profile); '
                        "pick a published level point or set river.stage to compute the "
                        "level from a distance"
                    ),
                )
            )
        published = {q.attribute: q.name for q in profile.points if q.attribute is not None}
        if d.river.stage is not None and d.river.level_attribute in published:
            problems.append(
                (
                    f"{where}.river.level_attribute",
                    (
                        f'point "{published[d.river.level_attribute]}" of {d.profile} publishes it already, '
                        f'got "{d.river.level_attribute}"; name the computed level otherwise, or make that '
                        "point river.point and drop river.stage"
                    ),
                )
            )
    return problems

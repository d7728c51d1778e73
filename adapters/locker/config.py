"""The `[[adapters]] type = "locker"` section: buses, boards, the compartment layout and the pickup rules; no I/O."""

from __future__ import annotations

import enum
import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, model_validator

from adapters.locker.codec import CU16_LOCKS, CU16_MAX_BOARD, CU48_LOCKS, Dialect, LockPolarity, OccupancyPolarity
from gateway.adapter_api import AdapterConfig
from gateway.configbase import ConfigProblems, Field, Identifier, Section
from gateway.ngsi.identifiers import check_id_template, template_fields

__all__ = [
    "DEFAULT_ENTITY_ID",
    "BoardConfig",
    "BoardModel",
    "BusConfig",
    "LockerConfig",
    "PatronAddress",
    "PickupConfig",
    "serial_url",
]

DEFAULT_ENTITY_ID = "urn:ngsi-ld:LockerCompartment:{gateway}-{adapter}-{label}"
TEMPLATE_FIELDS = ("gateway", "adapter", "label")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class BoardModel(enum.Enum):
    CU16 = "cu16"
    CU48 = "cu48"
    XOR12 = "xor12"
    XOR24 = "xor24"

    @property
    def locks(self) -> int:
        return {BoardModel.CU16: CU16_LOCKS, BoardModel.CU48: CU48_LOCKS, BoardModel.XOR12: 12}.get(self, 24)

    @property
    def dialect(self) -> Dialect:
        if self is BoardModel.XOR12:
            return Dialect.XOR_12
        return Dialect.XOR_24 if self is BoardModel.XOR24 else Dialect.KERONG

    @property
    def addresses(self) -> tuple[int, int]:
        if self is BoardModel.CU16:
            return (0, CU16_MAX_BOARD)
        return (0, 255) if self is BoardModel.CU48 else (1, 255)


class PatronAddress(enum.Enum):
    """How the patron's e-mail address leaves the adapter in the pickup event's `patron` attribute."""

    TOKEN = "token"  # the processing stage's pseudonymize processor applied here (gateway key ring, kind email)
    CLEAR = "clear"  # the address itself: only where a contract with the platform says so


def _check_label(v: str) -> str:
    if not _LABEL_RE.match(v):
        raise ValueError("must be 1..32 of A-Z a-z 0-9 _ - starting with a letter or digit (e.g. A-03)")
    return v


Label = Annotated[str, AfterValidator(_check_label)]


def serial_url(port: str) -> str:
    """`/dev/ttyUSB0` or a pty path as is, `tcp://h:p` → `socket://h:p` (a TCP serial server); pyserial URLs as is."""
    if port.startswith("tcp://"):
        return "socket://" + port[len("tcp://") :]
    return port


def _check_port(v: str) -> str:
    v = v.strip()
    if v.startswith("/") or re.match(r"^(tcp|socket)://[A-Za-z0-9.\-_\[\]:]+:\d{1,5}$", v):
        return v
    raise ValueError("must be a serial device path (/dev/ttyUSB0) or tcp://HOST:PORT (a TCP serial server)")


def _check_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Asia/Tokyo") from None
    return v


class BusConfig(Section):
    """One RS-485 line: a serial port or a TCP serial server, carrying one request at a time."""

    name: Identifier
    port: Annotated[str, AfterValidator(_check_port)]
    baud: int = Field(default=9600, ge=1200, le=115200, description="bits per second, 8N1")
    timeout: float = Field(default=0.2, gt=0, le=5.0, description="seconds to wait for a board's reply")
    gap: float | None = Field(
        default=None,
        ge=0,
        le=1.0,
        description="quiet seconds on the line between two frames; default one character time (10 bits at baud)",
    )
    unlock_settle: float = Field(
        default=0.2, ge=0, le=5.0, description="seconds between an unlock pulse and the status poll that confirms it"
    )

    @property
    def quiet_s(self) -> float:
        """The gap between two frames: configured, or one character (the RS-485 driver's turnaround)."""
        return self.gap if self.gap is not None else 10 / self.baud


class BoardConfig(Section):
    """One locker board on a bus and which of its locks is which compartment."""

    name: Identifier
    bus: Identifier
    model: BoardModel
    address: int = Field(ge=0, le=255, description="the board number set on its DIP switches")
    polarity: LockPolarity = LockPolarity.SET_MEANS_LOCKED
    occupancy_polarity: OccupancyPolarity = OccupancyPolarity.SET_MEANS_OCCUPIED
    compartments: dict[Label, int] = Field(description='compartment label → lock number (1-based), e.g. {"A-03" = 3}')


class PickupConfig(Section):
    """The reserved-book pickup flow: the one-time codes and the deadlines."""

    site: str = Field(default="", max_length=100, description="the locker site's name in the patron's e-mail")
    code_length: int = Field(default=6, ge=4, le=12, description="digits of a one-time code")
    valid_days: float = Field(default=7.0, gt=0, le=60, description="days a code works")
    max_wrong: int = Field(default=5, ge=1, le=20, description="wrong codes before a compartment's entry locks")
    door_open_alert_s: float = Field(default=120.0, ge=5, le=86400, description="door open this long → alert")
    timezone: Annotated[str, AfterValidator(_check_zone)] = Field(
        default="Asia/Tokyo", description="the deadline in the e-mail is given in this time zone"
    )
    patron: PatronAddress = Field(
        default=PatronAddress.TOKEN,
        description="token (default) | clear: the patron's e-mail address in the pickup event, as a pz1: token or as is",
    )


class LockerConfig(AdapterConfig):
    """Locker boards on RS-485 buses; see README.md."""

    poll_interval: float = Field(
        default=0.5, ge=0, le=60, description="seconds from the start of one status cycle of a bus to the next"
    )
    offline_after: int = Field(default=3, ge=1, le=100, description="failed polls in a row before a board is offline")
    entity_id: str = Field(default=DEFAULT_ENTITY_ID, description="compartment entity ids; {gateway} {adapter} {label}")
    buses: tuple[BusConfig, ...] = ()
    boards: tuple[BoardConfig, ...] = ()
    pickup: PickupConfig = PickupConfig()

    @model_validator(mode="after")
    def _consistent(self) -> LockerConfig:
        problems: list[tuple[str, str]] = [
            (key, f"at least one [[adapters.{key}]] table is needed, got none")
            for key in ("buses", "boards")
            if not getattr(self, key)
        ]
        try:
            check_id_template(self.entity_id)
        except ValueError as exc:
            problems.append(("entity_id", f'{exc}, got "{self.entity_id}"'))
        else:
            unknown = [f for f in template_fields(self.entity_id) if f not in TEMPLATE_FIELDS]
            if unknown or "{label}" not in self.entity_id:
                problems.append(
                    ("entity_id", f'must contain {{label}} and only {{gateway}} {{adapter}}, got "{self.entity_id}"')
                )
        buses = {b.name for b in self.buses}
        if len(buses) != len(self.buses):
            problems.append(("buses", "names must be unique"))
        names: set[str] = set()
        labels: dict[str, str] = {}
        folded: dict[str, str] = {}  # upper-cased label → the label: the kiosk takes a-03 for A-03
        addresses: dict[tuple[str, int], str] = {}
        dialects: dict[str, tuple[str, Dialect]] = {}
        for i, b in enumerate(self.boards):
            where = f"boards[{i}]"
            if b.name in names:
                problems.append((f"{where}.name", f'must be unique, got "{b.name}"'))
            names.add(b.name)
            if b.bus not in buses:
                problems.append((f"{where}.bus", f'no such bus, got "{b.bus}"; buses: {", ".join(sorted(buses))}'))
            low, high = b.model.addresses
            if not low <= b.address <= high:
                problems.append((f"{where}.address", f"must be {low}..{high} for a {b.model.value}, got {b.address}"))
            other = addresses.get((b.bus, b.address))
            if other is not None:
                problems.append(
                    (f"{where}.address", f"{other} has the same address on bus {b.bus}, got {b.address}; set another")
                )
            addresses[(b.bus, b.address)] = b.name
            first = dialects.setdefault(b.bus, (b.name, b.model.dialect))
            if first[1] is not b.model.dialect:
                problems.append(
                    (
                        f"{where}.model",
                        f"board {first[0]} on bus {b.bus} speaks another protocol, got {b.model.value}; "
                        "put Kerong and XOR boards on separate buses",
                    )
                )
            if not b.compartments:
                problems.append((f"{where}.compartments", "must name at least one compartment, got none"))
            locks: dict[int, str] = {}
            for label, lock in b.compartments.items():
                key = f"{where}.compartments.{label}"
                if not 1 <= lock <= b.model.locks:
                    problems.append((key, f"lock must be 1..{b.model.locks} on a {b.model.value}, got {lock}"))
                if lock in locks:
                    problems.append((key, f'lock {lock} is compartment "{locks[lock]}" already, got {lock}'))
                locks[lock] = label
                if label in labels:
                    problems.append((key, f'label is used on board {labels[label]} already, got "{label}"'))
                elif label.upper() in folded:
                    twin = folded[label.upper()]
                    problems.append(
                        (
                            key,
                            f'differs only in case from compartment "{twin}" on board {labels[twin]}, got "{label}"; '
                            "the kiosk reads labels in either case, rename one",
                        )
                    )
                labels[label] = b.name
                folded.setdefault(label.upper(), label)
        if problems:
            raise ConfigProblems(problems)
        return self

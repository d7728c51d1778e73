"""The `[[adapters]] type = "scanner"` section: stations, NW-7 rules, HID/serial scanners and RFID pads; no I/O."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import model_validator

from adapters.scanner.aim import AimPolicy, FramingConfig, Suffix
from adapters.scanner.classify import CodabarRule, IdKind
from adapters.scanner.codabar import (
    CheckIn,
    CheckScheme,
    CodabarConfig,
    DsrZero,
    GuardsIn,
    Mod11Rule,
    Mod11Weights,
    Output,
)
from adapters.scanner.keymap import Layout, Terminator, WedgeConfig
from adapters.scanner.station import LendingMode, Purpose, StationConfig
from gateway.adapter_api import AdapterConfig
from gateway.configbase import Field, Identifier, Section
from gateway.processing.api import ProcessorConfig
from gateway.processing.attributes import RenameConfig
from gateway.processing.pseudonymize import PseudonymizeConfig
from gateway.secrets import SecretRef

__all__ = [
    "CARD_READINGS",
    "CardNumbers",
    "PadSection",
    "RuleSection",
    "ScannerAdapterConfig",
    "ScannerSection",
    "StationSection",
]


class CardNumbers(enum.Enum):
    """How library and children's card numbers leave the adapter."""

    TOKEN = "token"  # the processing stage's pseudonymize processor applied here (gateway key ring, kind card)
    STAGE = "stage"  # left to a [[processing]] pseudonymize entry the config has (e.g. to choose digest_bytes)
    CLEAR = "clear"  # the platform gets the numbers: only where a contract says so


# The (entity type, attribute) pairs that carry a card number, by the purpose of the station that emits
# them (station.py; tests/adapters/scanner/test_card_numbers_stage.py holds the two together).
CARD_READINGS: dict[Purpose, tuple[tuple[str, str], ...]] = {
    Purpose.LENDING: (("LibraryLoan", "patronCard"),),
    Purpose.ATTENDANCE: (("AttendanceEvent", "child"), ("ChildAttendance", "child")),
}


class StationSection(Section):
    id: str = Field(description="station id, part of every event's entity id (A-Z a-z 0-9 _ -)")
    purpose: Purpose
    lending_mode: LendingMode = LendingMode.COUNTER
    patron_session_s: int = Field(default=300, description="lending: a patron session closes after this idle time")
    debounce_s: int = Field(
        default=60, description="attendance: a second scan of one card within this is ignored; return: of one item"
    )

    def build(self) -> StationConfig:
        return StationConfig(
            station_id=self.id,
            purpose=self.purpose,
            lending_mode=self.lending_mode,
            patron_session_s=self.patron_session_s,
            debounce_s=self.debounce_s,
        )

    @model_validator(mode="after")
    def _valid(self) -> StationSection:
        self.build()  # ConfigError is a ValueError: pydantic reports it at this key path
        return self


class RuleSection(Section):
    """An NW-7 label kind: a regular expression on the scanned text picks it, the check scheme verifies it."""

    kind: IdKind
    pattern: str
    scheme: CheckScheme = CheckScheme.NONE
    guards_in: GuardsIn = GuardsIn.EITHER
    check_in: CheckIn = CheckIn.SENT
    keep_guards: Output = Output.STRIP
    keep_check: Output = Output.KEEP
    library_guards: str = ""
    dsr_zero: DsrZero = DsrZero.ZERO
    mod11_weights: Mod11Weights = Mod11Weights.W2_7
    mod11_rule: Mod11Rule = Mod11Rule.R01_ZERO

    def build(self) -> CodabarRule:
        return CodabarRule(
            kind=self.kind,
            pattern=self.pattern,
            codabar=CodabarConfig(
                scheme=self.scheme,
                guards_in=self.guards_in,
                check_in=self.check_in,
                keep_guards=self.keep_guards,
                keep_check=self.keep_check,
                library_guards=self.library_guards,
                dsr_zero=self.dsr_zero,
                mod11_weights=self.mod11_weights,
                mod11_rule=self.mod11_rule,
            ),
        )

    @model_validator(mode="after")
    def _valid(self) -> RuleSection:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern: not a regular expression, got {self.pattern!r} ({exc})") from None
        self.build()
        return self


class ScannerSection(Section):
    """A barcode/QR scanner: `evdev` (keyboard wedge; `path` may be a glob, hot-plug is followed) or `serial`."""

    name: Identifier
    station: str
    transport: Literal["evdev", "serial"]
    path: str = Field(description="evdev: /dev/input/by-id/*-event-kbd (glob); serial: device path or pyserial URL")
    layout: Layout = Layout.JP106
    terminator: Terminator = Terminator.ENTER
    idle_gap_ms: int = Field(default=0, ge=0, le=5000, description="end a scan after this silence (0: terminator only)")
    suffix: Suffix = Suffix.CR
    custom_suffix: str = ""
    aim: AimPolicy = AimPolicy.OPTIONAL
    baud: int = Field(default=9600, ge=1200, le=921600)
    beep_accepted: str = Field(
        default="", description="serial: hex bytes sent back after an accepted scan (vendor command)"
    )
    beep_refused: str = Field(
        default="", description="serial: hex bytes sent back after a refused scan (vendor command)"
    )

    def wedge(self) -> WedgeConfig:
        return WedgeConfig(layout=self.layout, terminator=self.terminator)

    def framing(self) -> FramingConfig:
        # a wedge scan arrives without its terminator (the key ended it): frame it with suffix "none"
        if self.transport == "evdev":
            return FramingConfig(suffix=Suffix.NONE, aim=self.aim)
        return FramingConfig(suffix=self.suffix, custom_suffix=self.custom_suffix, aim=self.aim)

    def beep(self, accepted: bool) -> bytes:
        return bytes.fromhex(self.beep_accepted if accepted else self.beep_refused)

    @model_validator(mode="after")
    def _valid(self) -> ScannerSection:
        self.framing()
        for key, value in (("beep_accepted", self.beep_accepted), ("beep_refused", self.beep_refused)):
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"{key}: must be hex bytes like '1b 42', got {value!r}") from None
            if value and self.transport != "serial":
                raise ValueError(f"{key}: only a serial scanner takes commands back, got transport {self.transport!r}")
        if self.transport == "serial" and self.suffix is Suffix.NONE:
            raise ValueError("suffix: a serial scanner needs one to split scans, got 'none'; set the scanner's suffix")
        return self


class PadSection(Section):
    """A FEIG ID ISC HF reader (standard host protocol) on a serial line."""

    name: Identifier
    station: str
    port: str
    baud: int = Field(default=38400, ge=9600, le=115200)
    com_adr: int = Field(default=255, ge=0, le=255)
    poll_ms: int = Field(default=200, ge=50, le=5000, description="inventory period")
    set_security: bool = Field(default=True, description="release tags on loan, secure them on return")


class ScannerAdapterConfig(AdapterConfig):
    type: Literal["scanner"] = "scanner"
    stations: tuple[StationSection, ...]
    rules: tuple[RuleSection, ...] = ()
    scanners: tuple[ScannerSection, ...] = ()
    pads: tuple[PadSection, ...] = ()
    visit_keys: dict[str, SecretRef] = Field(default_factory=dict, description="key id -> secret holding the hex key")
    rescan_s: float = Field(default=2.0, ge=0.2, le=60, description="how often unplugged devices are looked for")
    accept_isbn10: bool = False
    card_numbers: CardNumbers = Field(
        default=CardNumbers.TOKEN, description="token (default) | stage | clear: how card numbers leave the adapter"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScannerAdapterConfig:
        ids = [s.id for s in self.stations]
        if len(set(ids)) != len(ids):
            raise ValueError(f"stations: ids must be unique, got {ids}")
        devices: list[ScannerSection | PadSection] = [*self.scanners, *self.pads]
        for i, dev in enumerate(devices):
            if dev.station not in ids:
                raise ValueError(f"device {dev.name!r} (#{i}): station not defined, got {dev.station!r}; one of {ids}")
        names = [d.name for d in devices]
        if len(set(names)) != len(names):
            raise ValueError(f"scanners/pads: names must be unique, got {names}")
        return self

    def check_with_processing(self, index: int, processing: Sequence[ProcessorConfig]) -> list[str]:
        """`card_numbers = "stage"`: every card a station of this adapter emits must meet a pseudonymize entry."""
        if self.card_numbers is not CardNumbers.STAGE:
            return []
        needed = dict.fromkeys(pair for s in self.stations for pair in CARD_READINGS.get(s.purpose, ()))
        gaps: dict[tuple[str, str], list[str]] = {}
        for etype, attribute in needed:
            why = _uncovered(self.name, etype, attribute, processing)
            if why is not None:
                gaps[(etype, attribute)] = why
        if not gaps:
            return []
        attributes = list(dict.fromkeys(a for _, a in gaps))
        covering = " and ".join(f"{a} ({', '.join(t for t, b in gaps if b == a)})" for a in attributes)
        got = ", ".join(dict.fromkeys(w for why in gaps.values() for w in why)) or "none"
        kinds = ", ".join(f'{a} = "card"' for a in attributes)
        return [
            f'adapters[{index}].card_numbers: "stage" needs a [[processing]] pseudonymize entry for adapter '
            f'"{self.name}" covering {covering}, got {got}; add one with match = {{ adapter = "{self.name}" }}, '
            f'attributes = {json.dumps(attributes)} and kinds = {{ {kinds} }}, or use card_numbers = "token"'
        ]


def _uncovered(adapter: str, etype: str, attribute: str, processing: Sequence[ProcessorConfig]) -> list[str] | None:
    """None when a pseudonymize entry surely replaces `attribute` in every `etype` reading of `adapter`;
    else why each entry that might have does not (conservative: an entry that may miss one reading is no cover)."""
    why: list[str] = []
    for k, entry in enumerate(processing):
        match = entry.match
        if match.adapter not in (None, adapter):
            continue
        same_type = match.entity_type in (None, etype)
        if isinstance(entry, RenameConfig) and same_type and match.attribute == attribute:
            # the card goes on under its new name, which no entry after this one is told is a card
            why.append(f"processing[{k}] (renames {attribute} before any entry pseudonymizes it)")
            return why
        if not isinstance(entry, PseudonymizeConfig):
            continue
        if not same_type:
            why.append(f"processing[{k}] (only match.entity_type {json.dumps(match.entity_type)})")
        elif match.entity_id is not None:
            why.append(f"processing[{k}] (match.entity_id may leave ids out)")
        elif match.attribute not in (None, attribute):
            why.append(f"processing[{k}] (only match.attribute {json.dumps(match.attribute)})")
        elif attribute not in entry.attributes:
            why.append(f"processing[{k}] (attributes lack {attribute})")
        else:
            return None
    return why

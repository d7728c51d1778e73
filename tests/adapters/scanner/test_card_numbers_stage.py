"""`card_numbers = "stage"` is accepted only with `[[processing]]` pseudonymize entries that surely cover every
card the adapter's stations emit (review finding: it was accepted with none, and cards left in clear)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner import config as scanner_config
from adapters.scanner.classify import IdKind, ScanClass, ScanKind
from adapters.scanner.config import CardNumbers, ScannerAdapterConfig
from adapters.scanner.station import CARD_ATTRIBUTES, Purpose, Station, StationConfig
from gateway.config import GatewayConfig, parse_config
from gateway.errors import ConfigError
from gateway.processing.api import ProcessorContext
from gateway.processing.registry import build_stage
from gateway.records import Reading

ROOT = Path(__file__).resolve().parents[3]
CASES = Path(__file__).parent / "cases"
CARD = "A73100001B"
T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
FIX = (
    'add one with match = { adapter = "desk1" }, attributes = ["patronCard", "child"] and '
    'kinds = { patronCard = "card", child = "card" }, or use card_numbers = "token"'
)
BOTH = 'needs a [[processing]] pseudonymize entry for adapter "desk1" covering patronCard (LibraryLoan) and child'
WHERE = 'adapters[1].card_numbers: "stage"'


def config(
    *processing: dict[str, Any], purposes: tuple[str, ...] = ("lending", "attendance"), **keys: Any
) -> GatewayConfig:
    """A gateway with a simulated adapter first (so the scanner is adapters[1]) and the scanner `desk1`."""
    scanner = {
        "name": "desk1",
        "type": "scanner",
        "card_numbers": "stage",
        "stations": [{"id": f"s{n}", "purpose": p} for n, p in enumerate(purposes)],
        **keys,
    }
    return parse_config(
        {
            "gateway": {"id": "gw1"},
            "adapters": [{"name": "gauge", "type": "simulated"}, scanner],
            "processing": list(processing),
            "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1026"}],
        }
    )


def checked(*processing: dict[str, Any], **kw: Any) -> tuple[GatewayConfig | None, list[str]]:
    try:
        return config(*processing, **kw), []
    except ConfigError as exc:
        return None, exc.errors


def errors(*processing: dict[str, Any], **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(*processing, **kw)
    return info.value.errors


def pz(*attributes: str, **match: str) -> dict[str, Any]:
    return {"type": "pseudonymize", "match": match, "attributes": list(attributes)}


def test_the_review_case_is_refused_by_check_config_naming_the_key_the_adapter_and_the_fix() -> None:
    case = CASES / "card_numbers_stage_without_entry"
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(case / "gateway.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == f"{case / 'gateway.toml'}: {(case / 'expected.txt').read_text()}"


def test_no_entry_is_refused_and_one_entry_for_the_adapter_with_both_attributes_is_enough() -> None:
    assert errors() == [f"{WHERE} {BOTH} (AttendanceEvent, ChildAttendance), got none; {FIX}"]
    for match in ({}, {"adapter": "desk1"}):
        desk = config(pz("patronCard", "child", **match)).adapters[1]
        assert isinstance(desk, ScannerAdapterConfig)
        assert desk.card_numbers is CardNumbers.STAGE


@pytest.mark.parametrize(
    ("entry", "got"),
    [
        (pz("patronCard", "child", adapter="gauge"), "none"),  # another adapter's entry
        (pz("patronCard", "child", entity_id="urn:ngsi-ld:.*"), "processing[0] (match.entity_id may leave ids out)"),
        (
            pz("patronCard", "child", entity_type="LibraryReturn"),
            'processing[0] (only match.entity_type "LibraryReturn")',
        ),
        (pz("patronCard", "child", attribute="item"), 'processing[0] (only match.attribute "item")'),
    ],
)
def test_an_entry_that_may_miss_some_readings_is_no_cover_and_the_error_says_why(
    entry: dict[str, Any], got: str
) -> None:
    assert errors(entry) == [f"{WHERE} {BOTH} (AttendanceEvent, ChildAttendance), got {got}; {FIX}"]


def test_only_what_is_left_uncovered_is_named() -> None:
    loans_only = pz("patronCard", "child", entity_type="LibraryLoan")
    assert errors(loans_only) == [
        f'{WHERE} needs a [[processing]] pseudonymize entry for adapter "desk1" covering child (AttendanceEvent, '
        'ChildAttendance), got processing[0] (only match.entity_type "LibraryLoan"); add one with '
        'match = { adapter = "desk1" }, attributes = ["child"] and kinds = { child = "card" }, or use '
        'card_numbers = "token"'
    ]
    assert errors(pz("patronCard")) == [
        f'{WHERE} needs a [[processing]] pseudonymize entry for adapter "desk1" covering child (AttendanceEvent, '
        'ChildAttendance), got processing[0] (attributes lack child); add one with match = { adapter = "desk1" }, '
        'attributes = ["child"] and kinds = { child = "card" }, or use card_numbers = "token"'
    ]
    # entries per entity type cover together
    config(loans_only, pz("child", entity_type="AttendanceEvent"), pz("child", entity_type="ChildAttendance"))


def test_the_stations_decide_which_cards_need_a_cover() -> None:
    lending = ("lending",)
    assert errors(purposes=lending) == [
        f'{WHERE} needs a [[processing]] pseudonymize entry for adapter "desk1" covering patronCard (LibraryLoan), '
        'got none; add one with match = { adapter = "desk1" }, attributes = ["patronCard"] and '
        'kinds = { patronCard = "card" }, or use card_numbers = "token"'
    ]
    config(pz("patronCard"), purposes=lending)  # a lending desk emits no child
    config(purposes=("return", "inventory", "visit"))  # nor do these emit any card


def test_a_rename_of_a_card_before_the_pseudonymize_entry_is_no_cover_after_it_is() -> None:
    rename = {"type": "rename", "match": {"attribute": "patronCard"}, "to": "card"}
    both = pz("patronCard", "child", "card")
    assert errors(rename, both, purposes=("lending",)) == [
        f'{WHERE} needs a [[processing]] pseudonymize entry for adapter "desk1" covering patronCard (LibraryLoan), '
        "got processing[0] (renames patronCard before any entry pseudonymizes it); add one with "
        'match = { adapter = "desk1" }, attributes = ["patronCard"] and kinds = { patronCard = "card" }, or use '
        'card_numbers = "token"'
    ]
    config(both, rename, purposes=("lending",))


def test_token_and_clear_need_no_entry_while_stage_does() -> None:
    for mode in ("token", "clear"):
        config(card_numbers=mode)
    assert len(errors(card_numbers="stage")) == 1


# --- the table the check relies on, against what the stations really emit --------------------------------

SCANS = (
    ScanClass(kind=ScanKind.PATRON, value=CARD, id_kind=IdKind.PATRON),
    ScanClass(kind=ScanKind.ITEM, value="C000000051C", id_kind=IdKind.ITEM),
    ScanClass(kind=ScanKind.ISBN, value="9784003101018"),
    ScanClass(kind=ScanKind.SHELF, value="D001D", id_kind=IdKind.SHELF),
    ScanClass(kind=ScanKind.VISIT, value="point1", key_id="K1"),
    ScanClass(kind=ScanKind.VISIT_REFUSED, code="bad_signature"),
    ScanClass(kind=ScanKind.PRICE_ROW),
    ScanClass(kind=ScanKind.GTIN, value="4901234567894"),
    ScanClass(kind=ScanKind.UNKNOWN, code="unknown"),
    ScanClass(kind=ScanKind.BAD_CHECK, id_kind=IdKind.PATRON, code="check_digit"),
)


def emitted(purpose: Purpose, scans: list[tuple[int, int]]) -> list[Reading]:
    """The readings one station of `purpose` emits for `scans` (index into SCANS, minutes after the last)."""
    station = Station(StationConfig(station_id="s0", purpose=purpose), adapter="desk1", device="d", local_key=b"k" * 32)
    out: list[Reading] = []
    at = T0
    for n, (scan, minutes) in enumerate(scans):
        at += timedelta(minutes=minutes)
        out.extend(station.scan(SCANS[scan], at, n + 1).readings)
    return out


def cards_in(readings: list[Reading]) -> set[tuple[str, str]]:
    return {(r.entity_type, a) for r in readings for a in CARD_ATTRIBUTES if a in r.attributes}


SCAN_SEQUENCES = st.lists(st.tuples(st.integers(0, len(SCANS) - 1), st.integers(0, 3 * 24 * 60)), max_size=12)


@settings(max_examples=300)
@given(purpose=st.sampled_from(Purpose), scans=SCAN_SEQUENCES)
def test_every_card_a_station_emits_is_in_the_table(purpose: Purpose, scans: list[tuple[int, int]]) -> None:
    assert cards_in(emitted(purpose, scans)) <= set(scanner_config.CARD_READINGS.get(purpose, ()))


@pytest.mark.parametrize("purpose", list(Purpose))
def test_the_table_names_no_card_a_station_never_emits(purpose: Purpose) -> None:
    every_pair = [(scan, minutes) for minutes in (0, 1, 24 * 60) for scan in range(len(SCANS)) for _ in (0, 1)]
    assert cards_in(emitted(purpose, every_pair)) == set(scanner_config.CARD_READINGS.get(purpose, ()))


# --- soundness: whatever the check accepts, no card reaches the buffer in clear ---------------------------

NAMES = ["patronCard", "child", "item"]  # what pseudonymize entries list; a rename may go to "card"
# few values, each key as often left out as set: the entries that narrow nothing are the ones that must cover
MATCH_VALUES = {
    "adapter": ["desk1", "gauge"],
    "entity_type": ["LibraryLoan", "ChildAttendance", "LibraryReturn"],
    "entity_id": [".*", "urn:ngsi-ld:LibraryLoan:.*"],
    "attribute": ["patronCard", "child"],
}


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    match = {}
    for key, values in MATCH_VALUES.items():
        value = draw(st.one_of(st.none(), st.sampled_from(values)))
        if value is not None:
            match[key] = value
    if "attribute" in match and draw(st.booleans()):
        to = draw(st.sampled_from(["card", *(n for n in CARD_ATTRIBUTES if n != match["attribute"])]))
        return {"type": "rename", "match": match, "to": to}
    attributes = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    return {"type": "pseudonymize", "match": match, "attributes": attributes}


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")  # the pseudonym key ring, one for every example


@settings(max_examples=600, deadline=None)
@given(
    purposes=st.lists(st.sampled_from(["lending", "attendance", "return"]), min_size=1, max_size=3),
    processing=st.lists(entries(), max_size=3),
)
def test_what_the_check_accepts_lets_no_card_out_in_clear(
    key_dir: Path, purposes: list[str], processing: list[dict[str, Any]]
) -> None:
    cfg, refused = checked(*processing, purposes=tuple(purposes))
    if cfg is None:
        assert all(e.startswith(WHERE) for e in refused), refused  # refused for the cards, nothing else
        return
    stage = build_stage(cfg.processing, ProcessorContext(gateway_id="gw1", data_dir=str(key_dir)))
    scans = [(0, 0), (1, 1), (0, 2), (0, 24 * 60)]  # a patron (or child) card, an item, the card again, next day
    for purpose in dict.fromkeys(purposes):
        readings = emitted(Purpose(purpose), scans)
        out = stage.process_many(readings, T0) if stage is not None else readings
        leaked = [(r.entity_type, n) for r in out for n, a in r.attributes.items() if a.value == CARD]
        assert not leaked, (purpose, processing)

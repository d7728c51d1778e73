"""Stations: what a classified scan means at a lending desk, a return box, a shelf, a nursery door or a visit point.

Theory of operation. A station has one purpose and turns each classified scan (or RFID tag read)
into zero or more event Readings plus the feedback for the device (accept / refuse beep). It is
pure: the scan's time and its station-wide scan number come in, readings go out, state is a small
`StationState` that `StationStore` persists. Event entity ids are
`urn:ngsi-ld:<type>:<station>:<scan number>` with the number reserved durably before the event is
emitted, so a replay of the buffer rewrites the same entity and two scans never share an id.

| purpose      | scan                    | result |
|--------------|-------------------------|--------|
| `lending`    | patron card             | opens the patron session (no event) |
|              | item / ISBN             | `LibraryLoan` for the open patron; none open → refused `no_patron`; a copy already lent in this session → `already_lent` (no event) |
|              | RFID item not for loan  | refused `not_for_loan` (type of usage acquisition / not for circulation) |
| `return`     | item / ISBN             | `LibraryReturn`; the same copy within `debounce_s` of its return → `already_returned` (no event) |
| `inventory`  | shelf label             | starts the shelf's session (count 0) |
|              | item / ISBN             | `InventoryScan` with `shelf` and the running `shelfCount`; the session ended (`SHELF_IDLE_S` without a scan, or the Tokyo day changed) → refused `no_shelf` |
| `attendance` | child's card            | `AttendanceEvent` checkIn (first that Tokyo day) / checkOut (next) + `ChildAttendance` state; within `debounce_s` of the last accepted scan: ignored |
| `visit`      | signed visit QR         | `WatchVisit` with the point and time |
| any          | bad check / unknown / refused QR / wrong kind | `ScanRejected` with the reason code (never the scanned text) |
| any          | RFID tag: discarded item, library equipment, unassigned type of usage | refused `discarded`, `not_an_item`, `unknown_usage` |
| any          | price row               | ignored, counted |
| any          | what the caller refuses (`refuse`) | `ScanRejected` with the caller's reason: `ambiguous_patron`, `not_storable` |

An RFID tag (`item_read`) is what its type of usage makes it (`adapters.rfid.danish.tag_role`): a
patron card is a patron card scan, never an item, whatever the purpose; a discarded item, library
equipment or a type of usage the standard does not assign is refused everywhere, an item not for
loan at a lending desk; a refusal never holds the tag's id.

Durations (the patron session, the debounces, a shelf's idle end) are measured on `mono`, a monotonic
clock the caller passes with each scan: the wall clock steps (NTP at boot, a Pi without RTC), and an
hour back would keep a patron's session open for the next visitor and swallow a child's check-out.
`at` (wall time) stamps the events and decides the Tokyo day. After a restart nothing monotonic is
known: a child's debounce and a restored shelf fall back to the wall clock, where a time that went
backwards never counts as "recent".

Card numbers appear only in the attributes `patronCard` and `child`, which the processing stage's
`pseudonymize` processor (kind `card`) replaces by tokens; entity ids never hold them (the child's
state entity is keyed by a station-local HMAC token).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone

from adapters.rfid.danish import TagRole, tag_role
from adapters.scanner.classify import IdKind, ScanClass, ScanKind
from gateway.errors import ConfigError
from gateway.records import Attribute, Lane, Reading, Source, TimeSource, iso_utc, make_attribute, make_reading

__all__ = [
    "CARD_ATTRIBUTES",
    "EVENT_TYPES",
    "Feedback",
    "LendingMode",
    "Purpose",
    "Station",
    "StationConfig",
    "StationState",
    "Step",
    "child_token",
    "present_today",
]

# An inventory shelf session ends after this long without a scan of it (the librarian went to lunch, or
# the session is from another day): the next item is refused `no_shelf` instead of joining a shelf it
# is not on, until the shelf label is scanned again.
SHELF_IDLE_S = 1800

TOKYO = timezone(timedelta(hours=9))
CARD_ATTRIBUTES = ("patronCard", "child")
EVENT_TYPES = (
    "LibraryLoan",
    "LibraryReturn",
    "InventoryScan",
    "AttendanceEvent",
    "ChildAttendance",
    "WatchVisit",
    "ScanRejected",
)
_STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class Purpose(enum.Enum):
    LENDING = "lending"
    RETURN = "return"
    INVENTORY = "inventory"
    ATTENDANCE = "attendance"
    VISIT = "visit"


class LendingMode(enum.Enum):
    COUNTER = "counter"
    OUTREACH = "outreach"  # 出張貸出: no network for days; the page shows the backlog


class Feedback(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True, kw_only=True)
class StationConfig:
    station_id: str
    purpose: Purpose
    lending_mode: LendingMode = LendingMode.COUNTER
    patron_session_s: int = 300  # a patron session closes after this long without a scan
    debounce_s: int = 60  # attendance: a second scan of the same card within this is ignored; return: of an item

    def __post_init__(self) -> None:
        errors: list[str] = []
        where = f"stations[{self.station_id}]"
        if not _STATION_ID.fullmatch(self.station_id):
            errors.append(
                f"stations.id: must be 1-32 of A-Z a-z 0-9 _ - starting with a letter or digit, got {self.station_id!r}"
            )
        if not 10 <= self.patron_session_s <= 3600:
            errors.append(f"{where}.patron_session_s: must be 10..3600, got {self.patron_session_s}")
        if not 0 <= self.debounce_s <= 3600:
            errors.append(f"{where}.debounce_s: must be 0..3600, got {self.debounce_s}")
        if errors:
            raise ConfigError(errors)


@dataclass(frozen=True, slots=True)
class ChildState:
    day: str  # Tokyo date, ISO
    present: bool
    last_us: int  # last accepted scan, epoch µs
    checked_in_us: int
    checked_out_us: int | None = None


@dataclass(slots=True)
class StationState:
    """What a station remembers between scans; `StationStore` persists it (never a card number)."""

    patron: str | None = None  # the open session's card: memory only, lost on restart by design
    patron_last_mono: float = 0.0  # monotonic s of the session's last scan
    shelf: str | None = None
    shelf_count: int = 0
    shelf_last_us: int = 0  # wall µs of the shelf's last scan: its Tokyo day, and its age after a restart
    shelf_last_mono: float | None = None  # monotonic s of the same; None after a restart
    children: dict[str, ChildState] = field(default_factory=dict)  # child token -> state
    # Memory only, as the patron session: a double scan or a book put back on the pad is one loan or return.
    # Keyed by copy: an RFID tag's UID, else the library item id (an ISBN names a title: not kept).
    lent: set[str] = field(default_factory=set)  # copies lent in the open patron session
    returned: dict[str, float] = field(default_factory=dict)  # copy -> its return, monotonic s, for debounce_s
    child_mono: dict[str, float] = field(default_factory=dict)  # child token -> last accepted scan, monotonic s

    def snapshot(self) -> StationState:
        """A copy to put back: the containers copied, their values shared (a ChildState is replaced, never changed)."""
        return replace(
            self,
            children=dict(self.children),
            lent=set(self.lent),
            returned=dict(self.returned),
            child_mono=dict(self.child_mono),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    readings: tuple[Reading, ...]
    feedback: Feedback
    reason: str = ""  # a stable code for the page and counters: loan, no_patron, bad_check, debounced …


def present_today(state: StationState, at: datetime) -> int:
    """Children checked in and not yet out on `at`'s Tokyo day (the attendance station's head count)."""
    day = at.astimezone(TOKYO).date().isoformat()
    return sum(1 for c in state.children.values() if c.day == day and c.present)


def child_token(key: bytes, card: str) -> str:
    """A station-local pseudonym for a child's state entity id (the card itself never becomes an id)."""
    digest = hmac.new(key, card.encode(), hashlib.sha256).digest()[:10]
    return base64.b32encode(digest).decode().lower()


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


class Station:
    """One station's rules; `scan` is pure apart from `state`, which it updates. The caller puts `state` back
    when the step's events do not reach the buffer (ScannerAdapter.process): what they would have changed (a
    check-in, a shelf's count, a copy lent) is owed, and the next scan does it again."""

    def __init__(self, config: StationConfig, *, adapter: str, device: str, local_key: bytes) -> None:
        self.config = config
        self.state = StationState()
        self._source = Source(adapter=adapter, device=device)
        self._key = local_key

    def scan(
        self, cls: ScanClass, at: datetime, scan_no: int, *, copy: str | None = None, mono: float | None = None
    ) -> Step:
        """`copy` names the physical copy an item scan is of, when the device knows it (an RFID tag's UID:
        the parts of a set share their item id); else the library item id does. `mono`: the monotonic clock
        at the scan, in seconds (None: `at`'s, for callers whose clock does not step)."""
        m = at.timestamp() if mono is None else mono
        purpose = self.config.purpose
        kind = cls.kind
        if kind is ScanKind.PRICE_ROW:
            return Step(readings=(), feedback=Feedback.IGNORED, reason="price_row")
        if kind is ScanKind.BAD_CHECK:
            return self._reject(at, scan_no, "bad_check", cls)
        if kind in (ScanKind.UNKNOWN, ScanKind.GTIN):
            return self._reject(at, scan_no, "unknown", cls)
        if kind is ScanKind.VISIT_REFUSED:
            return self._reject(at, scan_no, "visit_refused", cls)
        if purpose is Purpose.VISIT:
            if kind is ScanKind.VISIT:
                assert cls.value is not None
                attrs = {"visitPoint": make_attribute(cls.value, "Text"), "keyId": make_attribute(cls.key_id, "Text")}
                return self._accept("WatchVisit", at, scan_no, attrs, "visit")
            return self._reject(at, scan_no, "wrong_kind", cls)
        if kind is ScanKind.VISIT:
            return self._reject(at, scan_no, "wrong_kind", cls)
        assert cls.value is not None
        item = (copy or f"item:{cls.value}") if kind is ScanKind.ITEM else None
        if purpose is Purpose.LENDING:
            return self._lending(cls, cls.value, at, m, scan_no, item)
        if purpose is Purpose.RETURN:
            if kind is ScanKind.PATRON:
                return self._reject(at, scan_no, "wrong_kind", cls)
            return self._return(cls, cls.value, at, m, scan_no, item)
        if purpose is Purpose.INVENTORY:
            return self._inventory(cls, cls.value, at, m, scan_no)
        return self._attendance(cls, cls.value, at, m, scan_no)

    def refuse(self, cls: ScanClass, at: datetime, scan_no: int, reason: str) -> Step:
        """A scan the caller refuses for what the station cannot see (two patron cards in one pad read, events
        the gateway would not store): its `ScanRejected`, the state untouched."""
        return self._reject(at, scan_no, reason, cls)

    def end_stale_shelf(self, at: datetime) -> None:
        """Forget a shelf session restored from the store that has ended (idle, or another Tokyo day)."""
        if self.state.shelf is not None and not self._shelf_open(at, None):
            self.state.shelf = None
            self.state.shelf_count = 0

    def item_read(
        self,
        item: str,
        at: datetime,
        scan_no: int,
        extra: dict[str, Attribute],
        *,
        usage: int | None = None,
        mono: float | None = None,
    ) -> Step:
        """An RFID tag's primary item id (already decoded) at this station, `usage` its type of usage: an item is
        treated like an item barcode, a patron card like a patron card barcode (`extra`, the tag's own data,
        left out: its UID would follow the patron), anything else refused."""
        role = tag_role(usage)
        if role is TagRole.PATRON_CARD:
            return self.scan(ScanClass(kind=ScanKind.PATRON, value=item, id_kind=IdKind.PATRON), at, scan_no, mono=mono)
        refused = _REFUSED.get(role)
        if refused is None and role is TagRole.NOT_FOR_LOAN and self.config.purpose is Purpose.LENDING:
            refused = "not_for_loan"
        if refused is not None:
            item_like = role in (TagRole.NOT_FOR_LOAN, TagRole.DISCARDED)
            cls = ScanClass(
                kind=ScanKind.ITEM if item_like else ScanKind.UNKNOWN,
                id_kind=IdKind.ITEM if item_like else None,
                code=f"rfid_usage_{usage}",
            )
            return self._reject(at, scan_no, refused, cls)
        cls = ScanClass(kind=ScanKind.ITEM, value=item, id_kind=IdKind.ITEM)
        tag = extra.get("tagUid")
        step = self.scan(cls, at, scan_no, copy=None if tag is None else f"tag:{tag.value}", mono=mono)
        if not extra or not step.readings or step.feedback is not Feedback.ACCEPTED:
            return step
        first = step.readings[0]
        attrs = dict(first.attributes) | extra
        r = make_reading(
            first.entity_id, first.entity_type, attrs, first.observed_at, first.time_source, first.source, first.lane
        )
        return replace(step, readings=(r, *step.readings[1:]))

    # --- purposes ------------------------------------------------------------------------------

    def _lending(self, cls: ScanClass, value: str, at: datetime, m: float, scan_no: int, copy: str | None) -> Step:
        st = self.state
        if st.patron is not None and m - st.patron_last_mono > self.config.patron_session_s:
            st.patron = None
            st.lent.clear()
        if cls.kind is ScanKind.PATRON:
            if value != st.patron:
                st.lent.clear()
            st.patron = value
            st.patron_last_mono = m
            return Step(readings=(), feedback=Feedback.ACCEPTED, reason="patron")
        if cls.kind is ScanKind.SHELF:
            return self._reject(at, scan_no, "wrong_kind", cls)
        if st.patron is None:
            return self._reject(at, scan_no, "no_patron", cls)
        st.patron_last_mono = m
        if copy is not None:
            if copy in st.lent:  # the accepted beep again: the book is lent, once
                return Step(readings=(), feedback=Feedback.ACCEPTED, reason="already_lent")
            st.lent.add(copy)
        attrs = self._item(cls, value) | {
            "patronCard": make_attribute(st.patron, "Text"),
            "mode": make_attribute(self.config.lending_mode.value, "Text"),
        }
        return self._accept("LibraryLoan", at, scan_no, attrs, "loan")

    def _return(self, cls: ScanClass, value: str, at: datetime, m: float, scan_no: int, copy: str | None) -> Step:
        window = self.config.debounce_s
        returned = self.state.returned
        for old in [c for c, t in returned.items() if m - t > window]:
            del returned[old]
        if copy is not None:
            if copy in returned:
                return Step(readings=(), feedback=Feedback.ACCEPTED, reason="already_returned")
            returned[copy] = m
        return self._accept("LibraryReturn", at, scan_no, self._item(cls, value), "return")

    def _shelf_open(self, at: datetime, m: float | None) -> bool:
        st = self.state
        if _tokyo_day(at) != _tokyo_day(_dt(st.shelf_last_us)):
            return False
        if m is not None and st.shelf_last_mono is not None:
            return m - st.shelf_last_mono <= SHELF_IDLE_S
        # restored after a restart: only the wall clock is known, and a time that went back is no proof of recent
        return 0 <= _us(at) - st.shelf_last_us <= SHELF_IDLE_S * 1_000_000

    def _inventory(self, cls: ScanClass, value: str, at: datetime, m: float, scan_no: int) -> Step:
        st = self.state
        if cls.kind is ScanKind.SHELF:
            st.shelf = value
            st.shelf_count = 0
            st.shelf_last_us, st.shelf_last_mono = _us(at), m
            return Step(readings=(), feedback=Feedback.ACCEPTED, reason="shelf")
        if cls.kind is ScanKind.PATRON:
            return self._reject(at, scan_no, "wrong_kind", cls)
        if st.shelf is not None and not self._shelf_open(at, m):
            st.shelf = None
            st.shelf_count = 0
        if st.shelf is None:
            return self._reject(at, scan_no, "no_shelf", cls)
        st.shelf_last_us, st.shelf_last_mono = _us(at), m
        st.shelf_count += 1
        attrs = self._item(cls, value) | {
            "shelf": make_attribute(st.shelf, "Text"),
            "shelfCount": make_attribute(st.shelf_count, "Number"),
        }
        return self._accept("InventoryScan", at, scan_no, attrs, "inventory")

    def _attendance(self, cls: ScanClass, value: str, at: datetime, m: float, scan_no: int) -> Step:
        if cls.kind is not ScanKind.PATRON:
            return self._reject(at, scan_no, "wrong_kind", cls)
        token = child_token(self._key, value)
        now = _us(at)
        day = at.astimezone(TOKYO).date().isoformat()
        prev = self.state.children.get(token)
        if prev is not None and prev.day == day:
            last_m = self.state.child_mono.get(token)
            if last_m is not None:
                recent = m - last_m < self.config.debounce_s
            else:  # restored after a restart: the wall clock, where a time that went back is no repeat
                recent = 0 <= now - prev.last_us < self.config.debounce_s * 1_000_000
            if recent:
                return Step(readings=(), feedback=Feedback.IGNORED, reason="debounced")
            if not prev.present:
                return self._reject(at, scan_no, "already_left", cls)
            state = replace(prev, present=False, last_us=now, checked_out_us=now)
            self.state.children[token] = state
            action = "checkOut"
        else:
            state = ChildState(day=day, present=True, last_us=now, checked_in_us=now)
            self.state.children[token] = state
            action = "checkIn"
        self.state.child_mono[token] = m
        event = self._reading(
            "AttendanceEvent",
            at,
            scan_no,
            {
                "child": make_attribute(value, "Text"),
                "action": make_attribute(action, "Text"),
                "day": make_attribute(day, "Text"),
            },
        )
        status: dict[str, Attribute] = {
            "child": make_attribute(value, "Text"),
            "station": make_attribute(self.config.station_id, "Text"),
            "state": make_attribute("present" if state.present else "left", "Text"),
            "day": make_attribute(day, "Text"),
            "checkedInAt": make_attribute(iso_utc(_dt(state.checked_in_us)), "DateTime"),
            "lastEvent": make_attribute(event.entity_id, "Text"),
        }
        if state.checked_out_us is not None:
            status["checkedOutAt"] = make_attribute(iso_utc(_dt(state.checked_out_us)), "DateTime")
        state_reading = make_reading(
            f"urn:ngsi-ld:ChildAttendance:{self.config.station_id}:{token}",
            "ChildAttendance",
            status,
            at,
            TimeSource.GATEWAY,
            self._source,
            Lane.NORMAL,
        )
        return Step(readings=(event, state_reading), feedback=Feedback.ACCEPTED, reason=action)

    # --- building readings ---------------------------------------------------------------------

    def _item(self, cls: ScanClass, value: str) -> dict[str, Attribute]:
        id_type = "isbn13" if cls.kind is ScanKind.ISBN else "library"
        return {"item": make_attribute(value, "Text"), "itemIdType": make_attribute(id_type, "Text")}

    def _reading(self, etype: str, at: datetime, scan_no: int, attrs: dict[str, Attribute]) -> Reading:
        attrs["station"] = make_attribute(self.config.station_id, "Text")
        attrs["scanNumber"] = make_attribute(scan_no, "Number")
        eid = f"urn:ngsi-ld:{etype}:{self.config.station_id}:{scan_no}"
        return make_reading(eid, etype, attrs, at, TimeSource.GATEWAY, self._source, Lane.NORMAL)

    def _accept(self, etype: str, at: datetime, scan_no: int, attrs: dict[str, Attribute], reason: str) -> Step:
        return Step(readings=(self._reading(etype, at, scan_no, attrs),), feedback=Feedback.ACCEPTED, reason=reason)

    def _reject(self, at: datetime, scan_no: int, reason: str, cls: ScanClass) -> Step:
        attrs: dict[str, Attribute] = {
            "reason": make_attribute(reason, "Text"),
            "scanKind": make_attribute(cls.kind.value, "Text"),
        }
        if cls.code:
            attrs["code"] = make_attribute(cls.code, "Text")
        if cls.id_kind is not None:
            attrs["idKind"] = make_attribute(cls.id_kind.value, "Text")
        return Step(
            readings=(self._reading("ScanRejected", at, scan_no, attrs),), feedback=Feedback.REFUSED, reason=reason
        )


# Refused at every station: not to circulate (a discarded book's security is left checked out, so
# the gate stays quiet for a book the library gave away), or not known to be an item at all.
_REFUSED = {TagRole.DISCARDED: "discarded", TagRole.NOT_AN_ITEM: "not_an_item", TagRole.RESERVED: "unknown_usage"}


def _tokyo_day(at: datetime) -> str:
    return at.astimezone(TOKYO).date().isoformat()


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)

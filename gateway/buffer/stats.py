"""What the outbox reports about itself: BufferStats, UplinkCursorStats, KeptUplink, Salvage and DeadLetter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.records import Reading, iso_utc

# Lanes are keyed by name ("alert", "normal", "bulk") so the UI, metrics and JSON need no enum.


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkCursorStats:
    cursors: Mapping[str, int]  # lane -> seq of the last row this uplink has passed
    pending: Mapping[str, int]  # lane -> rows past the cursor that this uplink still has to read
    dead_letters: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptUplink:
    """An uplink no longer configured whose cursors and backlog are kept ([buffer] removed_uplink_keep_days)."""

    removed_at: datetime  # when a start first found it missing from the configuration
    kept_until: datetime  # configured again before then, it delivers its backlog; after, that is dropped
    cursors: Mapping[str, int]
    pending: Mapping[str, int]  # lane -> rows it has not delivered, kept for it
    alone: int  # of those, rows every configured uplink has delivered: in the buffer for it alone

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed_at": iso_utc(self.removed_at),
            "kept_until": iso_utc(self.kept_until),
            "cursors": dict(self.cursors),
            "pending": dict(self.pending),
            "alone": self.alone,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Salvage:
    """What was copied out of a damaged buffer file into the fresh one that replaced it."""

    at: datetime
    moved_to: str  # the damaged file, kept for analysis
    detail: str  # what was wrong with it
    saved_rows: int
    lost_rows: int | None  # None: nothing could be counted (the file was not a database at all)
    lost_exact: bool  # counted from the lane index; otherwise estimated from the unreadable seq ranges
    saved_dead_letters: int
    lost_dead_letters: int | None
    cursors_kept: bool  # False: some uplinks' cursors were unreadable and they get every saved row again

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": iso_utc(self.at),
            "moved_to": self.moved_to,
            "detail": self.detail,
            "saved_rows": self.saved_rows,
            "lost_rows": self.lost_rows,
            "lost_exact": self.lost_exact,
            "saved_dead_letters": self.saved_dead_letters,
            "lost_dead_letters": self.lost_dead_letters,
            "cursors_kept": self.cursors_kept,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferStats:
    path: str
    durability: str
    rows: int
    bytes: int
    rows_per_lane: Mapping[str, int]
    bytes_per_lane: Mapping[str, int]
    oldest_observed_age_s: float | None  # of the oldest buffered row (by seq); None when empty
    oldest_appended_age_s: float | None
    uplinks: Mapping[str, UplinkCursorStats]
    dropped: Mapping[str, Mapping[str, int]]  # lane -> reason (max_rows/max_bytes/max_age) -> rows
    dead_letters: Mapping[str, int]  # uplink -> rows, including uplinks no longer configured
    appended_total: int
    refused_total: int  # appends refused with BufferFull (caps or disk) since the gateway started
    commits_total: int
    last_commit_ms: float | None  # duration of the last group commit, None outside the gateway
    recovered_from: str | None  # where the last damaged database file was moved (also salvage.moved_to)
    salvage: Salvage | None  # the last time a damaged file was replaced, None if never
    disk_free_bytes: int | None  # in the data directory, None if unknown
    disk_full: bool | None  # new readings refused for want of disk space, no clear room since; None: not the gateway
    reserve_bytes: int  # held by the reserve file now (0: released, or none configured)
    kept_uplinks: Mapping[str, KeptUplink] = field(default_factory=dict)  # removed, their backlog kept

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "durability": self.durability,
            "rows": self.rows,
            "bytes": self.bytes,
            "rows_per_lane": dict(self.rows_per_lane),
            "bytes_per_lane": dict(self.bytes_per_lane),
            "oldest_observed_age_s": self.oldest_observed_age_s,
            "oldest_appended_age_s": self.oldest_appended_age_s,
            "uplinks": {
                name: {"cursors": dict(u.cursors), "pending": dict(u.pending), "dead_letters": u.dead_letters}
                for name, u in self.uplinks.items()
            },
            "dropped": {lane: dict(reasons) for lane, reasons in self.dropped.items()},
            "dead_letters": dict(self.dead_letters),
            "appended_total": self.appended_total,
            "refused_total": self.refused_total,
            "commits_total": self.commits_total,
            "last_commit_ms": self.last_commit_ms,
            "recovered_from": self.recovered_from,
            "salvage": None if self.salvage is None else self.salvage.to_dict(),
            "disk_free_bytes": self.disk_free_bytes,
            "disk_full": self.disk_full,
            "reserve_bytes": self.reserve_bytes,
            "kept_uplinks": {name: k.to_dict() for name, k in self.kept_uplinks.items()},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A reading an uplink's far side rejected as invalid; kept until a technician re-queues it."""

    id: int
    uplink: str
    seq: int
    lane: str
    entity_id: str
    reason: str
    created_at: datetime
    reading: Reading

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uplink": self.uplink,
            "seq": self.seq,
            "lane": self.lane,
            "entity_id": self.entity_id,
            "reason": self.reason,
            "created_at": iso_utc(self.created_at),
        }

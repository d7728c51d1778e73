"""The `[buffer]` section: durability, group commit, caps, the disk-space reserve and removed uplinks' backlog."""

from __future__ import annotations

import enum

from pydantic import field_validator

from gateway.configbase import Field, Section

MIN_RESERVE_BYTES = 64 * 1024  # the -shm file alone takes 32 KiB before a full disk lets the buffer read


class Durability(enum.Enum):
    FULL = "full"  # every group commit is fsynced: an acknowledged reading survives a power cut
    NORMAL = "normal"  # WAL without fsync per commit: survives a process crash, not a power cut


class AlertDropPolicy(enum.Enum):
    NEVER = "never"  # caps drop bulk then normal; alerts are kept, the buffer refuses new data instead
    OLDEST = "oldest"  # when nothing else is left to drop, the oldest alerts go too


class BufferConfig(Section):
    durability: Durability = Durability.FULL
    commit_interval_ms: float = Field(
        # 150 ms: ~0.45 KB written a reading at 500 readings/s (60 ms: ~0.63 KB, 20 ms: ~1.4 KB), and the
        # writer thread's CPU at 500/s ~40 % lower than with 60 ms (a commit's fixed cost, paid a third as
        # often). Delivery does not wait for the commit (see outbox.py); what waits is a device's
        # acknowledgement, up to this long while readings keep coming.
        default=150.0,
        ge=0,
        le=1000,
        description="longest wait to group a commit while readings keep coming",
    )
    commit_quiet_ms: float = Field(
        # 15 ms, whatever the interval: a lone reading (a scan, an alert, a gauge every minute) is
        # committed within ~15 ms, and a source whose broker lets only a few messages be in flight
        # (mosquitto's 20 to an MQTT 3.1.1 client) waits no longer for the PUBACKs that let it send more
        default=15.0,
        ge=0,
        le=1000,
        description="a group ends early once this long passes without a new reading (at most commit_interval_ms)",
    )
    commit_max_rows: int = Field(default=5000, ge=1, le=200_000)
    ack_write_interval_ms: float = Field(
        # 200 ms, not longer: rows are deleted at the settle too, and the sooner their pages are free
        # the sooner new rows reuse them within one checkpoint (at 5,000/s: 0.67 KB a reading with
        # 200 ms, 0.82 KB with 1 s; at 500/s no difference), and a crash repeats fewer readings
        default=200.0,
        ge=0,
        le=60_000,
        description="longest time delivered readings' cursor moves wait to be written with an append "
        "(0: each acknowledgement is its own commit); a crash re-delivers at most this long's readings",
    )
    max_rows: int = Field(default=5_000_000, ge=1000)
    max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    max_age_s: int = Field(default=30 * 86_400, ge=60)
    drop_alert: AlertDropPolicy = AlertDropPolicy.NEVER
    reserve_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        le=1024**3,
        description="disk space held in <data_dir>/buffer.db.reserve so that a full disk can still be delivered",
    )

    removed_uplink_keep_days: int = Field(
        # A week: an uplink taken out of the configuration by mistake, or by an apply that a rollback
        # undoes, is usually noticed within days; its backlog is acknowledged data. The caps and
        # max_age_s still hold meanwhile, so the disk is protected however long it is kept.
        default=7,
        ge=0,
        le=365,
        description="days the cursors and undelivered rows of an uplink no longer configured are kept, so that "
        "configuring it again delivers them (0: dropped at the next start)",
    )

    @field_validator("reserve_bytes")
    @classmethod
    def _reserve_is_useful(cls, v: int) -> int:
        if 0 < v < MIN_RESERVE_BYTES:
            raise ValueError(f"must be 0 (no reserve) or at least {MIN_RESERVE_BYTES} (64 KiB)")
        return v

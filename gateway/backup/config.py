"""The `[backup]` section: when (a window outside operating hours), how many generations, where copies go."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from gateway.configbase import Section

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
# Operating hours a municipality's procurement rules keep backups out of: 06:00-24:00 local time.
OPERATING_START = time(6, 0)


def parse_hhmm(text: str) -> int:
    """Minutes after local midnight of "HH:MM" ("24:00" is 1440, the end of the day)."""
    if not _HHMM.match(text):
        raise ValueError(f'must be "HH:MM" between 00:00 and 24:00, got {text!r}')
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class BackupConfig(Section):
    enabled: bool = Field(default=True, description="take the nightly backup (the timer or supervisor program runs it)")
    window_start: str = Field(default="02:00", description="earliest local time of the nightly backup")
    window_end: str = Field(default="05:00", description="latest local time it starts at")
    timezone: str = Field(default="Asia/Tokyo", description="the time zone of the window")
    allow_operating_hours: bool = Field(
        default=False, description="allow a window touching 06:00-24:00 (procurement rules usually forbid it)"
    )
    generations: int = Field(default=7, ge=1, le=366, description="backup files kept; the oldest goes first")
    directory: Path | None = Field(
        default=None, description="where the backup files are kept; default <data_dir>/backups"
    )
    copy_to: Path | None = Field(
        default=None,
        description="a mounted directory (NFS/SMB share of the municipality's file server) each backup is copied to and verified there",
    )
    include_secret_key: bool = Field(
        default=False,
        description="put the secret store's key in the backup (then the file alone decrypts the secrets: guard it)",
    )

    @field_validator("window_start", "window_end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        parse_hhmm(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'must be an IANA time zone such as "Asia/Tokyo", got {v!r}') from None
        return v

    @model_validator(mode="after")
    def _window(self) -> BackupConfig:
        start, end = parse_hhmm(self.window_start), parse_hhmm(self.window_end)
        if start >= end:
            raise ValueError(
                f"window_start must be before window_end on the same night, got {self.window_start}-{self.window_end}"
            )
        if end > OPERATING_START.hour * 60 and not self.allow_operating_hours:
            raise ValueError(
                f"the backup window touches operating hours 06:00-24:00, got {self.window_start}-{self.window_end}; "
                "keep it within 00:00-06:00, or set allow_operating_hours = true"
            )
        return self

    def backup_dir(self, data_dir: Path) -> Path:
        return self.directory if self.directory is not None else Path(data_dir) / "backups"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

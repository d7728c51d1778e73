"""`dateObserved`: the observation time the Smart Data Models' observation types carry, from `observed_at`.

`WaterObserved`, `WeatherObserved`, `AirQualityObserved`, `IndoorEnvironmentObserved` (every
`*Observed` type) and `DeviceMeasurement`, `ACMeasurement` (every `*Measurement` type) define
`dateObserved`, "date and time of this observation represented by an ISO8601 UTC format"; the
observed types require it. Orion knows nothing of it (the converters write `TimeInstant`), so the
adapters that build such readings add it with `date_observed(reading time)`, deciding once per
entity type with `has_date_observed` so that other entities pay nothing for it.
"""

from __future__ import annotations

from datetime import datetime

from gateway.records import Attribute, iso_utc, make_attribute

__all__ = ["DATE_OBSERVED", "date_observed", "has_date_observed"]

DATE_OBSERVED = "dateObserved"
# the Smart Data Models name their observation types so: WaterObserved, DeviceMeasurement, ...
_SUFFIXES = ("Observed", "Measurement")

# One-entry cache, as in gateway.records: a burst of readings shares its observation time, and an
# Attribute is immutable, so readings of one instant share one. Replaced by one assignment (no lock).
_last: tuple[datetime | None, Attribute] = (None, make_attribute("", "DateTime"))


def has_date_observed(entity_type: str) -> bool:
    """Whether readings of this entity type carry `dateObserved` (a Smart Data Models observation type)."""
    return entity_type.endswith(_SUFFIXES)


def date_observed(observed_at: datetime) -> Attribute:
    """`dateObserved` for a reading observed at `observed_at` (aware): a `DateTime` in UTC, milliseconds."""
    global _last
    last = _last
    if observed_at is last[0]:
        return last[1]
    attribute = make_attribute(iso_utc(observed_at), "DateTime")
    _last = (observed_at, attribute)
    return attribute

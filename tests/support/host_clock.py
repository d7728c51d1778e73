"""The host's clock as the Wi-Fi receivers' tests mean it, whatever machine runs them: GatewayClock reads the
uptime and /sys/class/rtc/rtc0 beside the kernel's NTP flag, and a CI box up for minutes or with an RTC would
otherwise judge the tests' clocks differently."""

from __future__ import annotations

from gateway.device_clock import HostClock


def unsynced() -> HostClock:
    """Not synchronised; a box without RTC, up for an hour."""
    return HostClock(synced=False, uptime_s=3600.0, rtc=False)

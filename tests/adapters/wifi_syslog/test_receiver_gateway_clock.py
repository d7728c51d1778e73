"""While the kernel says the gateway's clock is not synchronised (a box without RTC booted before NTP: 1970, its
image's build date), that clock cannot judge an AP's: a right device time more than a day ahead of it is kept,
not replaced by the wrong arrival time, so the day's sessions are not filed in a period the next expiry erases.
Not synchronised is not wrong, though (a good RTC on a network without NTP): such a clock can only be behind, so
an AP behind it, or behind the latest time the box knew, or years ahead, is the wrong one and is replaced."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.wifi_syslog.gateway_clock import WORDS
from adapters.wifi_syslog.receiver import MAX_AHEAD, MAX_BEHIND, SyslogReceiver
from gateway import device_clock
from gateway.device_clock import EARLIEST, MAX_LEAD, SYNC_TTL_S, GatewayClock, known_floor
from gateway.host import clock_synced
from gateway.wifilog import Query, WifiLogStore
from tests.support.host_clock import unsynced

TRUE_NOW = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)  # what the APs' clocks say
EPOCH = datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)  # the kernel clock of a box without RTC, before NTP
BUILD_DATE = datetime(2025, 6, 1, tzinfo=UTC)  # or its image's build date
LOGGER = "adapters.wifi_syslog.receiver"
MAC = "aa:bb:cc:dd:ee:01"


def line(stamp: datetime, mac: str = MAC, kind: str = "CONNECTED") -> bytes:
    return f"<30>1 {stamp.isoformat()} ap1 hostapd - - - wlan0: AP-STA-{kind} {mac}".encode()


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def send_udp(rx: SyslogReceiver, port: int, *datagrams: bytes) -> None:
    lines = rx.counters["lines"] + len(datagrams)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    for _ in range(500):
        if rx.counters["lines"] == lines:
            break
        await asyncio.sleep(0.01)
    await rx.flush()


class Kernel:
    """A clock-sync source the test sets, counting how often it is asked."""

    def __init__(self, synced: bool | None) -> None:
        self.synced = synced
        self.asked = 0

    def __call__(self) -> bool | None:
        self.asked += 1
        return self.synced


@pytest.mark.parametrize("gateway", [EPOCH, BUILD_DATE], ids=["1970", "build-date"])
async def test_an_unsynchronised_gateway_clock_files_the_day_at_the_aps_right_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, gateway: datetime
) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: gateway, clock_synced=unsynced)
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.clear()
    join, leave = TRUE_NOW - timedelta(minutes=30), TRUE_NOW
    await send_udp(rx, port, line(join), line(leave, kind="DISCONNECTED"))
    [session] = store.search(Query(mac=MAC))
    assert (session.start, session.stop) == (join, leave)
    assert store.expire(TRUE_NOW) == [] and len(store.search(Query(mac=MAC))) == 1  # once NTP set the clock
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (2, 0)
    days = (join - gateway).days
    assert logged(caplog) == [
        (
            "WARNING",
            f"wifi syslog: 127.0.0.1 dated an association event 2026-12-04T02:00:00+00:00, {days} days ahead of the "
            f"gateway's clock ({gateway.isoformat()}), which the kernel says is not synchronised (NTP): kept the AP's "
            "time, as the gateway's clock cannot judge it; check the gateway's time sync (timedatectl); counted in "
            "gateway_clock_unsynced, further ones at DEBUG until the gateway's clock is synchronised",
        ),
        (
            "DEBUG",
            f"wifi syslog: 127.0.0.1 dated an association event 2026-12-04T02:30:00+00:00, {days} days ahead of the "
            "unsynchronised gateway's clock: kept",
        ),
    ]
    await rx.close()
    store.close()


async def test_the_gateway_clock_synchronised_again_ends_the_spell_and_the_old_rule_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    kernel = Kernel(False)
    now = [BUILD_DATE]
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: now[0], clock_synced=kernel, sync_ttl_s=0)
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    await send_udp(rx, port, line(TRUE_NOW, "aa:bb:cc:dd:ee:01"), line(TRUE_NOW, "aa:bb:cc:dd:ee:02"))
    now[0] = TRUE_NOW  # NTP steps the clock; the kernel still says unsynchronised for a moment
    await send_udp(rx, port, line(TRUE_NOW, "aa:bb:cc:dd:ee:03"))
    kernel.synced = True
    await send_udp(rx, port, line(TRUE_NOW, "aa:bb:cc:dd:ee:04"), line(EPOCH, "aa:bb:cc:dd:ee:05"))
    starts = [store.search(Query(mac=f"aa:bb:cc:dd:ee:0{n}"))[0].start for n in range(1, 6)]
    assert starts == [TRUE_NOW] * 5  # the AP at 1970 is stored at its arrival: the gateway's clock is right now
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (2, 1)
    assert [level for level, _ in logged(caplog)] == ["WARNING", "INFO", "WARNING"]
    assert logged(caplog)[1] == (
        "INFO",
        "wifi syslog: the gateway's clock is synchronised again; device times more than a day off it are replaced "
        "by the arrival time again (2 kept while it was not synchronised)",
    )
    assert logged(caplog)[2][1].startswith("wifi syslog: 127.0.0.1 dated an association event 1970-01-01T00:00:42")
    await rx.close()
    store.close()


async def test_a_kernel_that_cannot_be_asked_keeps_the_gateway_clock_as_judge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    kernel = Kernel(False)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: BUILD_DATE, clock_synced=kernel, sync_ttl_s=0)
    caplog.set_level(logging.INFO, LOGGER)
    rx.line(line(TRUE_NOW, "aa:bb:cc:dd:ee:01"), "192.0.2.7")
    caplog.clear()
    kernel.synced = None  # adjtimex refused (a seccomp filter) and no timesyncd flag: unknown
    rx.line(line(TRUE_NOW, "aa:bb:cc:dd:ee:02"), "192.0.2.7")
    assert [event.time for event, _ in rx._pending] == [TRUE_NOW, BUILD_DATE]
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (1, 1)
    assert logged(caplog)[0] == (
        "INFO",
        "wifi syslog: the gateway's clock can no longer be asked whether it is synchronised (adjtimex); device times "
        "more than a day off it are replaced by the arrival time again (1 kept while it was not synchronised)",
    )
    store.close()


def test_a_source_that_raises_is_an_unknown_answer_and_the_line_is_kept(tmp_path: Path) -> None:
    def broken() -> bool | None:
        raise RuntimeError("no adjtimex here")

    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: BUILD_DATE, clock_synced=broken)
    rx.line(line(TRUE_NOW), "192.0.2.7")
    assert [event.time for event, _ in rx._pending] == [BUILD_DATE]
    assert rx.counters["device_time_ignored"] == 1
    store.close()


@pytest.mark.parametrize(
    "ap",
    [EPOCH, datetime(2022, 3, 1, tzinfo=UTC), TRUE_NOW - timedelta(days=3), TRUE_NOW + MAX_LEAD + timedelta(days=2)],
    ids=["1970", "firmware-date", "days-behind", "years-ahead"],
)
def test_an_ap_clock_behind_an_unsynchronised_gateway_or_years_ahead_is_replaced(tmp_path: Path, ap: datetime) -> None:
    """Today's review: a box with a good RTC and no NTP server is unsynchronised, and an AP whose clock went back
    to its firmware's date was believed, filing the session years back, in a period the next expiry erases."""
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: TRUE_NOW, clock_synced=unsynced)
    rx.line(line(ap), "192.0.2.7")
    assert [event.time for event, _ in rx._pending] == [TRUE_NOW]
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (0, 1)
    store.close()


def test_an_ap_behind_the_latest_time_the_box_knew_is_replaced_though_ahead_of_its_clock(tmp_path: Path) -> None:
    # the gateway at 1970, the box known to have run in December 2026: an AP at its 2022 firmware date is wrong too
    store = WifiLogStore(tmp_path)
    known = TRUE_NOW - timedelta(days=2)
    rx = SyslogReceiver(store, not_before=known, clock=lambda: EPOCH, clock_synced=unsynced)
    rx.line(line(datetime(2022, 3, 1, tzinfo=UTC)), "192.0.2.7")
    rx.line(line(TRUE_NOW, "aa:bb:cc:dd:ee:02"), "192.0.2.7")
    assert [event.time for event, _ in rx._pending] == [EPOCH, TRUE_NOW]
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (1, 1)
    store.close()


def test_the_latest_time_the_box_knew_is_its_files_date_or_timesyncds() -> None:
    assert known_floor() >= datetime.fromtimestamp(Path(device_clock.__file__).stat().st_mtime, UTC)
    assert known_floor() >= EARLIEST


def test_the_kernel_is_asked_only_for_times_out_of_bounds_and_at_most_every_few_seconds(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    kernel = Kernel(False)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: BUILD_DATE, clock_synced=kernel)
    for _ in range(1000):
        rx.line(line(BUILD_DATE), "192.0.2.7")
    assert kernel.asked == 0  # the common case costs nothing
    for _ in range(1000):
        rx.line(line(TRUE_NOW), "192.0.2.7")
    assert kernel.asked == 1 and rx.counters["gateway_clock_unsynced"] == 1000
    store.close()

    ticks = [0.0]
    cached = GatewayClock(logging.getLogger(LOGGER), kernel, words=WORDS, monotonic=lambda: ticks[0])
    assert [cached.synced() for _ in range(3)] == [False] * 3 and kernel.asked == 2
    kernel.synced = True
    ticks[0] = SYNC_TTL_S - 0.001
    assert cached.synced() is False
    ticks[0] = SYNC_TTL_S
    assert cached.synced() is True and kernel.asked == 3


async def test_by_default_the_kernel_of_this_machine_decides(tmp_path: Path) -> None:
    """The real adjtimex(2): on a machine whose kernel clock is unsynchronised (this one, in a container), the AP's
    right time is kept; where it is synchronised, or adjtimex is refused, the arrival time is stored."""
    answer = clock_synced()
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: EPOCH)
    _, port = await rx.start_udp("127.0.0.1", 0)
    await send_udp(rx, port, line(TRUE_NOW))
    [session] = store.search(Query(mac=MAC))
    assert session.start == (TRUE_NOW if answer is False else EPOCH)
    assert rx.counters["gateway_clock_unsynced"] == (answer is False)
    await rx.close()
    store.close()


NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "floor", [BUILD_DATE, NOW - timedelta(hours=1)], ids=["clock-ran-past-the-floor", "clock-near-the-floor"]
)
def test_the_stored_time_is_the_device_time_within_the_bounds_or_unjudged_else_the_arrival(
    tmp_path: Path, floor: datetime
) -> None:
    store = WifiLogStore(tmp_path)
    kernel = Kernel(None)
    rx = SyslogReceiver(store, not_before=floor, clock=lambda: NOW, clock_synced=kernel, sync_ttl_s=0)
    # a clock within a day of the latest time the box knew may have been set from it at boot: nothing says how far
    # behind it is; one that ran past it further is believed, and a device more than a day ahead of it is wrong
    lead = MAX_LEAD if floor + timedelta(days=1) > NOW else timedelta(days=1)

    @settings(max_examples=300)
    @example(NOW + MAX_AHEAD + timedelta(microseconds=1), False)
    @example(EARLIEST - timedelta(microseconds=1), False)
    @example(EARLIEST, False)
    @example(NOW + MAX_LEAD, False)
    @example(NOW + MAX_LEAD + timedelta(microseconds=1), False)
    @example(datetime(2022, 3, 1, tzinfo=UTC), False)
    @example(NOW - MAX_BEHIND - timedelta(microseconds=1), True)
    @given(
        st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
        st.sampled_from([True, False, None]),
    )
    def stored_at(device: datetime, synced: bool | None) -> None:
        kernel.synced = synced
        before = dict(rx.counters)
        rx.line(line(device), "192.0.2.7")
        [(event, _)] = rx._pending
        rx._pending.clear()
        within = NOW - MAX_BEHIND <= device <= NOW + MAX_AHEAD
        # the floor is before NOW: an unsynchronised clock is believed over an AP behind it
        kept = not within and synced is False and NOW < device <= NOW + lead
        assert event.time == (device if within or kept else NOW)
        assert rx.counters["gateway_clock_unsynced"] - before["gateway_clock_unsynced"] == kept
        assert rx.counters["device_time_ignored"] - before["device_time_ignored"] == (not within and not kept)

    stored_at()
    store.close()

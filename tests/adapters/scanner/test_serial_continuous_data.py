"""A serial device that streams lines (a scale, noise) is one fault said once, not one refused scan per line.

Regression (review 3, finding 6): a scale's `ST,GS,+0001.23kg` lines at 9,600-baud pace each became a
`ScanRejected` event with an entity id of its own (560 in 10 s, ~4.8 M a day), a station-store write and a
refused beep written back to the scale, and nothing was logged above DEBUG; random bytes made the
"unreadable" / "read again" spell flap. The device writes into a socat pty; the adapter's monotonic clock is
the test's, so a quiet period passes without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.config import ScannerAdapterConfig
from adapters.scanner.serial_scanner import (
    STREAM_LINES,
    STREAM_QUIET_S,
    STREAM_SUMMARY_S,
    STREAM_WINDOW_S,
    StreamVerdict,
    StreamWatch,
    line_shape,
)
from gateway.adapter_api import AdapterContext
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.scanner.test_adapter import RULES, Clock, item, patron, until
from tests.adapters.scanner.test_serial_scanner_refused_beep import read_back

SCALE = b"ST,GS,+0001.23kg\r"
REFUSED = b"\x15"
ACCEPTED = b"\x06"

# --- the watch, sans I/O -------------------------------------------------------------------------


def test_more_than_twenty_refused_lines_within_three_seconds_are_a_stream() -> None:
    watch = StreamWatch()
    seen = [watch.see(t * 0.1, refused=True) for t in range(STREAM_LINES)]
    assert seen == [StreamVerdict(handle=True)] * STREAM_LINES
    assert watch.see(STREAM_WINDOW_S, refused=True) == StreamVerdict(handle=False, started=True)
    assert watch.see(STREAM_WINDOW_S + 0.1, refused=True) == StreamVerdict(handle=False)
    assert watch.held == 2
    # a good scan ends it and is handed on
    assert watch.see(STREAM_WINDOW_S + 0.2, refused=False) == StreamVerdict(handle=True, ended=2)
    assert not watch.streaming
    # and the refused lines before it count for no new stream
    assert watch.see(STREAM_WINDOW_S + 0.3, refused=True) == StreamVerdict(handle=True)


def test_a_librarians_damaged_labels_however_many_are_handed_on() -> None:
    """Two refused scans a second at the most, a pile of damaged labels: each is a `ScanRejected` with its
    beep, as ever (a review found the first threshold, 10 in 10 s, silencing them from the eleventh)."""
    watch = StreamWatch()
    assert all(watch.see(t * 0.45, refused=True).handle for t in range(1000))
    assert not watch.streaming


def test_a_stream_ends_after_a_quiet_period_and_says_how_much_it_held() -> None:
    watch = StreamWatch()
    for t in range(STREAM_LINES + 5):
        watch.see(t * 0.01, refused=True)
    last = (STREAM_LINES + 4) * 0.01
    assert watch.see(last + STREAM_QUIET_S - 0.01, refused=True) == StreamVerdict(handle=False)
    after = last + STREAM_QUIET_S - 0.01 + STREAM_QUIET_S
    assert watch.see(after, refused=True) == StreamVerdict(handle=True, ended=6, quiet=True)


def test_a_long_stream_is_summed_up_every_fifteen_minutes() -> None:
    watch = StreamWatch()
    verdicts = [watch.see(i / 10, refused=True) for i in range(20_000)]  # ten lines a second for 33 min
    summaries = [(i, v.summary) for i, v in enumerate(verdicts) if v.summary is not None]
    start = STREAM_LINES
    assert verdicts[start].started
    assert summaries == [(start + 9000, 9000), (start + 18_000, 9000)]
    assert STREAM_SUMMARY_S == 900
    assert watch.held == 20_000 - STREAM_LINES


def test_a_lines_shape_keeps_no_letter_or_digit() -> None:
    assert line_shape("ST,GS,+0001.23kg") == "AA,AA,+9999.99AA"
    assert line_shape("A73100003B") == "A99999999A"
    assert line_shape("taro@example.jp\x01é") == "AAAA@AAAAAAA.AA??"
    assert line_shape("9" * 40) == "9" * 32 + "…"


# --- the adapter on a pty ------------------------------------------------------------------------


class Mono:
    """The adapter's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Line:
    adapter: ScannerAdapter
    out: list[Reading]
    mono: Mono
    fd: int
    key: str
    path: str


@pytest.fixture
async def line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Line]:
    caplog.set_level(logging.DEBUG, logger="adapters.scanner.adapter")
    pair = PtyPair(tmp_path)
    cfg = ScannerAdapterConfig.model_validate(
        {
            "name": "lib",
            "type": "scanner",
            "rescan_s": 0.2,
            "rules": RULES,
            "stations": [{"id": "desk", "purpose": "lending"}],
            "scanners": [
                {
                    "name": "ser",
                    "station": "desk",
                    "transport": "serial",
                    "path": pair.a,
                    "beep_accepted": "06",
                    "beep_refused": "15",
                }
            ],
        }
    )
    mono = Mono()
    context = AdapterContext(gateway_id="gw", data_dir=str(tmp_path))
    adapter = ScannerAdapter(cfg, context, clock=Clock(), monotonic=mono)
    out: list[Reading] = []

    async def emit(r: Reading) -> None:
        out.append(r)

    fd = os.open(pair.b, os.O_RDWR | os.O_NOCTTY)
    task = asyncio.create_task(adapter.run(emit))
    key = f"ser:{pair.a}"
    try:
        await until(lambda: adapter.connected.get(key) is True, "scanner open")
        yield Line(adapter=adapter, out=out, mono=mono, fd=fd, key=key, path=pair.a)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(fd)
        pair.close()


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_scale_is_one_warning_twenty_events_and_a_count(line: Line, caplog: pytest.LogCaptureFixture) -> None:
    lines = 300
    for _ in range(lines // 30):  # at a 9,600-baud scale's pace: 30 lines (510 bytes) every 0.53 s
        os.write(line.fd, SCALE * 30)
        await asyncio.sleep(0.53)
    counts = line.adapter.counts
    await until(lambda: counts["unknown"] + counts["continuous_data"] == lines, "every line seen")
    # the lines before the stream was known are refused as ever; the rest are counted only
    assert counts["unknown"] == STREAM_LINES
    assert [r.entity_type for r in line.out] == ["ScanRejected"] * STREAM_LINES
    assert line.adapter.diagnostics()["malformed"] == {"unknown": STREAM_LINES, "continuous_data": lines - STREAM_LINES}
    assert await read_back(line.fd, STREAM_LINES + 1) == REFUSED * STREAM_LINES  # no beep per line to a scale
    assert messages(caplog, logging.WARNING) == [
        f"serial scanner {line.key} (station desk): continuous data: is this a scanner? more than 20 refused "
        "lines within 3 s, 16-character lines like 'AA,AA,+9999.99AA' (A a letter, 9 a digit), refused as "
        "no_rule_matches; its lines are now counted, not sent or beeped, until it is quiet for 10 s or sends a "
        f"good scan; check what is plugged into {line.path}, its mode (a scanner in continuous mode) and the baud "
        "rate"
    ]
    assert line.adapter.last_error == (
        f"{line.key}: continuous data, not a scanner's (16-character lines like 'AA,AA,+9999.99AA' "
        "(A a letter, 9 a digit), refused as no_rule_matches)"
    )
    assert messages(caplog, logging.INFO) == []

    # quiet for 10 s, then a scanner's scans: the stream is over, and the scans are handed on as ever
    line.mono.t += STREAM_QUIET_S
    os.write(line.fd, f"{patron(1)}\r{item(5)}\r".encode())
    await until(lambda: len(line.out) == STREAM_LINES + 1, "the loan")
    assert line.out[-1].entity_type == "LibraryLoan"
    assert await read_back(line.fd, 2) == ACCEPTED * 2
    assert messages(caplog, logging.INFO)[-1] == (
        f"serial scanner {line.key}: the continuous data ended (quiet for 10 s): {lines - STREAM_LINES} lines "
        "counted, not sent"
    )


async def test_a_good_scan_ends_the_stream_at_once(line: Line, caplog: pytest.LogCaptureFixture) -> None:
    os.write(line.fd, SCALE * (STREAM_LINES + 10) + f"{patron(2)}\r".encode() + SCALE)
    await until(
        lambda: line.adapter.counts["patron"] == 1 and line.adapter.counts["unknown"] == STREAM_LINES + 1, "the card"
    )
    assert line.adapter.counts["continuous_data"] == 10
    assert f"serial scanner {line.key}: the continuous data ended (a good scan came): 10 lines counted, not sent" in (
        messages(caplog, logging.INFO)
    )


async def test_noise_is_said_once_and_does_not_flap(line: Line, caplog: pytest.LogCaptureFixture) -> None:
    """46 KB of random bytes (a wrong baud rate): its odd line that frames well no longer says "read again",
    nor its next failure "unreadable" once more."""
    noise = random.Random(6).randbytes(46 * 1024)
    for i in range(0, len(noise), 4096):
        os.write(line.fd, noise[i : i + 4096])
        await asyncio.sleep(0.05)
    os.write(line.fd, f"\r{patron(4)}\r".encode())  # the noise's tail ended, then a card: the stream ends
    counts = line.adapter.counts
    await until(lambda: counts["patron"] == 1, "the card after the noise")
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    held = counts["continuous_data"]
    assert held > 100
    assert warnings[0].startswith(f"serial scanner {line.key}: its scans are unreadable: scanner framing:")
    assert warnings[1].startswith(f"serial scanner {line.key} (station desk): continuous data: is this a scanner?")
    ended = f"serial scanner {line.key}: the continuous data ended (a good scan came): {held} lines counted, not sent"
    # within 10 s of the noise's last unreadable line the framing is not yet taken for mended
    assert messages(caplog, logging.INFO) == [ended]
    assert [r.entity_type for r in line.out] == ["ScanRejected"] * STREAM_LINES
    line.mono.t += STREAM_QUIET_S
    os.write(line.fd, f"{item(6)}\r".encode())
    await until(lambda: len(line.out) == STREAM_LINES + 1, "the loan")
    assert messages(caplog, logging.INFO)[-1] == f"serial scanner {line.key}: scans are read again"

"""A serial scanner ending its scans with another suffix than configured: a framing error per scan, never a pile-up."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.aim import AimPolicy, FramingConfig, Suffix
from adapters.scanner.serial_scanner import LineSplitter, SerialScan
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.scanner.test_adapter import make, patron, until

MAX_SCAN_CHARS = 4096  # longer than any scan, QR codes too
CARD = "A731000017B"  # a library card number: never in a message
ENDS = {Suffix.CR: "\r", Suffix.LF: "\n", Suffix.CRLF: "\r\n", Suffix.TAB: "\t"}


def framed(results: list[SerialScan]) -> list[str]:
    return [r.framed.data if r.framed is not None else f"<{r.error.code if r.error else ''}>" for r in results]


def errors(results: list[SerialScan]) -> list[str]:
    return [str(r.error) for r in results if r.error is not None]


@pytest.mark.parametrize(
    ("config", "sent", "message"),
    [
        (Suffix.CR, "\n", 'scanner framing: another end of line than the suffix cr, got LF after 11 characters; '
                          'set the scanner\'s suffix = "lf" (or "any_eol") to match what it sends'),
        (Suffix.LF, "\r", 'scanner framing: another end of line than the suffix lf, got CR after 11 characters; '
                          'set the scanner\'s suffix = "cr" (or "any_eol") to match what it sends'),
        (Suffix.CRLF, "\n", 'scanner framing: another end of line than the suffix crlf, got LF after 11 characters; '
                            'set the scanner\'s suffix = "lf" (or "any_eol") to match what it sends'),
        (Suffix.CR, "\t", 'scanner framing: another end of line than the suffix cr, got Tab after 11 characters; '
                          'set the scanner\'s suffix = "tab" to match what it sends'),
        (Suffix.ANY_EOL, "\t", 'scanner framing: another end of line than the suffix any_eol, got Tab after 11 '
                               'characters; set the scanner\'s suffix = "tab" to match what it sends'),
        (Suffix.TAB, "\r\n", 'scanner framing: another end of line than the suffix tab, got CRLF after 11 '
                             'characters; set the scanner\'s suffix = "crlf" (or "any_eol") to match what it sends'),
    ],
)  # fmt: skip
def test_each_scan_with_another_suffix_is_a_framing_error_naming_it(config: Suffix, sent: str, message: str) -> None:
    splitter = LineSplitter(FramingConfig(suffix=config))
    # a second apart, as a person scans; a CR at the end waits for an LF until the next read
    got = [r for t in range(3) for r in splitter.feed((CARD + sent).encode(), at=t)] + splitter.feed(b"", at=3)
    assert framed(got) == ["<framing_suffix>"] * 3
    assert errors(got) == [message] * 3
    assert got[0].error is not None and got[0].error.params["expected"] == config.value


def test_a_crlf_scanner_on_a_cr_setting_is_told_to_set_crlf() -> None:
    splitter = LineSplitter(FramingConfig(suffix=Suffix.CR))
    got = splitter.feed(f"{CARD}\r\n{CARD}\r\n".encode()) + splitter.feed(f"{CARD}\r".encode())
    # the first scan ends at its CR; each later one starts with the LF the scanner sent after it
    assert framed(got) == [CARD, "<framing_suffix>", "<framing_suffix>"]
    assert 'set the scanner\'s suffix = "crlf"' in errors(got)[0]


def test_a_crlf_split_after_its_cr_on_an_lf_setting_is_one_error() -> None:
    splitter = LineSplitter(FramingConfig(suffix=Suffix.LF))
    got = splitter.feed(f"{CARD}\r".encode(), at=0) + splitter.feed(b"\n", at=0.001)
    got += splitter.feed(f"{CARD}\r\n".encode(), at=1)
    assert framed(got) == ["<framing_suffix>", "<framing_suffix>"]


def test_a_crlf_setting_waits_for_the_lf_after_a_cr_but_not_for_good() -> None:
    splitter = LineSplitter(FramingConfig(suffix=Suffix.CRLF))
    assert splitter.feed(f"{CARD}\r".encode(), at=5.0) == []
    assert framed(splitter.feed(b"\n", at=5.001)) == [CARD]
    # a CR-only scanner: its scan is refused once its LF is clearly not coming, not at the next scan
    assert splitter.feed(f"{CARD}\r".encode(), at=6.0) == []
    assert splitter.feed(b"", at=6.2) == []
    assert errors(splitter.feed(b"", at=6.3)) == [
        "scanner framing: another end of line than the suffix crlf, got CR after 11 characters; "
        'set the scanner\'s suffix = "cr" (or "any_eol") to match what it sends'
    ]
    assert splitter.pending == 0


def test_no_suffix_within_the_longest_scan_is_an_error_and_the_buffer_is_emptied() -> None:
    splitter = LineSplitter(FramingConfig(suffix=Suffix.CR))
    got = splitter.feed(b"7" * MAX_SCAN_CHARS)
    assert got == []
    got = splitter.feed(b"77")
    assert errors(got) == [
        f"scanner framing: no suffix cr within {MAX_SCAN_CHARS} characters, got {MAX_SCAN_CHARS + 2}; "
        "check the scanner's suffix setting against suffix"
    ]
    assert framed(splitter.feed(f"{CARD}\r".encode())) == [CARD]


def test_the_splitter_holds_nothing_of_a_scan_it_refused() -> None:
    splitter = LineSplitter(FramingConfig(suffix=Suffix.CR))
    for _ in range(1000):
        splitter.feed(f"{CARD}\n".encode())
    # the next CR-terminated scan comes out whole, with nothing of the 1000 refused ones before it
    assert framed(splitter.feed(f"{CARD}\r".encode())) == [CARD]


SCAN = st.text(alphabet="0123456789ABCD+-:$./]", min_size=1, max_size=30)
CUTS = st.lists(st.integers(0, 400), max_size=6)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300)
@given(config=st.sampled_from(list(ENDS)), scans=st.lists(SCAN, min_size=1, max_size=5), cuts=CUTS)
def test_scans_with_the_configured_suffix_come_out_whole_in_any_chunking(
    config: Suffix, scans: list[str], cuts: list[int]
) -> None:
    splitter = LineSplitter(FramingConfig(suffix=config, aim=AimPolicy.ABSENT))
    data = "".join(s + ENDS[config] for s in scans).encode()
    got = [r for part in chunks(data, cuts) for r in splitter.feed(part, at=0)]
    assert framed(got) == scans


@settings(max_examples=300)
@given(
    config=st.sampled_from([*ENDS, Suffix.ANY_EOL]),
    sent=st.sampled_from(list(ENDS)),
    scans=st.lists(SCAN, min_size=1, max_size=5),
    cuts=CUTS,
)
def test_another_suffix_never_piles_up_never_passes_an_eol_and_never_shows_the_scan(
    config: Suffix, sent: Suffix, scans: list[str], cuts: list[int]
) -> None:
    splitter = LineSplitter(FramingConfig(suffix=config, aim=AimPolicy.ABSENT))
    data = "".join(s + ENDS[sent] for s in scans).encode()
    got = [r for part in chunks(data, cuts) for r in splitter.feed(part, at=0)] + splitter.feed(b"", at=1.0)
    if sent is config or (config is Suffix.ANY_EOL and sent is not Suffix.TAB):
        assert framed(got) == scans
        return
    assert all(r.framed is None or not set(r.framed.data) & set("\r\n\t") for r in got)
    assert len(got) >= len(scans) - 1  # one outcome a scan: the first of a CRLF scanner on cr is whole
    assert len(got) <= len(scans)
    assert splitter.pending <= 1  # at most the LF of a CRLF, waiting for the scan it starts
    for message in errors(got):
        assert all(len(s) < 3 or s not in message for s in scans)


async def test_an_lf_scanner_on_a_cr_setting_is_refused_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.scanner.adapter")
    pair = PtyPair(tmp_path)
    fd = os.open(pair.b, os.O_RDWR | os.O_NOCTTY)
    doc = {
        "stations": [{"id": "desk", "purpose": "lending"}],
        "scanners": [{"name": "ser", "station": "desk", "transport": "serial", "path": pair.a}],  # suffix cr
    }
    adapter, out, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: adapter.connected.get(f"ser:{pair.a}") is True, "serial scanner online")
        card = patron(3)
        for _ in range(3):
            os.write(fd, f"{card}\n".encode())
        await until(lambda: adapter.counts["unknown"] == 3, "three refused scans")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(fd)
        pair.close()
    assert [(r.entity_type, r.attributes["code"].value) for r in out] == [("ScanRejected", "framing_suffix")] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"serial scanner ser:{pair.a}: its scans are unreadable: scanner framing: another end of line than the "
        'suffix cr, got LF after 11 characters; set the scanner\'s suffix = "lf" (or "any_eol") to match what it '
        "sends"
    ]
    assert all(card not in r.getMessage() and card[1:9] not in r.getMessage() for r in caplog.records)

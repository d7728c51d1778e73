"""Serial scanners: the line splitter, and a scanner on a socat pty pair."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from adapters.scanner.aim import AimPolicy, FramingConfig, Suffix, Symbology
from adapters.scanner.serial_scanner import LineSplitter, SerialScanner
from tests.adapters.modbus.peers import PtyPair


def test_any_eol_split_across_reads() -> None:
    s = LineSplitter(FramingConfig(suffix=Suffix.ANY_EOL))
    got = s.feed(b"]F0A37859+B\r") + s.feed(b"\n9784344405042\r\n")
    assert [(g.framed.data if g.framed else None) for g in got] == ["A37859+B", "9784344405042"]
    assert got[0].framed is not None and got[0].framed.aim is not None
    assert got[0].framed.aim.symbology is Symbology.CODABAR


def test_custom_suffix_and_bad_bytes() -> None:
    s = LineSplitter(FramingConfig(suffix=Suffix.CUSTOM, custom_suffix="#", aim=AimPolicy.ABSENT))
    assert [g.framed.data for g in s.feed(b"A1B#C2D#") if g.framed] == ["A1B", "C2D"]
    bad = s.feed(b"\xff\xfe#")
    assert bad[0].error is not None and bad[0].error.code == "framing_encoding"


async def test_scans_from_a_pty(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    fd = os.open(pair.b, os.O_RDWR | os.O_NOCTTY)
    scanner = SerialScanner(pair.a, FramingConfig(suffix=Suffix.CR))
    try:
        os.write(fd, b"]F0A37859+B\r]E09784344405042")
        it = scanner.scans()
        first = await asyncio.wait_for(anext(it), 5)
        os.write(fd, b"\r")
        second = await asyncio.wait_for(anext(it), 5)
        await it.aclose()
    finally:
        scanner.close()
        os.close(fd)
        pair.close()
    assert first.framed is not None and first.framed.data == "A37859+B"
    assert second.framed is not None and second.framed.data == "9784344405042"

"""`edgegw scanner listen` on a recorded evdev stream (a FIFO) and on a serial pty."""

from __future__ import annotations

import argparse
import io
import os
import threading
from pathlib import Path

from adapters.scanner.cli import add_parsers, describe, run_listen
from adapters.scanner.keymap import Layout, Terminator, WedgeConfig
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.scanner.test_evdev_stream import recording


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    return parser.parse_args(argv)


def test_describe() -> None:
    assert describe("A37859+B") == ["  NW-7 check schemes that accept it: mod16 -> 37859+"]
    assert describe("9784344405042") == [
        "  NW-7 check schemes that accept it: 9dsr -> 9784344405042; mod10_w31 -> 9784344405042",
        "  ISBN-13 9784344405042",
    ]
    assert describe("1920193005714")[-1] == "  price row (192/191): C-code 0193, never an item id"
    assert describe("VQ1.K1.HOME-1.ABCDEFGHIJKLMNOPQRSTUVWXYZ")[-1] == (
        "  visit QR format VQ1, key id K1 (signature checked by the station)"
    )


def test_listen_on_a_recorded_us_scanner_shows_the_layout_difference(tmp_path: Path) -> None:
    fifo = tmp_path / "kbd"
    os.mkfifo(fifo)
    us = WedgeConfig(layout=Layout.US, terminator=Terminator.ENTER)
    data = recording("A12:3+B", us, 0) + recording("A37859+B", WedgeConfig(layout=Layout.JP106), 1_000_000)

    def feed() -> None:
        fd = os.open(fifo, os.O_WRONLY)
        os.write(fd, data)
        os.close(fd)

    t = threading.Thread(target=feed)
    t.start()
    out = io.StringIO()
    assert run_listen(parse(["scanner", "listen", "--evdev", str(fifo), "--count", "2"]), out) == 0
    t.join()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"listening on {fifo} (not grabbed); Ctrl-C to stop"
    assert lines[1] == "scan 1: jp106 'A12+3~B', us 'A12:3+B'  <- layouts differ"
    assert "scan 2: jp106 'A37859+B'" in lines[3]


def test_listen_on_serial(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    fd = os.open(pair.b, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"A37859+B\r\n")
        out = io.StringIO()
        assert run_listen(parse(["scanner", "listen", "--serial", pair.a, "--count", "1"]), out) == 0
    finally:
        os.close(fd)
        pair.close()
    assert out.getvalue().splitlines()[1:] == [
        "scan 1: 'A37859+B'",
        "  NW-7 check schemes that accept it: mod16 -> 37859+",
    ]

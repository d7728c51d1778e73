"""`edgegw scanner listen`: what a connected scanner sends, decoded every way we know, to pick the keymap and scheme.

For a keyboard wedge each scan is shown as the US and the JP106 layout read it (they differ exactly
on `:` and `+`); for every scan the AIM id, then each NW-7 check scheme that accepts it, the EAN /
ISBN / price-row reading and the visit-QR format. It is a technician's tool at the device: it
prints what was scanned (a card number too) on that terminal and nowhere else, logs nothing, and
emits nothing into the buffer.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from adapters.scanner.aim import AimPolicy, FramingConfig, Suffix, unframe
from adapters.scanner.codabar import CheckScheme, CodabarConfig, GuardsIn, Mod11Rule, decode_codabar
from adapters.scanner.codec import BarcodeError
from adapters.scanner.ean import BookId, PriceRow, classify_book_scan
from adapters.scanner.evdev_stream import EventParser, WedgeAssembler, grab
from adapters.scanner.keymap import Layout, Terminator, WedgeConfig
from adapters.scanner.serial_scanner import LineSplitter

__all__ = ["add_parsers", "describe", "run_listen"]


def describe(text: str) -> list[str]:
    """Every reading of one scan's text, one line each."""
    lines: list[str] = []
    try:
        framed = unframe(text, FramingConfig(suffix=Suffix.NONE, aim=AimPolicy.OPTIONAL))
        data = framed.data
        if framed.aim is not None:
            lines.append(f"  AIM id {framed.aim.text} ({framed.aim.symbology.name}); data {data!r}")
    except BarcodeError as exc:
        return [f"  framing: {exc}"]
    schemes = []
    for scheme in CheckScheme:
        if scheme is CheckScheme.NONE:
            continue
        rules = [Mod11Rule.R01_ZERO, Mod11Rule.R1_INVALID] if scheme is CheckScheme.MOD11 else [Mod11Rule.R01_ZERO]
        for rule in rules:
            try:
                guards = GuardsIn.PRESENT if scheme is CheckScheme.MOD16 else GuardsIn.EITHER
                scan = decode_codabar(data, CodabarConfig(scheme=scheme, guards_in=guards, mod11_rule=rule))
            except (BarcodeError, ValueError):
                continue
            schemes.append(f"{scheme.value} -> {scan.value}")
            break
    if schemes:
        lines.append("  NW-7 check schemes that accept it: " + "; ".join(schemes))
    else:
        try:
            decode_codabar(data, CodabarConfig())
            lines.append("  NW-7 without check character (no scheme accepts its last character)")
        except BarcodeError as exc:
            lines.append(f"  not NW-7: {exc.code}")
    if (data.isdigit() and len(data) in (10, 13)) or (len(data) == 10 and data[:9].isdigit()):
        try:
            book = classify_book_scan(data)
            if isinstance(book, BookId):
                lines.append(f"  ISBN-13 {book.isbn13}")
            elif isinstance(book, PriceRow):
                lines.append(f"  price row (192/191): C-code {book.c_code}, never an item id")
            else:
                lines.append(f"  EAN-13/JAN {book.gtin}")
        except BarcodeError as exc:
            lines.append(f"  EAN/ISBN: {exc}")
    if data.startswith("VQ"):
        parts = data.split(".")
        ok = len(parts) == 4 and parts[0] == "VQ1"
        lines.append(
            f"  visit QR format {'VQ1, key id ' + parts[1] if ok else 'not VQ1'} (signature checked by the station)"
        )
    return lines


def _chunks(fd: int, timeout_s: float) -> Iterator[bytes]:
    while True:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            yield b""
            continue
        data = os.read(fd, 4096)
        if not data:
            return
        yield data


def run_listen(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`edgegw scanner listen`: 0 when stopped (Ctrl-C is how it ends), 2 with one line for a device not there."""
    out = out or sys.stdout
    path = args.evdev or args.serial
    flags = os.O_RDONLY | os.O_CLOEXEC if args.evdev else os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        print(f"scanner listen: cannot open {path}, got {_words(exc)}; {_open_fix(exc, path)}", file=sys.stderr)
        return 2
    try:
        return _listen(args, fd, out)
    except KeyboardInterrupt:  # the way to stop it ("Ctrl-C to stop"): no traceback, no failure
        print("scanner listen: stopped", file=sys.stderr)
        return 0
    finally:
        os.close(fd)


def _words(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _open_fix(exc: OSError, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return "check the cable and the name (ls /dev/serial/by-id /dev/input/by-id)"
    if isinstance(exc, PermissionError):
        return f"run it as root or as a member of the group of {path} (ls -l {path})"
    return "check the device"


def _listen(args: argparse.Namespace, fd: int, out: TextIO) -> int:
    count = 0
    if args.evdev:
        grabbed = grab(fd) if args.grab else False
        out.write(f"listening on {args.evdev} ({'grabbed' if grabbed else 'not grabbed'}); Ctrl-C to stop\n")
        parser = EventParser()
        readers = {
            layout: WedgeAssembler(WedgeConfig(layout=layout, terminator=Terminator.ENTER_OR_TAB)) for layout in Layout
        }
        for data in _chunks(fd, 0.5):
            events = list(parser.feed(data))
            texts: dict[Layout, list[str]] = {layout: [] for layout in Layout}
            for layout, asm in readers.items():
                for ev in events:
                    for r in asm.feed(ev):
                        texts[layout].append(r.text if r.text is not None else f"<{r.error.code if r.error else ''}>")
            for jp, us in zip(texts[Layout.JP106], texts[Layout.US], strict=False):
                count += 1
                out.write(
                    f"scan {count}: jp106 {jp!r}" + ("" if us == jp else f", us {us!r}  <- layouts differ") + "\n"
                )
                for line in describe(jp):
                    out.write(line + "\n")
                out.flush()
                if args.count and count >= args.count:
                    return 0
        return 0
    out.write(f"listening on {args.serial}; Ctrl-C to stop\n")
    splitter = LineSplitter(FramingConfig(suffix=Suffix(args.suffix), aim=AimPolicy.ABSENT))
    for data in _chunks(fd, 0.5):
        for scan in splitter.feed(data):
            count += 1
            if scan.framed is None:
                out.write(f"scan {count}: {scan.error}\n")
                continue
            out.write(f"scan {count}: {scan.framed.data!r}\n")
            for line in describe(scan.framed.data):
                out.write(line + "\n")
            out.flush()
            if args.count and count >= args.count:
                return 0
    return 0


def add_parsers(subparsers: Any) -> None:
    """Add `scanner listen` to the `edgegw` argument parser."""
    p = subparsers.add_parser("scanner", help="barcode scanner tools")
    sub = p.add_subparsers(dest="scanner_command", required=True, metavar="{listen}")
    listen = sub.add_parser("listen", help="print what a scanner sends, decoded (keymap, AIM id, check schemes)")
    src = listen.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--evdev", metavar="PATH", help="/dev/input/by-id/…-event-kbd (stop the gateway first: it grabs it)"
    )
    src.add_argument("--serial", metavar="PATH", help="/dev/ttyACM0 (set the baud rate with stty if not 9600)")
    listen.add_argument(
        "--suffix",
        default="any_eol",
        choices=[s.value for s in Suffix if s is not Suffix.NONE and s is not Suffix.CUSTOM],
    )
    listen.add_argument("--no-grab", dest="grab", action="store_false", help="leave the keystrokes to the console too")
    listen.add_argument("--count", type=int, default=0, help="stop after this many scans (default: never)")
    listen.set_defaults(func=run_listen)

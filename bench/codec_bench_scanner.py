"""Throughput of the scanner codecs on one core; each decoder must take >= 100,000 inputs/s."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from adapters.scanner.aim import FramingConfig, frame, unframe
from adapters.scanner.codabar import CheckScheme, CodabarConfig, GuardsIn, decode_codabar, encode_codabar
from adapters.scanner.ean import classify_book_scan, ean13_check_digit
from adapters.scanner.keymap import Layout, WedgeConfig, WedgeDecoder, encode_scan
from adapters.scanner.visit_qr import encode_visit_qr, verify_visit_qr

TARGET = 100_000
T = TypeVar("T")


def rate(inputs: Sequence[T], decode: Callable[[T], object], seconds: float = 1.0) -> float:
    """Inputs per second, looping over `inputs` for about `seconds`."""
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for item in inputs:
            decode(item)
        done += len(inputs)
        elapsed = time.perf_counter() - start
    return done / elapsed


def main() -> int:
    rng = random.Random(1)
    ids = [str(rng.randrange(10**9, 10**10)) for _ in range(5000)]

    mod16 = CodabarConfig(scheme=CheckScheme.MOD16, guards_in=GuardsIn.PRESENT)
    luhn = CodabarConfig(scheme=CheckScheme.MOD10_W21_SPLIT)
    dr7 = CodabarConfig(scheme=CheckScheme.DR7)
    nw7_mod16 = [encode_codabar(i, mod16) for i in ids]
    nw7_luhn = [encode_codabar(i, luhn) for i in ids]
    nw7_dr7 = [encode_codabar(i, dr7) for i in ids]

    eans = []
    for i in ids:
        body = "9784" + i[:8]
        eans.append(body + ean13_check_digit(body))

    framing = FramingConfig()
    framed = [frame(s, framing) for s in nw7_mod16]
    aim_framed = ["]F0" + s for s in framed]

    wedge = WedgeConfig(layout=Layout.JP106)
    events = [event for s in nw7_mod16[:500] for event in encode_scan(s.replace("A", "A:", 1), wedge)]
    scans_in_events = 500

    key = bytes(range(32))
    visits = [encode_visit_qr(f"P-{i}", "K1", key) for i in ids[:1000]]

    def feed_all(stream: Sequence[tuple[int, int]]) -> None:
        decoder = WedgeDecoder(wedge)
        feed = decoder.feed
        for code, value in stream:
            feed(code, value)

    results: list[tuple[str, float]] = [
        ("nw7 modulus 16 (A...+B)", rate(nw7_mod16, lambda t: decode_codabar(t, mod16))),
        ("nw7 luhn (mod10 w21 split)", rate(nw7_luhn, lambda t: decode_codabar(t, luhn))),
        ("nw7 7DR", rate(nw7_dr7, lambda t: decode_codabar(t, dr7))),
        ("ean-13 / isbn classify", rate(eans, classify_book_scan)),
        ("framing: suffix strip", rate(framed, lambda t: unframe(t, framing))),
        ("framing: AIM ]F0 + suffix strip", rate(aim_framed, lambda t: unframe(t, framing))),
    ]
    start = time.perf_counter()
    rounds = 0
    while time.perf_counter() - start < 1.0:
        feed_all(events)
        rounds += 1
    elapsed = time.perf_counter() - start
    results.append(("key events -> scan (per event)", rounds * len(events) / elapsed))
    scans_per_s = rounds * scans_in_events / elapsed
    visit_rate = rate(visits, lambda t: verify_visit_qr(t, {"K1": key}))

    slow = False
    for name, value in results:
        verdict = "ok" if value >= TARGET else "SLOW"
        slow = slow or value < TARGET
        print(f"{name:36s} {value:12,.0f} inputs/s  {verdict}")
    each = len(events) // scans_in_events
    print(f"{'key events -> scan (per whole scan)':36s} {scans_per_s:12,.0f} scans/s   (~{each} events each)")
    print(f"{'visit QR verify (HMAC-SHA256)':36s} {visit_rate:12,.0f} inputs/s  (informational)")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())

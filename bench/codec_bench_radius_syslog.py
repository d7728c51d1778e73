"""Throughput of the RADIUS accounting and Wi-Fi syslog decoders on one core; prints inputs/s per decoder.

Run: .venv/bin/python bench/codec_bench_radius_syslog.py [--inputs N] [--repeats R]
The target is 100,000 inputs/s for each decoder marked [target]. Time is this process's CPU time
(time.process_time), best of R runs, so other jobs on a shared box do not count against the decoder.

The decoders remember values that repeat between inputs (NAS and client IPv4 addresses, this
second's Event-Timestamp and RFC 3164 timestamp, MAC spellings). The "(no repeats)" lines defeat
those memos: every input carries a new address, second and MAC, the worst case for them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from typing import Any

from adapters.radius import AccountingRecord, build_accounting_request, decode_request
from adapters.radius.packet import decode_accounting_request
from adapters.wifi_syslog import FrameSplitter, decode_wifi_event, encode_octet_counted, load_patterns, parse_syslog

TARGET = 100_000
SECRET = b"bench-shared-secret"
NOW = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


def radius_packets(n: int, *, repeats: bool = True) -> list[bytes]:
    """Start / Interim-Update / Stop packets shaped like a Wi-Fi controller's (10-16 attributes).

    With repeats=False every packet has its own Framed-IP-Address and Event-Timestamp.
    """
    out = []
    for i in range(n):
        status = (1, 3, 2)[i % 3]
        record = AccountingRecord(
            status_type=status,
            user_name=f"guest-{i % 5000:04d}",
            calling_station_id=f"AA-BB-CC-{i % 256:02X}-{(i >> 8) % 256:02X}-0F",
            called_station_id="00-11-22-33-44-55:Kobe_Free_WiFi",
            nas_ip_address=IPv4Address("192.0.2.7"),
            nas_identifier="ap-lib-01",
            session_id=f"{i:016X}",
            session_time=None if status == 1 else 60 * (i % 100),
            input_octets=None if status == 1 else i * 1500 + (1 << 32),
            output_octets=None if status == 1 else i * 9000,
            terminate_cause=1 if status == 2 else None,
            delay_time=i % 3,
            event_timestamp=NOW if repeats else NOW + timedelta(seconds=i),
            framed_ip_address=IPv4Address("10.20.0.15") if repeats else IPv4Address(0x0A000000 + i),
        )
        out.append(build_accounting_request(i % 256, record, SECRET))
    return out


def syslog_lines(n: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    rfc3164, rfc5424, unifi = [], [], []
    for i in range(n):
        mac = f"68:5e:1c:{i % 256:02x}:{(i >> 8) % 256:02x}:dd"
        event = ("AP-STA-CONNECTED", "AP-STA-DISCONNECTED")[i % 2]
        suffix = " auth_alg=open" if i % 2 == 0 else ""
        rfc3164.append(
            f"<30>Nov 25 17:{i % 60:02d}:{i % 60:02d} ap-lib-01 hostapd: wlan{i % 2}: {event} {mac}{suffix}".encode()
        )
        rfc5424.append(
            (
                f"<30>1 2026-11-25T17:{i % 60:02d}:42.{i % 1000000:06d}+09:00 ap-lib-01 hostapd - - "
                f'[timeQuality tzKnown="1" isSynced="1"] wlan0: {event} {mac}'
            ).encode()
        )
        unifi.append(
            (
                "<30>Nov 25 17:30:42 U7-Pro 1c6a1b60c3c0,U7-Pro-8.0.26+15443: stahtd: stahtd[6930]: "
                '[STA-TRACKER].stahtd_dump_event(): {"op":"event","message_type":"STA_ASSOC_TRACKER",'
                f'"event_type":"{("association", "sta_leave")[i % 2]}","mac":"{mac}","vap":"wifi0ap6",'
                '"assoc_status":"0","event_id": "1"}'
            ).encode()
        )
    return rfc3164, rfc5424, unifi


def unrepeated_syslog_lines(n: int) -> tuple[list[bytes], list[bytes]]:
    """hostapd RFC 3164 and UniFi lines where every line has its own second and client MAC."""
    start = datetime(2026, 11, 25, 0, 0)
    rfc3164, unifi = [], []
    for i in range(n):
        stamp = f"{start + timedelta(seconds=i):%b %d %H:%M:%S}"
        mac = f"68:5e:{i >> 16:02x}:{(i >> 8) % 256:02x}:{i % 256:02x}:dd"
        ap = f"1c6a1b{i:06x}"
        rfc3164.append(f"<30>{stamp} ap-lib-01 hostapd: wlan0: AP-STA-CONNECTED {mac}".encode())
        unifi.append(
            (
                f"<30>{stamp} U7-Pro {ap},U7-Pro-8.0.26+15443: stahtd: stahtd[6930]: "
                '[STA-TRACKER].stahtd_dump_event(): {"op":"event","message_type":"STA_ASSOC_TRACKER",'
                f'"event_type":"association","mac":"{mac}","vap":"wifi0ap6",'
                '"assoc_status":"0","event_id": "1"}'
            ).encode()
        )
    return rfc3164, unifi


def measure(fn: Callable[[Any], object], inputs: Sequence[Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for item in inputs:
            fn(item)
        best = min(best, time.process_time() - start)
    return len(inputs) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n, r = args.inputs, args.repeats
    packets = radius_packets(n)
    unrepeated_packets = radius_packets(n, repeats=False)
    rfc3164, rfc5424, unifi = syslog_lines(n)
    unrepeated_3164, unrepeated_unifi = unrepeated_syslog_lines(n)
    patterns = load_patterns()
    source = ("192.0.2.7", 32768)
    stream = b"".join(encode_octet_counted(line) for line in rfc5424)

    def split(_: object) -> None:
        splitter = FrameSplitter()
        for pos in range(0, len(stream), 1400):  # TCP-segment-sized reads
            splitter.feed(stream[pos : pos + 1400])
            while splitter.next() is not None:
                pass

    cases: list[tuple[str, bool, Callable[[Any], object], Sequence[Any]]] = [
        (
            "radius accounting request (authenticator + typed record)",
            True,
            lambda d: decode_request(d, secret=SECRET, now=NOW, source=source),
            packets,
        ),
        (
            "radius accounting request (no repeats)",
            False,
            lambda d: decode_request(d, secret=SECRET, now=NOW, source=source),
            unrepeated_packets,
        ),
        (
            "radius accounting request (authenticator + attributes only)",
            False,
            lambda d: decode_accounting_request(d, SECRET),
            packets,
        ),
        ("syslog RFC 3164 parse", True, lambda line: parse_syslog(line, now=NOW), rfc3164),
        ("syslog RFC 3164 parse (no repeats)", False, lambda line: parse_syslog(line, now=NOW), unrepeated_3164),
        ("syslog RFC 5424 parse (with structured data)", True, lambda line: parse_syslog(line, now=NOW), rfc5424),
        (
            "hostapd event (RFC 3164 parse + pattern match)",
            True,
            lambda line: decode_wifi_event(line, now=NOW, patterns=patterns),
            rfc3164,
        ),
        (
            "hostapd event (RFC 3164, no repeats)",
            False,
            lambda line: decode_wifi_event(line, now=NOW, patterns=patterns),
            unrepeated_3164,
        ),
        (
            "hostapd event (RFC 5424 parse + pattern match)",
            True,
            lambda line: decode_wifi_event(line, now=NOW, patterns=patterns),
            rfc5424,
        ),
        (
            "UniFi STA_ASSOC_TRACKER event (parse + JSON)",
            True,
            lambda line: decode_wifi_event(line, now=NOW, patterns=patterns),
            unifi,
        ),
        (
            "UniFi STA_ASSOC_TRACKER event (no repeats)",
            False,
            lambda line: decode_wifi_event(line, now=NOW, patterns=patterns),
            unrepeated_unifi,
        ),
    ]
    print(f"{n} inputs per decoder, best of {r} runs, CPU time of one core")
    below = 0
    for name, is_target, fn, inputs in cases:
        rate = measure(fn, inputs, r)
        mark = "" if not is_target else ("  [target ok]" if rate >= TARGET else "  [target MISSED]")
        below += is_target and rate < TARGET
        print(f"{name:<62} {rate:>10,.0f} inputs/s{mark}")
    frames_rate = measure(split, [None], r) * n
    print(f"{'RFC 6587 octet-counting splitter (1400-octet reads)':<62} {frames_rate:>10,.0f} frames/s")
    if below:
        print(f"{below} decoder(s) below {TARGET:,} inputs/s on this machine")


if __name__ == "__main__":
    main()

"""Outreach lending end to end: no uplink, 10,000 loans scanned on a keyboard-wedge stream, the gateway killed -9
twice mid-stream, then the uplink back: every loan reaches Orion once per scan number (replays rewrite the same
entity), in scan order, with the card only as a token."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from adapters.scanner.codabar import CheckScheme, CodabarConfig, GuardsIn, encode_codabar
from adapters.scanner.keymap import Layout, WedgeConfig
from tests.adapters.scanner.test_evdev_stream import recording
from tests.e2e.harness import ROOT, GatewayProcess, wait_until
from tests.support.orion_double import ManualClock, OrionDouble

pytestmark = pytest.mark.e2e

LOANS = 10_000
PER_PATRON = 10
PATRON_CFG = CodabarConfig(scheme=CheckScheme.MOD16, guards_in=GuardsIn.PRESENT)
ITEM_CFG = CodabarConfig(scheme=CheckScheme.MOD10_W21_SPLIT, guards_in=GuardsIn.PRESENT)
JP = WedgeConfig(layout=Layout.JP106)


class ScannerGateway(GatewayProcess):
    def start(self) -> None:
        assert self.proc is None
        self.runs += 1
        with open(self.workdir / f"gateway-{self.runs}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.adapters.scanner.gateway_with_scanner",
                    "run",
                    "--config",
                    str(self.config_path),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )


def config(url: str, fifo: Path) -> str:
    return f"""
[gateway]
id = "e2e-outreach"
data_dir = "@DATA_DIR@"

# a station takes the next scan once the last one is committed: 10,000 scans in a burst wait out
# 10,000 commit windows (20 ms each by default, 200 s); the point here is loss and replay, not wear
[buffer]
commit_interval_ms = 1

[[adapters]]
name = "bus"
type = "scanner"
rescan_s = 0.2

[[adapters.stations]]
id = "bus1"
purpose = "lending"
lending_mode = "outreach"
patron_session_s = 3600

[[adapters.rules]]
kind = "patron"
pattern = "[Aa][0-9]{{8}}.[Bb]"
scheme = "mod16"
guards_in = "present"

[[adapters.rules]]
kind = "item"
pattern = "[Cc][0-9]{{9}}[Cc]"
scheme = "mod10_w21_split"
guards_in = "present"

[[adapters.scanners]]
name = "hid"
station = "bus1"
transport = "evdev"
path = "{fifo}"

[[uplinks]]
name = "orion"
type = "orion"
url = "{url}"
batch_max_rows = 500
retry_initial_s = 0.2
retry_max_s = 0.5
"""


def loans_in_buffer(gw: GatewayProcess) -> int:
    if not (gw.data_dir / "buffer.db").exists():
        return 0
    conn = sqlite3.connect(f"file:{gw.data_dir / 'buffer.db'}?mode=ro", uri=True, timeout=10)
    try:
        (n,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE substr(entity_id, 1, 23) = 'urn:ngsi-ld:LibraryLoan'"
        ).fetchone()
        return int(n)
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def unread(fd: int) -> int:
    """Bytes written into the pipe that no reader has taken yet."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


async def test_outreach_ten_thousand_loans_two_kills(tmp_path: Path) -> None:
    clock = ManualClock()
    fifo = tmp_path / "bus-scanner-event-kbd"
    os.mkfifo(fifo)
    hold = os.open(fifo, os.O_RDWR)  # the scanner stays plugged in across the gateway's restarts
    stream = bytearray()
    items: list[str] = []
    t = 0
    for i in range(LOANS):
        if i % PER_PATRON == 0:
            stream += recording(encode_codabar(f"7310{i // PER_PATRON:04d}", PATRON_CFG, start="A", stop="B"), JP, t)
            t += 1000
        text = encode_codabar(f"{i:08d}", ITEM_CFG, start="C", stop="C")
        items.append(text[1:-1])
        stream += recording(text, JP, t)
        t += 1000

    def write() -> None:
        view = memoryview(bytes(stream))
        while view:
            n = os.write(hold, view[: 24 * 2730])  # whole input_event records, as a device writes them
            view = view[n:]

    async with OrionDouble(clock=clock) as orion:
        orion.fail(503, until=clock() + 1_000_000)  # no network on the bus
        gw = ScannerGateway(tmp_path, config(orion.url, fifo))
        gw.start()
        writer = threading.Thread(target=write, daemon=True)
        try:
            writer.start()
            for threshold in (3000, 6000):
                await wait_until(lambda th=threshold: loans_in_buffer(gw) >= th, 240, f"{threshold} loans buffered", gw)
                gw.kill9()
                gw.start()
            writer.join(300)
            # the stream is drained once the pipe holds nothing unread and the count stops moving: the
            # count alone stood still for 2 s while a gateway restarted on a loaded machine (6001 taken)
            await wait_until(lambda: unread(hold) == 0, 240, "the scanner's pipe read to its end", gw)
            last = -1
            while (now := loans_in_buffer(gw)) != last:
                last = now
                await asyncio.sleep(2)
            buffered = loans_in_buffer(gw)
            assert buffered >= LOANS - 2 * (PER_PATRON + 10), buffered  # lost: a pipe read in flight, no_patron
            clock.advance(2_000_000)  # the network is back
            await wait_until(
                lambda: sum(1 for k in orion.entities if k[2].startswith("urn:ngsi-ld:LibraryLoan:")) >= buffered,
                300,
                "all loans at Orion",
                gw,
            )
            await gw.terminate()
        finally:
            gw.stop_now()
            os.close(hold)
    loans = {k[2]: v for k, v in orion.entities.items() if k[2].startswith("urn:ngsi-ld:LibraryLoan:")}
    assert len(loans) == buffered
    # once per scan number: an id always carries the same item (a replay rewrote it, never another loan)
    by_id: dict[str, set[str]] = {}
    firsts: list[int] = []
    for w in orion.written:
        if w["id"].startswith("urn:ngsi-ld:LibraryLoan:"):
            if w["id"] not in by_id:
                firsts.append(int(w["id"].rsplit(":", 1)[1]))
            by_id.setdefault(w["id"], set()).add(w["item"]["value"])
    assert all(len(v) == 1 for v in by_id.values())
    assert firsts == sorted(firsts)  # in scan order
    delivered_items = [next(iter(v)) for v in by_id.values()]
    assert len(set(delivered_items)) == len(delivered_items)  # no item lent twice
    assert set(delivered_items) <= set(items)
    assert all(str(v["patronCard"]["value"]).startswith("pz1:") for v in loans.values())
    assert not any(c in gw.logs() for c in ("73100001", "73100500"))
    refused = sum(
        1
        for k, v in orion.entities.items()
        if k[2].startswith("urn:ngsi-ld:ScanRejected:") and v["reason"]["value"] == "no_patron"
    )
    lost = LOANS - len(loans) - refused
    assert lost <= 2 * 8  # at most the one read in hand per kill (170 input events, under 8 scans)
    print(
        f"outreach e2e: {len(loans)} of {LOANS} loans delivered; {refused} items refused (no_patron: the patron "
        f"session is not kept across a restart); {lost} scans in a read in hand lost to the two kills"
    )

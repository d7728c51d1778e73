"""The station page: a real gateway running the scanner adapter (evdev stream through a FIFO), the Orion double
down then back: the librarian sees the scans, the errors and the outreach backlog going out; card numbers never shown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from adapters.scanner.adapter import ScannerAdapter
from adapters.scanner.codabar import CheckScheme, CodabarConfig, GuardsIn, encode_codabar
from adapters.scanner.keymap import Layout, WedgeConfig
from gateway import registry
from gateway.accounts.store import Role
from tests.adapters.scanner.test_evdev_stream import recording
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web, until

PATRON = encode_codabar(
    "73101234", CodabarConfig(scheme=CheckScheme.MOD16, guards_in=GuardsIn.PRESENT), start="A", stop="B"
)
ITEM_CFG = CodabarConfig(scheme=CheckScheme.MOD10_W21_SPLIT, guards_in=GuardsIn.PRESENT)
JP = WedgeConfig(layout=Layout.JP106)


def item(n: int) -> str:
    return encode_codabar(f"{n:08d}", ITEM_CFG, start="C", stop="C")


@pytest.fixture
def scanner_family(monkeypatch: pytest.MonkeyPatch) -> None:
    load = registry.load

    def with_scanner(group: str, name: str) -> Any:  # the installed metadata may predate the entry point
        return ScannerAdapter if (group, name) == (registry.ADAPTER_GROUP, "scanner") else load(group, name)

    monkeypatch.setattr(registry, "load", with_scanner)


def config(tmp_path: Path, orion_url: str, fifo: Path) -> str:
    return f"""[gateway]
id = "gw-lib"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "library"
type = "scanner"
rescan_s = 0.2

[[adapters.stations]]
id = "bus1"
purpose = "lending"
lending_mode = "outreach"

[[adapters.stations]]
id = "door"
purpose = "attendance"

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
url = "{orion_url}"
retry_initial_s = 0.1
retry_max_s = 0.2
"""


async def test_station_page_shows_scans_errors_and_backlog(
    scanner_family: None, orion_double: OrionDouble, tmp_path: Path
) -> None:
    fifo = tmp_path / "scanner-event-kbd"
    os.mkfifo(fifo)
    w = os.open(fifo, os.O_RDWR)
    orion_double.fail(
        503, until=orion_double.clock() + 6
    )  # no network on the bus for 6 s (the double's clock is real time)
    try:
        async with gateway_web(tmp_path, orion_double.url, text=config(tmp_path, orion_double.url, fifo)) as env:
            bad = item(3)[:-2] + ("0" if item(3)[-2] != "0" else "1") + item(3)[-1]
            os.write(w, recording(PATRON, JP, 0) + b"".join(recording(item(i), JP, i) for i in range(3)))
            os.write(w, recording(bad, JP, 10))
            librarian = await env.browser("hanako", Role.LIBRARIAN)

            async def page() -> str:
                return await (await librarian.get("/stations")).text()

            text = ""
            for _ in range(300):
                text = await page()
                if "未送信の貸出記録が3件あります" in text and "チェックデジットが合いません" in text:
                    break
                await asyncio.sleep(0.05)
            assert "未送信の貸出記録が3件あります" in text, text
            assert "チェックデジットが合いません。読み直してください" in text
            assert "73101234" not in text
            assert "現在、0人が登園しています。" in text  # the attendance station beside it, nobody in yet
            viewer = await env.browser("mika", Role.VIEWER)
            assert (await viewer.get("/stations")).status == 403
            for _ in range(400):  # the network comes back after the 6 s
                text = await page()
                if "すべてプラットフォームへ送信済みです" in text:
                    break
                await asyncio.sleep(0.05)
            assert "未送信の貸出記録はありません。すべてプラットフォームへ送信済みです。" in text
            await until(lambda: any("LibraryLoan" in k[2] for k in orion_double.entities), "loans at Orion")
            loans = [v for k, v in orion_double.entities.items() if "LibraryLoan" in k[2]]
            assert len(loans) == 3
            assert all(str(v["patronCard"]["value"]).startswith("pz1:") for v in loans)
    finally:
        os.close(w)

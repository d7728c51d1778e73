"""A serial scanner's scan the buffer refuses (full) gets the refused beep: silent, the librarian took the book
for lent and it left the library with no loan stored. The scanner is then lost with the reason and found again
at the next look, and the same scan is a loan."""

from __future__ import annotations

import asyncio
import os
import select
from pathlib import Path

from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.scanner.test_adapter import item, make, patron, until


async def read_back(fd: int, want: int) -> bytes:
    """What the scanner was sent, `want` bytes or what came in 5 s (read in a thread: the adapter runs on this loop)."""
    return await asyncio.to_thread(_read_back, fd, want)


def _read_back(fd: int, want: int) -> bytes:
    back = b""
    for _ in range(100):
        back += os.read(fd, 10) if select.select([fd], [], [], 0.05)[0] else b""
        if len(back) >= want:
            break
    return back


async def test_a_scan_the_buffer_refuses_gets_the_refused_beep(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    doc = {
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
    adapter, out, emit = make(tmp_path, doc)
    refuse = [True]

    async def full_once(r: Reading) -> None:
        if r.entity_type == "LibraryLoan" and refuse:
            refuse.clear()
            raise RuntimeError("the buffer refused the reading")
        await emit(r)

    fd = os.open(pair.b, os.O_RDWR | os.O_NOCTTY)
    task = asyncio.create_task(adapter.run(full_once))
    key = f"ser:{pair.a}"
    try:
        await until(lambda: adapter.connected.get(key) is True, "scanner open")
        os.write(fd, f"]F0{patron(1)}\r".encode())
        await until(lambda: adapter.counts["patron"] == 1, "patron scanned")
        assert await read_back(fd, 1) == b"\x06"
        os.write(fd, f"]F0{item(5)}\r".encode())
        assert await read_back(fd, 1) == b"\x15"  # not taken: the librarian hears it
        await until(lambda: adapter.connected.get(key) is False, "scanner lost")
        assert adapter.last_error == f"{key}: the buffer refused the reading"
        await until(lambda: adapter.connected.get(key) is True, "scanner found again")
        os.write(fd, f"]F0{patron(1)}\r".encode())
        os.write(fd, f"]F0{item(5)}\r".encode())
        await until(lambda: len(out) == 1, "the loan scanned again")
        assert out[0].attributes["item"].value == "000000059"
        assert await read_back(fd, 2) == b"\x06\x06"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(fd)
        pair.close()

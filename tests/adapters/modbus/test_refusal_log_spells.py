"""A refused read is logged at WARNING once per address and spell: a second register refused, or the same one
refused again after it read, is news.

Regression: the "already logged" key took the address from the exception, which never carries one, so each
(function, exception code) pair was logged once per device for the life of the process: the second register
refused, and every later spell, went to DEBUG only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.modbus import rtu
from tests.adapters.modbus.raw_rigs import adapter_on_rtu_device
from tests.adapters.modbus.rawpeers import rtu_answer
from tests.adapters.modbus.running import until

RADAR = [
    {
        "name": "radar",
        "bus": "rs485",
        "profile": "dfrobot/sen0676",  # air gap @1 and level @3: two FC03 x1 reads (max_gap 0)
        "unit_id": 1,
        "poll_interval": 0.1,
        "timeout": 0.1,
    }
]


async def test_each_refused_address_and_each_spell_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.modbus.bus")
    refused = {1, 3}
    asked = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        asked["n"] += 1
        if request.address in refused:
            return [(0.005, rtu.encode_exception(1, request.function_code, 2))]
        return [(0.005, rtu_answer(request, 1500))]

    def warned(address: int) -> int:
        return sum(
            1
            for r in caplog.records
            if r.levelno == logging.WARNING
            and f"FC03 @{address} x1" in r.getMessage()
            and "exception 02" in r.getMessage()
        )

    async with adapter_on_rtu_device(tmp_path, script, RADAR) as (adapter, _):
        radar = adapter.buses["rs485"].devices[0]
        await until(lambda: radar.counters.exceptions[2] >= 6, timeout=10)
        assert (warned(1), warned(3)) == (1, 1)  # both addresses, each once however often refused
        refused.clear()  # both read again: their spell ends
        n = asked["n"]
        await until(lambda: asked["n"] >= n + 6, timeout=10)
        refused.add(1)  # refused again: a new spell
        seen = radar.counters.exceptions[2]
        await until(lambda: radar.counters.exceptions[2] >= seen + 3, timeout=10)
    assert (warned(1), warned(3)) == (2, 1)

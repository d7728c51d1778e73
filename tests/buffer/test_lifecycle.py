"""`async with` for the outbox and the gateway: everything appended is committed and the file closed on the way out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.config import parse_config
from gateway.errors import BufferError
from gateway.records import Lane
from gateway.supervisor import Supervisor
from tests.buffer.readings import ns, reading
from tests.support.orion_double import OrionDouble

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)


async def test_the_outbox_closes_on_leaving_its_block_and_keeps_what_was_appended(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "b.db", CFG, ["orion"]) as box:
        pending = box.append_many([reading(i, "river", Lane.NORMAL) for i in range(3)])
    await pending  # queued inside the block: committed by the close on the way out
    with pytest.raises(BufferError) as err:
        box.append(reading(9))
    assert str(err.value) == "buffer: closed, got an append of 1 readings"
    async with await Outbox.open(tmp_path / "b.db", CFG, ["orion"]) as again:
        assert ns(await again.read("orion", 10)) == [0, 1, 2]


async def test_the_outbox_closes_when_its_block_fails(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])

    async def fail_inside_the_block() -> None:
        async with box:
            box.append(reading(1))
            raise RuntimeError("the adapter broke")

    with pytest.raises(RuntimeError, match="the adapter broke"):
        await fail_inside_the_block()
    with pytest.raises(BufferError, match=r"^buffer: closed"):
        box.append(reading(2))


async def test_a_unknown_uplink_is_refused_without_reaching_into_the_store(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "b.db", CFG, ["orion"]) as box:
        with pytest.raises(BufferError) as err:
            await box.retry_dead_letters("mqtt")
        assert str(err.value) == "buffer: unknown uplink, got 'mqtt'; configured: orion"
        with pytest.raises(BufferError) as err:
            await box.wait("mqtt", timeout=0.01)
        assert str(err.value) == "buffer: unknown uplink, got 'mqtt'; configured: orion"


def gateway_config(tmp_path: Path, orion_url: str) -> dict[str, object]:
    return {
        "gateway": {"id": "gw-with", "data_dir": str(tmp_path)},
        "adapters": [{"name": "gauges", "type": "simulated", "rate": 1000, "limit": 20}],
        "uplinks": [{"name": "orion", "type": "orion", "url": orion_url}],
    }


async def test_the_gateway_runs_inside_async_with_and_stops_on_the_way_out(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with Gateway(parse_config(gateway_config(tmp_path, orion_double.url))) as gw:
        assert gw.outbox is not None and gw.supervisor is not None
        outbox = gw.outbox
        for _ in range(500):
            if gw.loops[0].delivered == 20:
                break
            await asyncio.sleep(0.01)
        assert gw.loops[0].delivered == 20
    assert [s.state.value for s in gw.supervisor.status()] == ["stopped"]
    assert gw.loops[0].status().state.value == "stopped"
    with pytest.raises(BufferError, match=r"^buffer: closed"):
        outbox.append(reading(1))


async def test_a_gateway_that_fails_to_start_stops_what_it_had_started(
    orion_double: OrionDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_start(self: object, adapters: object) -> None:
        raise RuntimeError("adapters cannot start")

    # a failure after the buffer and the uplink loops started, where a real one (a bug) could come
    monkeypatch.setattr(Supervisor, "start", broken_start)
    gw = Gateway(parse_config(gateway_config(tmp_path, orion_double.url)))
    with pytest.raises(RuntimeError, match="adapters cannot start"):
        async with gw:
            raise AssertionError("not reached")
    assert gw.outbox is not None
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("uplink:")] == []  # none left running
    with pytest.raises(BufferError, match=r"^buffer: closed"):
        gw.outbox.append(reading(1))

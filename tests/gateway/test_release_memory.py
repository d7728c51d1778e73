"""The gateway gives a drain's freed memory back to the kernel once delivery is idle (issue 18, item 4)."""

from __future__ import annotations

from pathlib import Path

from gateway.adapter_api import AdapterContext
from gateway.app import Gateway
from gateway.buffer.config import BufferConfig
from gateway.buffer.outbox import Outbox
from gateway.config import parse_config
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.uplinks.orion import OrionConfig, OrionUplink


async def test_memory_is_given_back_only_after_a_drain_and_only_while_idle(tmp_path: Path) -> None:
    uplink = {"name": "orion", "type": "orion", "url": "http://127.0.0.1:9"}
    gw = Gateway(parse_config({"gateway": {"id": "gw", "data_dir": str(tmp_path)}, "uplinks": [uplink]}))
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(), ["orion"])
    config = OrionConfig.model_validate(uplink)
    loop = DeliveryLoop(OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))), config, box)
    gw.loops.append(loop)

    loop.delivered, loop.state = 19_999, UplinkState.IDLE
    gw.release_memory()
    assert gw._released_at == 0  # not enough went through to be worth it
    loop.delivered, loop.state = 25_000, UplinkState.SENDING
    gw.release_memory()
    assert gw._released_at == 0  # still draining: the memory is in use
    loop.state = UplinkState.IDLE
    gw.release_memory()
    assert gw._released_at == 25_000
    gw.release_memory()
    assert gw._released_at == 25_000
    await box.close()

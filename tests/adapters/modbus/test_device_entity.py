"""A device's own entity: deviceState with a reason that never goes stale."""

from __future__ import annotations

from gateway.profiles import load_profile
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, states, until
from tests.support.entity_state import append, stored
from tests.support.orion_double import OrionDouble

XY = load_profile("generic/xy-md02")
DEVICE = "urn:ngsi-ld:Device:gw1-th1"


def _device(**extra: object) -> dict[str, object]:
    return {"name": "th1", "bus": "gw", "profile": "generic/xy-md02", "unit_id": 1, "poll_interval": 0.1,
            "timeout": 0.1, "retries": 0, **extra}


async def test_offline_then_online_carries_the_same_metadata_and_orion_keeps_no_stale_reason(
        tmp_path, orion_double: OrionDouble) -> None:
    peer, port = await start_tcp_peer([image_from_values(1, XY, {"temperature": 20.0, "relative_humidity": 0.5,
                                                                 "temperature_correction": 0.0})])
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], [_device()]), tmp_path)
    try:
        async with running(adapter) as readings:
            await until(lambda: states(readings, DEVICE) == ["online"])
            peer.muted.add(1)
            await until(lambda: states(readings, DEVICE) == ["online", "offline"])
            peer.muted.discard(1)
            await until(lambda: states(readings, DEVICE) == ["online", "offline", "online"], timeout=5)
    finally:
        await peer.stop()
    changes = [r for r in of(readings, DEVICE) if "deviceState" in r.attributes]
    assert [set(r.attributes["deviceState"].metadata) for r in changes] == [{"reason"}] * 3
    reasons = [r.attributes["deviceState"].metadata["reason"] for r in changes]
    assert reasons[0] == reasons[2] == {"type": "Text", "value": ""}
    assert reasons[1]["value"].startswith(f"modbus unit 1 FC04 @1 x2 on tcp://127.0.0.1:{port}: no answer")
    # Orion merges metadata on append: what it holds after the three updates must be the last state's
    for reading in changes:
        await append(orion_double, [reading])
    state = stored(orion_double, DEVICE)["deviceState"]
    assert state["value"] == "online"
    assert state["metadata"]["reason"] == {"type": "Text", "value": ""}

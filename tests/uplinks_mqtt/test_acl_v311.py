"""What MQTT.md says of an ACL refusal over MQTT 3.1.1: a PUBACK carries no code, so mosquitto acknowledges a
message its ACL denies and drops it, and the uplink counts it delivered; with `max_queued_messages 0` it then
closes the connection too, which no 3.1.1 client can tell from an outage.

Real mosquitto with an ACL file, and a subscriber that would see a message that got through.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.uplinks.api import DELIVERED
from tests.uplinks_mqtt.conftest import reading, subscribe
from tests.uplinks_mqtt.test_acl_refusals import CLOSES, KEEPS, acl_broker, lines
from tests.uplinks_mqtt.test_delivery import uplink


@pytest.mark.parametrize("conf", [KEEPS, CLOSES], ids=["keeps-connection", "closes-connection"])
async def test_over_mqtt_3_1_1_a_reading_the_acl_denies_counts_delivered_and_never_arrives(
    tmp_path: Path, context: AdapterContext, caplog: pytest.LogCaptureFixture, conf: str
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    broker, _ = acl_broker(tmp_path, "topic write edgegw/#\ntopic read /K3Y/#\n", conf)  # measures denied
    try:
        async with subscribe(broker, "/K3Y/#") as platform:
            up = uplink(broker, context, protocol="3.1.1")
            outcomes = await up.deliver([reading("gauge1", seq=1)])
            await asyncio.sleep(0.3)  # time for a message, or a drop, to come
            await up.close()
    finally:
        broker.stop()
    assert outcomes == [DELIVERED]
    assert platform.messages == []
    assert up.counters.not_authorized == 0
    if conf is CLOSES:
        assert lines(caplog) == [
            f"broker 127.0.0.1:{broker.port} unreachable, readings stay buffered: the broker closed the connection"
        ]
    else:
        assert lines(caplog) == []

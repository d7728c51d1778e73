"""The MQTT uplink counts a rejection once, when the buffer's acknowledgement settles it.

The finding (reproduced): a reading the converter refuses (UltraLight cannot carry '|') behind one
to retry in its lane (the broker down) is read and sent again at every retry: `Store.ack` stops the
cursor at the first RETRY. The uplink counted the refusal at every try, so during an outage one bad
reading raised `rejected` once per retry, with no dead letter written. Now it counts what settles:
nothing while the broker is down, 1 once the good reading ahead of it goes through. Real mosquitto.
"""

from __future__ import annotations

from gateway.adapter_api import AdapterContext
from gateway.uplinks.api import Status
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.conftest import reading
from tests.uplinks_mqtt.test_delivery import uplink


async def test_a_refusal_behind_a_retry_counts_once_when_its_lane_settles(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    up = uplink(mosquitto_private, context, format="iota-ul", connect_timeout_s=1)
    batch = [reading("g", at=0, seq=1, waterLevel=1.5), reading("g", at=1, seq=2, state="a|b")]
    mosquitto_private.stop()
    try:
        for _ in range(3):
            outcomes = await up.deliver(batch)
            assert [o.status for o in outcomes] == [Status.RETRY, Status.REJECTED]
        assert (up.counters.rejected, up.counters.retried) == (0, 3)
        mosquitto_private.start()
        outcomes = await up.deliver(batch)
        assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED]
        assert (up.counters.rejected, up.counters.retried) == (1, 3)
    finally:
        await up.close()

"""Messages for the IoT Agents are sized for the Orion request the agent makes of them (no agent here: the planner).

The bound itself is checked against the real agent code in tests/iota_agent/test_agent_request_bound.py
and against the real agents end to end in tests/iota_agent/test_agent_backlog.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.ngsi import agent_request
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.uplinks_mqtt.conftest import T0

RELAY_ID = "urn:ngsi-ld:Device:relay-board-1"


def relay_reading(seq: int) -> Reading:
    """What the Modbus adapter reports for the Waveshare relay board (D): 16 states and deviceState, 17 attributes."""
    attrs = {f"relay{n}": Attribute(value=(seq + n) % 3 == 0, type="Boolean") for n in range(1, 9)}
    attrs |= {f"input{n}": Attribute(value=(seq + n) % 2 == 0, type="Boolean") for n in range(1, 9)}
    attrs["deviceState"] = Attribute(value="ok", type="Text")
    return Reading(
        entity_id=RELAY_ID,
        entity_type="Device",
        attributes=attrs,
        observed_at=T0 + timedelta(milliseconds=50 * seq),
        source=Source(adapter="relays"),
        seq=seq,
    )


def uplink(context: AdapterContext, **overrides: Any) -> MqttUplink:
    conf = {"name": "pref-mqtt", "type": "mqtt", "host": "127.0.0.1", "apikey": "K3Y", **overrides}
    return MqttUplink(MqttUplinkConfig.model_validate(conf), context)


def request_bound(up: MqttUplink, batch: list[Reading], indices: tuple[int, ...]) -> int:
    """What the planner's own bound says the agent's request for one message is at most."""
    sizing = up._sizing
    assert sizing is not None
    total = sizing.request
    for i in indices:
        r = batch[i]
        _, body, entity = up._render(r)
        attributes = len(r.attributes) + (up._sequence is not None)
        if up.config.format.value == "iota-ul":
            total += agent_request.ul_group_bound(body, attributes, entity, sizing)
        else:
            total += agent_request.json_measure_bound(body, attributes, entity, sizing)
    return total


@pytest.mark.parametrize("fmt", ["iota-json", "iota-ul"])
def test_a_backlog_of_one_device_is_split_for_orions_limit(fmt: str, context: AdapterContext) -> None:
    # 1,400 readings of the relay board after a 70 s outage: the default 262,144-byte messages would
    # make the agent send Orion ~2 MB requests, which Orion refuses with 413 and the agent drops
    up = uplink(context, format=fmt)
    batch = [relay_reading(s) for s in range(1, 1401)]
    messages, rejected = up._plan(batch)
    assert rejected == {}
    assert all(len(m.payload) <= 262_144 for m in messages)
    assert len(messages) >= 5  # by payload bytes alone (~420 kB of measures) two would do
    for m in messages:
        assert request_bound(up, batch, m.indices) <= 1_048_576
    # nothing lost or reordered: the messages carry the batch in order
    assert [i for m in messages for i in m.indices] == list(range(1400))


def test_the_limit_is_the_uplinks_orion_max_request_bytes(context: AdapterContext) -> None:
    batch = [relay_reading(s) for s in range(1, 201)]
    default = uplink(context)._plan(batch)[0]
    small = uplink(context, orion_max_request_bytes=65_536)._plan(batch)[0]
    assert len(default) == 1
    assert len(small) > len(default)
    assert all(request_bound(uplink(context), batch, m.indices) <= 65_536 for m in small)


def test_the_usual_batch_stays_one_message_per_device(context: AdapterContext) -> None:
    batch = [relay_reading(s) for s in range(1, 31)]
    messages, _ = uplink(context)._plan(batch)
    assert [len(m.indices) for m in messages] == [30]


def test_one_reading_too_big_for_orion_is_rejected_with_the_fix(context: AdapterContext) -> None:
    big = Reading(
        entity_id="urn:ngsi-ld:Note:n1",
        entity_type="Note",
        attributes={"text": Attribute(value="川" * 2_000, type="Text")},
        observed_at=T0,
        source=Source(adapter="notes"),
        seq=7,
    )
    up = uplink(context, orion_max_request_bytes=4096)
    messages, rejected = up._plan([big, relay_reading(1)])
    assert [m.indices for m in messages] == [(1,)]
    assert rejected == {
        0: (
            "urn:ngsi-ld:Note:n1: the IoT Agent would send Orion a request of up to 6457 bytes for this one reading, "
            "over orion_max_request_bytes 4096, got one reading too large for Orion; raise orion_max_request_bytes to "
            "the Orion's -inReqPayloadMaxSize or split the reading at the source"
        )
    }


async def test_deliver_dead_letters_only_the_reading_too_big_for_orion(context: AdapterContext) -> None:
    big = Reading(
        entity_id="urn:ngsi-ld:Note:n1",
        entity_type="Note",
        attributes={"text": Attribute(value="x" * 5_000, type="Text")},
        observed_at=T0,
        source=Source(adapter="notes"),
        seq=7,
    )
    up = uplink(context, orion_max_request_bytes=4096)
    outcomes = await up.deliver([big])  # nothing to publish: no broker needed
    assert outcomes[0].status is Status.REJECTED
    assert "over orion_max_request_bytes 4096" in outcomes[0].reason


def test_ngsi_v2_envelopes_are_not_sized_for_an_agent(context: AdapterContext) -> None:
    up = uplink(context, format="ngsi-v2", apikey=None, orion_max_request_bytes=4096)
    messages, rejected = up._plan([relay_reading(s) for s in range(1, 101)])
    assert rejected == {}
    assert len(messages) == 1  # a bridge to Orion splits its own requests


json_measures = st.lists(
    st.binary(min_size=30, max_size=400).map(lambda b: b.replace(b"+", b"")), min_size=1, max_size=40
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.sampled_from(["json", "ul"])), min_size=1, max_size=60),
    st.integers(0, 400),
    st.integers(0, 300),
    st.integers(0, 200),
)
def test_the_coarse_bound_never_undercuts_the_precise_one(
    shape: list[tuple[int, str]], entity: int, attribute_allowance: int, entity_allowance: int
) -> None:
    # measures of k attributes at their smallest (`"a":0,` / `|a|0`): the coarse bound, from byte totals
    # only, must still be at least the sum of the per-measure bounds, or the planner would skip a split
    sizing = agent_request.sizing(
        limit=1_048_576, attribute_allowance=attribute_allowance, entity_allowance=entity_allowance
    )
    for fmt in ("json", "ul"):
        bodies = []
        for k, _ in shape:
            if fmt == "json":
                body = b"{" + b",".join(b'"a":0' for _ in range(k)) + b',"TimeInstant":"2024-06-01T03:00:00.000Z"}'
            else:
                body = b"2024-06-01T03:00:00.000Z" + b"|a|0" * k
            bodies.append((body, k))
        precise = sizing.request + sum(
            (
                agent_request.ul_group_bound(b, k, entity, sizing)
                if fmt == "ul"
                else agent_request.json_measure_bound(b, k, entity, sizing)
            )
            for b, k in bodies
        )
        coarse = agent_request.coarse_bound(
            sum(len(b) for b, _ in bodies), len(bodies), entity * len(bodies), sizing, ul=fmt == "ul"
        )
        assert coarse >= precise

"""The planner's model of the IoT Agents, checked against their own code (in-process Node, tests/support/javascript.py).

Two properties over generated readings: the UltraLight check refuses exactly the texts JavaScript's
JSON.parse takes, and the bound of what iotagent-node-lib makes of a message is an upper bound of
the exact request the library builds, and a close one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi import agent_request, iota
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.support.javascript import AgentOracle
from tests.uplinks_mqtt.conftest import T0

CONTEXT = AdapterContext(gateway_id="gw-kumamoto-01", data_dir="/nonexistent")
# per float, the room the bound keeps for JavaScript printing it longer (16 for an `e+` exponent) plus
# what JavaScript prints shorter (`1.0000000000000002e+16` as 17 digits: 5, `-0.0` as `0`: 3)
FLOAT_SLACK = agent_request.EXPONENT_GROWTH + 8

json_like = st.one_of(
    st.text(alphabet=' \t\n\r{}[]",:.-+eE0123456789tfnrulasNIity', max_size=12),
    st.from_regex(r"\A\s*-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?\s*\Z"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "true", "false", "null", "\ufeff1", "1\u00a0", '"a\\u0041"']),
    st.text(max_size=20),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_is_json_text_agrees_with_javascript_json_parse(agent_oracle: AgentOracle, text: str) -> None:
    assert iota.is_json_text(text) == agent_oracle.json_parses(text), text


names = st.from_regex(r"\A[a-z][A-Za-z0-9_]{0,30}\Z").filter(lambda n: n not in ("id", "type"))
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e15, max_value=1e22),
    st.floats(min_value=1e-8, max_value=1e-4),
    st.integers(min_value=-(2**53), max_value=2**53),
)
texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)  # no lone surrogates
values = st.one_of(numbers, st.booleans(), texts)


@st.composite
def readings(draw: Any) -> list[Reading]:
    count = draw(st.integers(1, 4))
    attributes = draw(st.dictionaries(names, values, min_size=1, max_size=6))
    out = []
    for n in range(count):
        attrs = {k: Attribute(value=v) for k, v in attributes.items()}
        out.append(
            Reading(
                entity_id="urn:ngsi-ld:Thing:t1",
                entity_type="Thing",
                attributes=attrs,
                observed_at=T0 + timedelta(seconds=n),
                source=Source(adapter="a"),
                seq=100 + n,
            )
        )
    return out


def exact_and_bound(oracle: AgentOracle, fmt: str, batch: list[Reading]) -> tuple[int, int, str] | None:
    conf = {
        "name": "u",
        "type": "mqtt",
        "host": "127.0.0.1",
        "apikey": "K",
        "format": fmt,
        "sequence_attribute": "edgegwSeq",
        "agent_attribute_bytes": 0,
        "agent_entity_bytes": 0,
    }
    up = MqttUplink(MqttUplinkConfig.model_validate(conf), CONTEXT)
    messages, rejected = up._plan(batch)
    if rejected:
        return None
    assert len(messages) == 1
    message = messages[0]
    # every attribute provisioned with the longest type the bound allows for, so it is met exactly
    types = dict.fromkeys([*batch[0].attributes, "edgegwSeq"], "TextUnrestricted")
    url, body = oracle.agent_request(
        "ul" if fmt == "iota-ul" else "json",
        message.payload.decode(),
        entity_name="urn:ngsi-ld:Thing:t1",
        entity_type="Thing",
        types=types,
    )
    sizing = up._sizing
    assert sizing is not None
    bound = sizing.request
    for i in message.indices:
        _, part, entity = up._render(batch[i])
        attrs = len(batch[i].attributes) + 1
        bound += (
            agent_request.ul_group_bound(part, attrs, entity, sizing)
            if fmt == "iota-ul"
            else agent_request.json_measure_bound(part, attrs, entity, sizing)
        )
    return len(body), bound, url


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["iota-json", "iota-ul"]), readings())
def test_the_bound_is_an_upper_bound_of_the_librarys_request(
    agent_oracle: AgentOracle, fmt: str, batch: list[Reading]
) -> None:
    try:
        found = exact_and_bound(agent_oracle, fmt, batch)
    except ReadingError:
        found = None
    assume(found is not None)
    assert found is not None
    exact, bound, url = found
    assert exact <= bound, (exact, bound, [r.attributes for r in batch])
    # and close: what it adds beyond the exact request is the small-exponent room per attribute, the
    # quotes an UltraLight number does not get, the batch framing of a single-measure request, the
    # escapes it counts at their longest, and per float the room for JavaScript printing it otherwise
    # (`-0.0` as `0`, `1e+16` as 17 digits, `1.0000000000000002e+16` shorter)
    values = [a.value for r in batch for a in r.attributes.values()]
    slack = (len(values) + len(batch)) * (agent_request.SMALL_EXPONENT_GROWTH + (2 if fmt == "iota-ul" else 0))
    slack += sum(FLOAT_SLACK for v in values if type(v) is float)
    slack += agent_request.ESCAPE_GROWTH * sum(1 for v in values for c in str(v) if c < " " or c in '"\\')
    slack += agent_request.REQUEST + 1
    assert bound - exact <= slack, (exact, bound, url)

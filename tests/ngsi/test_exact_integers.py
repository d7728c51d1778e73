"""An integer beyond ±2^53 is refused with the fix, never sent to arrive as another number.

The IoT Agents `JSON.parse` every measure (iotagent-json's parseMessage; JavaScript numbers are
doubles), and Orion holds a Number as a C double (ContextAttribute::numberValue, read with rapidjson's
GetDouble), so 9007199254740993 arrives as 9007199254740992. The UltraLight path already refused such
values; the iotagent-json path and check_reading (every uplink) now do too, saying to send the digits
as Text. Up to ±2^53 every integer is a double exactly, and arrives as sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi import iota
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.records import Attribute, Reading, Source, TimeSource
from gateway.uplinks.api import Status
from tests.iota_agent.conftest import APIKEY, make_uplink, wait_for
from tests.support.iot_agent import JSON, StartAgent
from tests.support.javascript import AgentOracle
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.support.orion_rules import validate_v2_update

METER = "urn:ngsi-ld:Device:meter-1"
T0 = datetime(2024, 7, 1, tzinfo=UTC)
LIMIT = 2**53
JSON_FIX = "send it as Text (the digits as a string), or scale it at the source"
CHECK_FIX = "declare the attribute Text and send the digits as a string, or scale it at the source"
V2_HEADERS = {"Content-Type": "application/json", "Fiware-Service": "kumamoto", "Fiware-ServicePath": "/river"}


def meter(value: Any, *, atype: str = "Number", metadata: dict[str, Any] | None = None, seq: int = 1) -> Reading:
    return Reading(
        entity_id=METER,
        entity_type="Device",
        attributes={"energyTotal": Attribute(value=value, type=atype, metadata=metadata or {})},
        observed_at=T0,
        time_source=TimeSource.DEVICE,
        source=Source(adapter="sim"),
        seq=seq,
    )


# ------------------------------------------------------------------------------- iotagent-json path


@pytest.mark.parametrize("encoding", list(ValueEncoding))
@pytest.mark.parametrize(
    ("value", "atype", "shown"),
    [
        (LIMIT + 1, "Number", "9007199254740993"),
        (-LIMIT - 1, "Number", "-9007199254740993"),
        (2**63 - 1, "Number", "9223372036854775807"),
        ([1.5, LIMIT + 1], "StructuredValue", "9007199254740993"),  # a flat list: the fast path
        ({"total": {"kwh": [LIMIT + 1]}}, "StructuredValue", "9007199254740993"),  # nested: the full path
        ([LIMIT + 1, "50%"], "StructuredValue", "9007199254740993"),  # a text to encode beside it
    ],
)
def test_the_json_measure_refuses_an_integer_javascript_would_change(
    value: Any, atype: str, shown: str, encoding: ValueEncoding
) -> None:
    with pytest.raises(ReadingError) as err:
        iota.json_measure_bytes(meter(value, atype=atype), encoding=encoding)
    assert str(err.value) == (
        f"{METER}.energyTotal: the IoT Agent reads numbers as JavaScript doubles, exact only up to ±2^53,"
        f" got {shown}; {JSON_FIX}"
    )


integers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.integers(LIMIT - 3, LIMIT + 3),
    st.integers(-LIMIT - 3, -LIMIT + 3),
)
values = st.one_of(integers, st.lists(integers, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), integers))


def flat(value: Any) -> list[int]:
    return value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_what_the_json_measure_sends_the_real_agent_library_writes_to_orion_unchanged(
    agent_oracle: AgentOracle, value: Any
) -> None:
    """The agent's own parser and iotagent-node-lib (in Node) make the Orion request: same value, or refused."""
    r = meter(value, atype="StructuredValue" if isinstance(value, (list, dict)) else "Number")
    if any(abs(v) > LIMIT for v in flat(value)):
        with pytest.raises(ReadingError, match=r"exact only up to ±2\^53|64-bit"):
            iota.json_measure_bytes(r)
        return
    payload = iota.json_measure_bytes(r)
    _, body = agent_oracle.agent_request(
        "json",
        payload.decode(),
        entity_name=METER,
        entity_type="Device",
        types={"energyTotal": r.attributes["energyTotal"].type},
    )
    assert orjson.loads(body)["energyTotal"]["value"] == value


@pytest.mark.e2e
async def test_the_real_json_agent_writes_every_delivered_integer_exactly(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, tmp_path: Path
) -> None:
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_group(
        APIKEY,
        entity_type="Device",
        entityNameExp="id",
        attributes=[{"object_id": "energyTotal", "name": "energyTotal", "type": "Number"}],
    )
    up = make_uplink(mosquitto_private, AdapterContext(gateway_id="gw-1", data_dir=str(tmp_path)))
    sent = [LIMIT, LIMIT + 1, -LIMIT]
    try:
        outcomes = await up.deliver([meter(v, seq=i) for i, v in enumerate(sent, start=1)])
        await wait_for(lambda: len(orion_double.written) >= 2, 15, "the agent to write the measures")
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
    assert outcomes[1].reason.endswith(f"exact only up to ±2^53, got 9007199254740993; {JSON_FIX}")
    assert [e["energyTotal"]["value"] for e in orion_double.written] == [LIMIT, -LIMIT]


# ------------------------------------------------------------------------------------ check_reading


@pytest.mark.parametrize("encoding", list(ValueEncoding))
@pytest.mark.parametrize(
    ("reading", "where"),
    [
        (meter(LIMIT + 1), "energyTotal"),
        (meter(-LIMIT - 1), "energyTotal"),
        (meter(LIMIT + 1, atype=""), "energyTotal"),  # untyped: Orion's default Number
        (meter([0, LIMIT + 1], atype="StructuredValue"), "energyTotal"),
        (meter(1.5, metadata={"raw": LIMIT + 1}), "energyTotal.metadata.raw"),
        (meter(1.5, metadata={"raw": {"type": "Number", "value": LIMIT + 1}}), "energyTotal.metadata.raw"),
    ],
)
def test_check_reading_refuses_an_integer_orion_would_change_and_says_to_send_text(
    reading: Reading, where: str, encoding: ValueEncoding
) -> None:
    # nested in a value or a metadata the message names the integer, beside the whole value
    pattern = (
        rf"{re.escape(METER)}\.{re.escape(where)}: integer (-?9007199254740993 )?is beyond ±2\^53, which Orion and"
        rf" the IoT Agents hold as a double \(it would arrive as another number\), got .+; {re.escape(CHECK_FIX)}"
    )
    with pytest.raises(ReadingError, match=f"^{pattern}$"):
        ReadingChecker().check(reading, encoding=encoding)


def test_after_a_good_reading_the_same_attribute_still_refuses_a_changed_integer() -> None:
    checker = ReadingChecker()
    checker.check(meter(LIMIT), encoding=ValueEncoding.PERCENT)  # the fast path, warmed
    with pytest.raises(ReadingError, match=r"beyond ±2\^53.*got 9007199254740993;"):
        checker.check(meter(LIMIT + 1), encoding=ValueEncoding.PERCENT)
    # as text the digits are kept, and Orion takes them
    text = meter(str(LIMIT + 1), atype="Text")
    checker.check(text, encoding=ValueEncoding.PERCENT)
    body = v2_update_body([orjson.dumps(to_v2_entity(text, encoding=ValueEncoding.PERCENT))])
    assert validate_v2_update({**V2_HEADERS, "Content-Length": str(len(body))}, body) == (204, None)
    assert orjson.loads(body)["entities"][0]["energyTotal"]["value"] == "9007199254740993"


@given(value=values)
def test_check_reading_accepts_an_integer_exactly_when_a_double_holds_it(value: Any) -> None:
    r = meter(value, atype="StructuredValue" if isinstance(value, (list, dict)) else "Number")
    try:
        ReadingChecker().check(r, encoding=ValueEncoding.PERCENT)
    except ReadingError:
        assert any(abs(v) > LIMIT for v in flat(value))
    else:
        assert all(float(v) == v for v in flat(value))

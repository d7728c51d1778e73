"""Both JSON adapters map one JSON object alike: the same values, times, nulls and messages past their `<where>`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.http_poll.config import ItemMapping
from adapters.http_poll.mapping import Mapper as HttpMapper
from adapters.mqtt.config import Subscription
from adapters.mqtt.mapping import Mapper as MqttMapper
from adapters.mqtt.mapping import MappingError as MqttError

NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
COMMON: dict[str, Any] = {
    "entity_type": "WaterObserved",
    "null_values": ["欠測", "--"],
    "timestamp": {"path": "観測時刻", "format": "local"},
    "attributes": [
        {"path": "水位", "name": "waterLevel", "unit": "MTR"},
        {"path": "変化量_cm", "name": "waterLevelChange", "unit": "MTR", "scale": 0.01, "missing": "skip"},
        {"path": "観測所.名称", "name": "name", "type": "Text", "missing": "skip"},
        {"path": "氾濫", "name": "flooded", "type": "Boolean", "missing": "skip"},
    ],
}
MQTT = MqttMapper(
    [
        Subscription.model_validate(
            {**COMMON, "topic": "river/+", "entity_id": "urn:ngsi-ld:WaterObserved:{payload.code}"}
        )
    ],
    adapter="m",
)
HTTP = HttpMapper(
    [ItemMapping.model_validate({**COMMON, "entity_id": "urn:ngsi-ld:WaterObserved:{code}"})], adapter="h"
)
VALUE = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(-1e6, 1e6)
    | st.sampled_from(["2.35", "-7", "欠測", "--", "high", "", "２３"])
)
TIME = st.sampled_from(
    ["2026/07/01 09:10", "2026年7月1日 9時10分", "2026/06/30 24:00", "1970/01/01 09:00", "欠測", "x"]
)


@settings(max_examples=300, deadline=None)
@given(level=VALUE, change=VALUE, name=st.none() | st.sampled_from(["人吉", 860101, True]), flooded=VALUE, time=TIME)
def test_the_same_object_maps_alike_in_both_adapters(
    level: Any, change: Any, name: Any, flooded: Any, time: Any
) -> None:
    item = {
        "code": "0431",
        "水位": level,
        "変化量_cm": change,
        "観測所": {"名称": name},
        "氾濫": flooded,
        "観測時刻": time,
    }
    body = json.dumps(item, ensure_ascii=False).encode()
    http = HTTP.map(body, NOW)
    try:
        (m,) = MQTT.map("river/kuma", body, NOW)
    except MqttError as exc:
        (h_err,) = http.errors
        assert exc.reason.value == h_err.reason.value  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        # the same problem, in each adapter's frame: "<topic>: payload.<path> (...) <what>" / "<path> (...): <what>";
        # what "arrival" stamps is each adapter's own word
        mqtt_view = str(exc).replace("river/kuma: payload.", "").replace("river/kuma: ", "")
        http_view = str(h_err).replace("):", ")", 1).replace("the poll time", "the arrival time")
        assert mqtt_view == http_view
        return
    (h,) = http.readings
    assert {n: (a.value, a.type, a.unit) for n, a in m.attributes.items()} == {
        n: (a.value, a.type, a.unit) for n, a in h.attributes.items()
    }
    assert (m.entity_id, m.observed_at, m.time_source) == (h.entity_id, h.observed_at, h.time_source)

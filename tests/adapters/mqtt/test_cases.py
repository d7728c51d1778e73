"""Regression cases kept as data: each message of cases/<name>/ maps exactly to expected.json."""

from __future__ import annotations

import pytest

from adapters.mqtt.mapping import Mapper, MappingError
from tests.adapters.mqtt.casefiles import case_names, load_case, reading_json


def test_the_cases_are_all_there() -> None:
    assert case_names() == [
        "chirpstack_v4_uplink",
        "epoch_ms_scaled_level",
        "malformed_payload_personal_data",
        "tasmota_sensor",
        "zigbee2mqtt_state",
    ]


@pytest.mark.parametrize("name", case_names())
def test_case_maps_exactly(name: str) -> None:
    case = load_case(name)
    mapper = Mapper(case.config.subscriptions, adapter=case.config.name)
    for i, (msg, want) in enumerate(zip(case.messages, case.expected, strict=True)):
        if "error" in want:
            with pytest.raises(MappingError) as info:
                mapper.map(msg.topic, msg.payload, msg.now)
            assert (info.value.reason.value, str(info.value)) == (want["error"], want["message"]), f"message {i}"
        else:
            got = [reading_json(r) for r in mapper.map(msg.topic, msg.payload, msg.now)]
            assert got == want["readings"], f"message {i}"

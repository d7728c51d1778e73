"""The uplink's pre-packed PUBLISH properties are byte for byte what paho's Properties.pack() gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.uplinks.mqtt.planning import packed_publish_properties

text = st.text(max_size=300)  # the default alphabet has no lone surrogates


@settings(max_examples=200)
@given(st.sampled_from(["application/json", "text/plain"]), st.lists(st.tuples(text, text), min_size=1, max_size=3))
def test_packed_properties_equal_pahos(content_type: str, user: list[tuple[str, str]]) -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = user
    props.ContentType = content_type
    assert packed_publish_properties(content_type, user) == props.pack()  # type: ignore[no-untyped-call]


def test_a_long_seq_list_packs_the_same() -> None:
    ranges = ",".join(str(n) for n in range(0, 20_000, 2))[:60_000]  # one MQTT string holds at most 64 KiB
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [("gateway", "gw-01"), ("seq", ranges)]
    props.ContentType = "application/json"
    assert packed_publish_properties("application/json", [("gateway", "gw-01"), ("seq", ranges)]) == props.pack()  # type: ignore[no-untyped-call]

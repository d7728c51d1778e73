"""The uplink's pre-packed PUBLISH properties are byte for byte what paho's Properties.pack() gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.packets import publish_properties
from gateway.uplinks.mqtt.planning import PropertyPacker

text = st.text(max_size=300)  # the default alphabet has no lone surrogates
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain"])


def pahos(content_type: str, user: list[tuple[str, str]]) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = user
    props.ContentType = content_type
    return props.pack()  # type: ignore[no-untyped-call,no-any-return]


@settings(max_examples=200)
@given(CONTENT_TYPES, st.lists(st.tuples(text, text), min_size=1, max_size=3))
def test_packed_properties_equal_pahos(content_type: str, user: list[tuple[str, str]]) -> None:
    assert publish_properties(content_type=content_type, user=tuple(user)) == pahos(content_type, user)


@settings(max_examples=200)
@given(CONTENT_TYPES, text, st.text(alphabet="0123456789-,", max_size=200))
def test_the_uplinks_packer_equals_pahos(content_type: str, gateway_id: str, seq: str) -> None:
    """Packed once, the gateway's part; per message, the seqs (none: no `seq` property at all)."""
    packer = PropertyPacker(content_type, gateway_id)
    for _ in range(2):  # the second message reuses the packed head
        expected = [("gateway", gateway_id), ("seq", seq)] if seq else [("gateway", gateway_id)]
        assert packer.pack(seq) == pahos(content_type, expected)


def test_a_long_seq_list_packs_the_same() -> None:
    ranges = ",".join(str(n) for n in range(0, 20_000, 2))[:60_000]  # one MQTT string holds at most 64 KiB
    packer = PropertyPacker("application/json", "gw-01")
    assert packer.pack(ranges) == pahos("application/json", [("gateway", "gw-01"), ("seq", ranges)])

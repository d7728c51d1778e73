"""A broker host name that does not resolve is said so, in the resolver's words, not as "Unknown error -2"."""

from __future__ import annotations

import socket

import pytest

from gateway.mqtt.client import ClientSettings, ConnectFailed, MqttClient

# RFC 6761: names under .invalid never resolve
UNRESOLVABLE = "mqtt.city.example.invalid"


def resolver_says(host: str) -> str:
    """What the system resolver answers for the host: the oracle for the client's reason."""
    try:
        socket.getaddrinfo(host, 1883)
    except socket.gaierror as exc:
        return str(exc.strerror)
    raise AssertionError(f"{host} resolved")


async def test_a_host_that_does_not_resolve_is_named_with_the_resolvers_reason() -> None:
    client = MqttClient(ClientSettings(host=UNRESOLVABLE, port=1883, client_id="t-dns", connect_timeout_s=5))
    with pytest.raises(ConnectFailed) as info:
        await client.connect()
    assert info.value.reason == f"cannot resolve host {UNRESOLVABLE}: {resolver_says(UNRESOLVABLE)}"
    assert "Unknown error" not in info.value.reason

"""`host` is a host name or an IP address: never a URL, credentials or a port, and the error never shows it.

The review's finding: host = "mqtt://user:password@broker" was taken, and the password then appeared in
clear in the uplink's WARNING and last_error (gateway/secrets.py: no URL may carry credentials).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.uplinks.mqtt import MqttUplinkConfig

NOT_SHOWN = "got a value that is not shown here"
PLAIN = "write the host name or IP address alone (mqtt.example.jp, 192.0.2.10, 2001:db8::1)"
PORT = "the port goes in the port key"
CREDENTIALS = 'the user name goes in username and the password in the secret store (password = "secret:<name>")'


def refusal(host: str) -> list[str]:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw1"},
        "uplinks": [{"name": "u", "type": "mqtt", "host": host, "apikey": "K"}],
    }
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    return exc.value.errors


@pytest.mark.parametrize(
    ("host", "error"),
    [
        (
            "mqtt://gw-01:S3cretPw@broker.example.jp:1883",
            f"must be a host name or IP address alone, found a URL scheme, credentials and a port in it, {NOT_SHOWN}; "
            f"{PLAIN}; {PORT}; {CREDENTIALS}",
        ),
        (
            "gw-01:S3cretPw@broker.example.jp",
            f"must be a host name or IP address alone, found credentials in it, {NOT_SHOWN}; {PLAIN}; {CREDENTIALS}",
        ),
        (
            "mqtts://broker.example.jp",
            f"must be a host name or IP address alone, found a URL scheme in it, {NOT_SHOWN}; {PLAIN}",
        ),
        (
            "broker.example.jp:8883",
            f"must be a host name or IP address alone, found a port in it, {NOT_SHOWN}; {PLAIN}; {PORT}",
        ),
        (
            "[2001:db8::1]:8883",
            f"must be a host name or IP address alone, found a port in it, {NOT_SHOWN}; {PLAIN}; {PORT}",
        ),
        ("broker example", f"must be a host name or IP address alone, found spaces in it, {NOT_SHOWN}; {PLAIN}"),
        ("broker/mqtt", f"must be a host name or IP address alone, found a path in it, {NOT_SHOWN}; {PLAIN}"),
        (
            "ブローカー.example.jp",
            "must be a host name (letters, digits, '-', '_' and '.', labels of at most 63 characters) or an IP "
            f"address (IPv6 bare or in brackets), {NOT_SHOWN}; an internationalized name goes in its xn-- (punycode) "
            "form",
        ),
    ],
)
def test_a_host_that_is_not_a_host_is_refused_without_showing_it(host: str, error: str) -> None:
    assert refusal(host) == [f"uplinks[0].host: {error}"]


def test_host_names_and_addresses_are_taken_ipv6_in_brackets_given_back_bare() -> None:
    def host(value: str) -> str:
        return MqttUplinkConfig.model_validate({"name": "u", "type": "mqtt", "host": value, "apikey": "K"}).host

    assert [host(h) for h in ("mqtt.city.example.jp", "broker_1", "192.0.2.10", "2001:db8::1", "[2001:db8::1]")] == [
        "mqtt.city.example.jp",
        "broker_1",
        "192.0.2.10",
        "2001:db8::1",
        "2001:db8::1",  # the resolver takes it bare; the brackets are URL syntax
    ]


secrets = st.text(alphabet=st.characters(codec="utf-8"), min_size=6, max_size=30).filter(
    lambda s: s.strip() == s and "@" not in s
)


@given(
    scheme=st.sampled_from(["", "mqtt://", "mqtts://", "tcp://"]),
    user=st.sampled_from(["", "gw-01:", "gw@city:"]),
    password=secrets,
    port=st.sampled_from(["", ":1883"]),
)
def test_the_password_never_shows_in_the_error(scheme: str, user: str, password: str, port: str) -> None:
    [line] = refusal(f"{scheme}{user}{password}@broker.example.jp{port}")
    # a password that is a word of the message itself ("userna" in "username") shows nothing
    [fixed] = refusal(f"{scheme}{user}{'Q' * len(password)}@broker.example.jp{port}")
    assume(password not in fixed)
    assert password not in line
    assert line.startswith("uplinks[0].host: must be a host name or IP address alone, found ")


labels = st.from_regex(r"[a-z0-9_]([a-z0-9_-]{0,20}[a-z0-9_])?", fullmatch=True)
names = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(lambda n: not n.rpartition(".")[2].isdigit())


def host_of(value: str) -> str:
    return MqttUplinkConfig.model_validate({"name": "u", "type": "mqtt", "host": value, "apikey": "K"}).host


@given(name=names, port=st.integers(1, 65_535))
def test_a_name_is_taken_as_written_and_with_a_port_refused(name: str, port: int) -> None:
    assert host_of(name) == name
    assert refusal(f"{name}:{port}") == [
        f"uplinks[0].host: must be a host name or IP address alone, found a port in it, {NOT_SHOWN}; {PLAIN}; {PORT}"
    ]


@given(address=st.ip_addresses())
def test_an_address_is_taken_and_an_ipv6_one_in_brackets_given_back_bare(address: Any) -> None:
    assert host_of(str(address)) == str(address)
    if address.version == 6:
        assert host_of(f"[{address}]") == str(address)
    else:
        assert refusal(f"{address}:1883")[0].startswith("uplinks[0].host: must be a host name or IP address alone")

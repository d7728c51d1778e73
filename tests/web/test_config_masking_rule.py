"""What the config editor hides (values that could be credentials, not every key with "token" in its name) and
how a masked value finds its element again: by its name, else by all its other keys, never by position."""

from __future__ import annotations

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.web.viewmodels.configtext import MASKED, is_secret_key, mask, unmask

HIDDEN = f'"{MASKED}"'

RUNNING = """\
[gateway]
id = "gw-1"

[[uplinks]]
name = "city"
type = "orion"
url = "https://orion.city.example.jp"
token_url = "https://idp.city.example.jp/oauth2/token"
[uplinks.oauth2]
token_url = "https://idp.city.example.jp/oauth2/token"
client_id = "city-gw"
client_secret = "secret:city-oauth2"
[uplinks.tls]
cert_file = "/etc/edgegw/client.pem"
key_file = "/etc/edgegw/client.key"

[[uplinks]]
name = "agent"
type = "mqtt"
host = "broker.example.jp"
apikey = "k-4f1c9e2a7b"
broker_url = "mqtts://gw:hunter2@broker.example.jp:8883"
status_url = "https://status.example.jp/ping?api_key=abc123"
headers = { Authorization = "Bearer abc.def", "Fiware-Service" = "river", "X-Api-Key" = "xk-1" }
password = \"\"\"pw-in-triple-quotes\"\"\"
private_key = \"\"\"
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7
-----END PRIVATE KEY-----
\"\"\"  # inline, for the example
public_key = "ed25519:AAAA"
"""


def test_a_url_a_file_and_a_reference_are_shown_credentials_are_not() -> None:
    masked = mask(RUNNING)
    lines = masked.splitlines()
    for shown in (
        'token_url = "https://idp.city.example.jp/oauth2/token"',
        'client_secret = "secret:city-oauth2"',
        'cert_file = "/etc/edgegw/client.pem"',
        'key_file = "/etc/edgegw/client.key"',
        'public_key = "ed25519:AAAA"',
    ):
        assert shown in lines
    assert lines.count('token_url = "https://idp.city.example.jp/oauth2/token"') == 2
    for hidden in ("apikey", "broker_url", "status_url", "password", "private_key"):
        assert f"{hidden} = {HIDDEN}" in lines, hidden
    assert f'headers = {{ Authorization = {HIDDEN}, "Fiware-Service" = "river", "X-Api-Key" = {HIDDEN} }}' in lines
    for secret in ("k-4f1c9e2a7b", "hunter2", "abc123", "abc.def", "xk-1", "pw-in-triple", "MIIEvQ", "BEGIN"):
        assert secret not in masked, secret
    assert masked.count("\n") == RUNNING.count("\n")  # the lines stay where they were: errors name their lines
    assert "  # inline, for the example" in masked
    # and nothing edited, everything comes back as it was
    assert unmask(masked, RUNNING) == RUNNING


# a key is named after what it holds, its last word saying what: a URL, a file, a secret
KEYS = {
    "token_url": False,
    "key_file": False,
    "cert_file": False,
    "password_file": False,
    "key": False,  # kintone's upsert key: a field value template
    "public_key": False,
    "key_id": False,
    "tokens_per_s": False,
    "clientSecret": True,
    "X-Auth-Token": True,
    "api_keys": True,
    "private_key": True,
    "Cookie": True,
    "password": True,
}


def test_a_key_is_secret_by_what_its_last_word_names() -> None:
    assert {key: is_secret_key(key) for key in KEYS} == KEYS


def test_the_secrets_come_back_in_their_element_when_uplinks_are_reordered() -> None:
    shown = mask(RUNNING)
    first = shown[shown.index("[[uplinks]]") : shown.index('[[uplinks]]\nname = "agent"')]
    second = shown[shown.index('[[uplinks]]\nname = "agent"') :]
    reordered = shown.replace(first + second, second + "\n" + first)
    doc = tomllib.loads(unmask(reordered, RUNNING))
    assert [u["name"] for u in doc["uplinks"]] == ["agent", "city"]
    assert doc["uplinks"][0]["apikey"] == "k-4f1c9e2a7b"
    assert doc["uplinks"][0]["private_key"].startswith("-----BEGIN PRIVATE KEY-----\nMIIEvQ")
    assert doc["uplinks"][0]["headers"]["Authorization"] == "Bearer abc.def"
    assert "apikey" not in doc["uplinks"][1]


PROCESSING = """\
[[processing]]
type = "forward"
url = "https://a.example.jp"
api_key = "key-of-a"

[[processing]]
type = "forward"
url = "https://b.example.jp"
api_key = "key-of-b"
"""


def test_unnamed_entries_are_known_by_their_other_keys() -> None:
    shown = mask(PROCESSING)
    a, b = shown.split("\n\n")
    swapped = unmask(b + "\n\n" + a + "\n", PROCESSING)
    assert tomllib.loads(swapped)["processing"] == [
        {"type": "forward", "url": "https://b.example.jp", "api_key": "key-of-b"},
        {"type": "forward", "url": "https://a.example.jp", "api_key": "key-of-a"},
    ]
    # an entry whose other keys changed is no longer known: its placeholder stays, to be typed again
    moved = unmask(shown.replace("https://b.example.jp", "https://c.example.jp"), PROCESSING)
    assert tomllib.loads(moved)["processing"][1]["api_key"] == MASKED
    assert tomllib.loads(moved)["processing"][0]["api_key"] == "key-of-a"


def test_lost_values_are_named_by_their_key_paths() -> None:
    from gateway.web.viewmodels.configtext import restore

    edited = mask(RUNNING).replace('name = "agent"\ntype = "mqtt"', 'name = "agent-2"\ntype = "mqtt-x"')
    restored = restore(edited, RUNNING)
    assert restored.lost == (
        "uplinks[1].apikey",
        "uplinks[1].broker_url",
        "uplinks[1].status_url",
        "uplinks[1].headers.Authorization",
        "uplinks[1].headers.X-Api-Key",
        "uplinks[1].password",
        "uplinks[1].private_key",
    )
    assert "k-4f1c9e2a7b" not in restored.text and "hunter2" not in restored.text
    # a renamed element whose other keys are all as they were is the same element
    renamed = restore(mask(RUNNING).replace('name = "agent"', 'name = "agent-2"'), RUNNING)
    assert renamed.lost == ()
    assert renamed.text == RUNNING.replace('name = "agent"', 'name = "agent-2"')


def _uplink(name: str, host: str, apikey: str) -> str:
    return f'[[uplinks]]\nname = "{name}"\ntype = "mqtt"\nhost = "{host}"\napikey = "{apikey}"\n'


@st.composite
def _edits(draw: st.DrawFn) -> tuple[list[int], set[int]]:
    """Which running uplinks the edited text keeps, in which order, and which of those are renamed and moved."""
    n = draw(st.integers(min_value=1, max_value=6))
    kept = draw(st.permutations(list(range(n))).flatmap(lambda p: st.sampled_from([p[:k] for k in range(len(p) + 1)])))
    changed = draw(st.sets(st.sampled_from(kept))) if kept else set()
    return [n, *kept], changed


@settings(max_examples=300, deadline=None)
@given(_edits())
def test_a_restored_apikey_is_always_its_own_elements(edit: tuple[list[int], set[int]]) -> None:
    (n, *kept), changed = edit
    running = '[gateway]\nid = "gw"\n\n' + "\n".join(_uplink(f"u{i}", f"h{i}", f"key-{i}") for i in range(n))
    shown = mask(running)
    blocks = {i: _uplink(f"u{i}", f"h{i}", MASKED) for i in range(n)}
    assert all(block in shown for block in blocks.values())
    edited = '[gateway]\nid = "gw"\n\n' + "\n".join(
        _uplink(f"v{i}", f"moved-{i}", MASKED) if i in changed else blocks[i] for i in kept
    )
    uplinks = tomllib.loads(unmask(edited, running)).get("uplinks", [])
    for i, uplink in zip(kept, uplinks, strict=True):
        assert uplink["apikey"] == (MASKED if i in changed else f"key-{i}")

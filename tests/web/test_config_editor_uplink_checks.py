"""The config editor refuses what `edgegw check-config` refuses of the uplinks, each error on its own line.

The checks of review cfgfix (an uplink's own `value_encoding = "reject"`, credentials over plain http) run in
`parse_config`, which the editor's validation (gateway.control.ops_config.parse_text) shares: this holds it so.
"""

from __future__ import annotations

import pytest

from gateway.control.ops_config import clear_secrets, parse_text
from gateway.errors import ConfigError
from gateway.web.viewmodels.configtext import problems

TEXT = """\
[gateway]
id = "gw-001"

[[uplinks]]
name = "orion"
type = "orion"
url = "http://orion.example.jp:1026"
x_auth_token = "secret:orion_token"
value_encoding = "reject"

[uplinks.oauth2]
token_url = "http://idm.example.jp/oauth2/token"
client_id = "gw-001"
client_secret = "secret:idm"
"""


def test_each_new_error_is_shown_at_the_line_that_sets_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_text(TEXT)
    found = problems(info.value.errors, TEXT)
    assert [(p.path, p.line, p.source) for p in found] == [
        ("uplinks[0].url", 7, 'url = "http://orion.example.jp:1026"'),
        ("uplinks[0].oauth2.token_url", 12, 'token_url = "http://idm.example.jp/oauth2/token"'),
        ("uplinks[0].value_encoding", 9, 'value_encoding = "reject"'),
    ]
    assert [p.message.partition(", got ")[0] for p in found] == [
        "must be an https:// URL unless its host is this box (127.0.0.1, ::1, localhost): credentials go with every "
        "request (the oauth2 access token, x_auth_token)",
        "must be an https:// URL unless its host is this box (127.0.0.1, ::1, localhost): the client secret and the "
        "access tokens go over it (RFC 6749 §3.2 requires TLS)",
        "must not be stricter than [ngsi] value_encoding",
    ]


def test_the_refusals_are_not_taken_for_a_secret_in_clear() -> None:
    # the editor keeps a refused text's comment only when it names no secret in clear: these name none
    assert clear_secrets(TEXT) == []


def test_the_fixes_the_messages_give_are_accepted() -> None:
    fixed = TEXT.replace('value_encoding = "reject"\n', "allow_insecure_http = true\n")
    parse_text(fixed)
    parse_text(
        TEXT.replace("http://", "https://").replace("[[uplinks]]", '[ngsi]\nvalue_encoding = "reject"\n\n[[uplinks]]')
    )

"""The config editor accepts what `edgegw check-config` only warns of in the uplinks.

The checks of review cfgfix (an uplink's own `value_encoding = "reject"`, credentials over plain http) were
errors in `parse_config`, which the editor's validation (gateway.control.ops_config.parse_text) shares: a box
upgraded with such a config could not even be fixed in the UI. They are warnings now (review cfgwarn), with the
key paths the editor's problem list places at their lines.
"""

from __future__ import annotations

from gateway.config import config_warnings
from gateway.control.ops_config import clear_secrets, parse_text
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


def test_the_editor_accepts_it_and_each_warning_has_the_line_that_sets_it() -> None:
    found = problems(config_warnings(parse_text(TEXT)), TEXT)
    assert [(p.path, p.line, p.source) for p in found] == [
        ("uplinks[0].url", 7, 'url = "http://orion.example.jp:1026"'),
        ("uplinks[0].oauth2.token_url", 12, 'token_url = "http://idm.example.jp/oauth2/token"'),
        ("uplinks[0].value_encoding", 9, 'value_encoding = "reject"'),
    ]
    assert [p.message.partition(":")[0] for p in found] == [
        'credentials (the oauth2 access token, x_auth_token) go over plain http to host "orion.example.jp"',
        'the client secret and the access tokens go over plain http to host "idm.example.jp" (RFC 6749 §3.2 requires '
        "TLS)",
        '"reject" is stricter than [ngsi] value_encoding = "percent"; readings are checked at the source with '
        "[ngsi]'s, so a value such as 人吉(水の手橋) passes there and is dead-lettered on this uplink instead of "
        "delivered",
    ]


def test_the_config_is_not_taken_for_a_secret_in_clear() -> None:
    # the editor keeps a refused text's comment only when it names no secret in clear: these name none
    assert clear_secrets(TEXT) == []


def test_the_fixes_the_warnings_give_silence_them() -> None:
    opted_in = TEXT.replace('value_encoding = "reject"\n', "allow_insecure_http = true\n")
    assert config_warnings(parse_text(opted_in)) == []
    tls = TEXT.replace("http://", "https://").replace("[[uplinks]]", '[ngsi]\nvalue_encoding = "reject"\n\n[[uplinks]]')
    assert config_warnings(parse_text(tls)) == []

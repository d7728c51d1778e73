"""The config page's text work: key paths per line, secrets masked and put back, diff, errors at their lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.configbase import read_toml
from gateway.errors import ConfigError
from gateway.web.viewmodels.configtext import MASKED, diff, is_secret_key, mask, problems, split_error, unmask
from gateway.web.viewmodels.tomllines import assignments, line_of

ROOT = Path(__file__).resolve().parents[2]

TEXT = """\
# a river cabinet
[gateway]
id = "gw-1"   # the box
data_dir = "/var/lib/edgegw"

[[adapters]]
name = "gauges"
type = "modbus"
location = { lat = 32.2, lon = 130.7 }
notes = \"\"\"
password = "not a key here"
\"\"\"

[[adapters.devices]]
name = "g1"
unit_id = 1

[[adapters.devices]]
name = "g2"
unit_id = 300

[[adapters]]
name = "weather"
tags = [
  "a",
  "b",
]
port = 5

[[uplinks]]
name = "orion"
password = "hunter2-plain"
api_key = 'k-123'
token = "secret:orion-token"
client_secret = "env:CLIENT_SECRET"
headers = { Authorization = "Bearer abc.def", "Fiware-Service" = "river" }
tls_key_rotation = 30
"""


def test_every_assignment_has_the_key_path_the_checker_names() -> None:
    paths = {a.path: a.line for a in assignments(TEXT)}
    assert paths["gateway.id"] == 3
    assert paths["adapters[0].devices[1].unit_id"] == 20
    assert paths["adapters[1].port"] == 28
    assert paths["uplinks[0].headers"] == 36
    # lines inside a multi-line string or array are no assignments of their own
    assert "adapters[0].password" not in paths
    assert "adapters[1].port" in paths and '"a",' not in str(paths)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("adapters[0].devices[1].unit_id", 20),
        ("adapters[0].location.lat", 9),  # inside an inline table: its key's line
        ("adapters[1]", 22),  # a whole table: its header
        ("uplinks[0].timeout_s", 30),  # a key that is missing: the table's header
        ("nowhere.at_all", None),
        ("", None),
    ],
)
def test_the_line_of_a_key_path(path: str, line: int | None) -> None:
    assert line_of(path, TEXT) == line


def test_error_lines_split_into_path_and_message() -> None:
    assert split_error("adapters[0].devices[1].unit_id: must be 1..247, got 300") == (
        "adapters[0].devices[1].unit_id",
        "must be 1..247, got 300",
    )
    assert split_error("not valid TOML: Illegal character '\\n' (at line 2, column 8)") == (
        "",
        "not valid TOML: Illegal character '\\n' (at line 2, column 8)",
    )
    assert split_error("secret:foo: not in the secret store") == ("", "secret:foo: not in the secret store")


def test_the_real_checkers_errors_land_on_their_lines(tmp_path: Path) -> None:
    text = (ROOT / "config" / "demo.toml").read_text().replace("entities = 3", "entities = 0", 1)
    text = text.replace("port = 18830", "port = 99999")
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        parse_config(read_toml(path))
    found = problems(exc.value.errors, text)
    lines = text.splitlines()
    assert [(p.path, p.message) for p in found] == [
        ("adapters[0].entities", "input should be greater than or equal to 1, got 0"),
        ("uplinks[0].port", "input should be less than or equal to 65535, got 99999"),
        ("uplinks[1].port", "input should be less than or equal to 65535, got 99999"),
    ]
    assert [lines[p.line - 1].strip() for p in found if p.line] == ["entities = 0", "port = 99999", "port = 99999"]


def test_a_toml_syntax_error_is_marked_on_the_line_tomllib_names() -> None:
    (p,) = problems(["not valid TOML: Illegal character '\\n' (at line 2, column 8)"], '[gateway]\nid = "x\n')
    assert (p.path, p.line) == ("", 2)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("api_key", True),
        ("apikey", True),
        ("client-secret", True),
        ("Authorization", True),
        ("access_token", True),
        ("credentials", True),
        ("tls_key", True),
        ("name", False),
        ("monkey", False),  # a word, not a substring
        ("tokens_per_s", False),
    ],
)
def test_secret_keys_by_name(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_secrets_are_masked_in_place_and_references_shown() -> None:
    masked = mask(TEXT)
    lines = masked.splitlines()
    assert lines[31] == f'password = "{MASKED}"'
    assert lines[32] == f'api_key = "{MASKED}"'
    assert lines[33] == 'token = "secret:orion-token"'
    assert lines[34] == 'client_secret = "env:CLIENT_SECRET"'
    assert lines[35] == f'headers = {{ Authorization = "{MASKED}", "Fiware-Service" = "river" }}'
    assert lines[36] == "tls_key_rotation = 30"  # no string, no secret
    assert 'password = "not a key here"' in masked  # inside a multi-line string: text, not a key
    assert "hunter2" not in masked and "k-123" not in masked and "abc.def" not in masked
    assert masked.count("\n") == TEXT.count("\n")


def test_an_edited_masked_text_gets_the_running_secrets_back() -> None:
    edited = mask(TEXT).replace('name = "orion"', 'name = "orion-2"')
    restored = unmask(edited, TEXT)
    assert restored == TEXT.replace('name = "orion"', 'name = "orion-2"')
    # a masked value at a key the running file lacks stays as typed (the checker then says what is wrong)
    extra = edited + f'\n[[uplinks]]\nname = "new"\npassword = "{MASKED}"\n'
    assert unmask(extra, TEXT).endswith(f'password = "{MASKED}"\n')
    # a secret the technician typed anew is kept
    retyped = edited.replace(f'password = "{MASKED}"', 'password = "new-one"', 1)
    assert 'password = "new-one"' in unmask(retyped, TEXT)


def test_the_diff_counts_and_classifies_lines() -> None:
    view = diff("a = 1\nb = 2\nc = 3\n", "a = 1\nb = 20\nc = 3\nd = 4\n")
    assert [(line.kind, line.text) for line in view.lines] == [
        ("file", "--- running"),
        ("file", "+++ edited"),
        ("hunk", "@@ -1,3 +1,4 @@"),
        ("same", " a = 1"),
        ("del", "-b = 2"),
        ("add", "+b = 20"),
        ("same", " c = 3"),
        ("add", "+d = 4"),
    ]
    assert (view.added, view.removed) == (2, 1)
    assert diff("a = 1\n", "a = 1\n").empty

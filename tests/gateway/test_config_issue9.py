"""Issue 9, items 5, 6 and 8: credentials in URLs and headers refused without being repeated, one line per
cross-field problem with its full key path, and files a Windows editor saved read or named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError, model_validator

from gateway.config import parse_config
from gateway.configbase import (
    ConfigProblems,
    Section,
    format_validation_error,
    read_toml,
)
from gateway.errors import ConfigError
from gateway.secrets import SecretStore

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "cases"
URL_FIX = (
    'put the credential in the secret store (`edgegw secret set <name>`) and reference it as "secret:<name>" '
    '(or "env:<VARIABLE>") from the section\'s headers, params or token settings'
)
USERINFO = f"must not carry credentials (user:password@), got a value that is not shown here; {URL_FIX}"
REF_HELP = 'use a secret reference: "secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"'


def edgegw(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def errors_of(**doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": {"id": "gw1"}, **doc})
    return info.value.errors


def orion(**keys: Any) -> dict[str, Any]:
    return {"name": "o", "type": "orion", "url": "http://127.0.0.1:1026", **keys}


def test_the_issue9_file_lists_every_problem_on_its_own_line_and_repeats_no_secret() -> None:
    case = CASES / "issue9_secrets_and_key_paths"
    run = edgegw("check-config", str(case / "gateway.toml"))
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines[0] == f"{case / 'gateway.toml'}: 10 error(s)"
    assert lines[1:] == (case / "expected.txt").read_text().splitlines()
    for secret in ("Pw-In-Url-1", "Pw-In-Url-2", "Token-In-Header-3", "Secret-In-Query-4", "Key-In-Header-5"):
        assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"uplinks": [orion(url="https://admin:hunter22@orion.example.jp")]}, "uplinks[0].url"),
        ({"uplinks": [orion(url="ftp://admin:hunter22@orion.example.jp")]}, "uplinks[0].url"),  # not even http
        (
            {
                "uplinks": [
                    {
                        "name": "ld",
                        "type": "ngsi-ld",
                        "url": "http://ld:1026",
                        "context": "https://u:hunter22@ctx.example.jp/c.jsonld",
                    }
                ]
            },
            "uplinks[0].context",
        ),
        (
            {
                "uplinks": [
                    orion(
                        oauth2={
                            "token_url": "https://gw:hunter22@idm.example.jp/token",
                            "client_id": "gw",
                            "client_secret": "secret:idm",
                        }
                    )
                ]
            },
            "uplinks[0].oauth2.token_url",
        ),
    ],
)
def test_no_url_may_carry_a_password_and_the_error_never_shows_it(doc: dict[str, Any], path: str) -> None:
    errors = errors_of(**doc)
    assert errors == [f"{path}: {USERINFO}"]


def test_credential_headers_of_http_uplinks_follow_the_http_poll_rule() -> None:
    assert errors_of(
        uplinks=[
            orion(headers={"Authorization": "Bearer abc", "X-Gateway": "gw-001"}),
            {"name": "ld", "type": "ngsi-ld", "url": "http://ld:1026", "headers": {"apikey": "k-123"}},
            orion(name="o2", headers={"X-Api-Key": "secret:has space"}),
        ]
    ) == [
        f"uplinks[0].headers: header 'Authorization' carries a credential and must not be written in clear; {REF_HELP}",
        f"uplinks[1].headers: header 'apikey' carries a credential and must not be written in clear; {REF_HELP}",
        f"uplinks[2].headers: header 'X-Api-Key' is not a valid secret reference; {REF_HELP}",
    ]
    ok = parse_config({"gateway": {"id": "gw1"}, "uplinks": [orion(headers={"apikey": "env:KEY", "X-Gw": "gw-001"})]})
    assert ok.uplinks[0].headers == {"apikey": "env:KEY", "X-Gw": "gw-001"}  # type: ignore[attr-defined]


class _Pair(Section):
    low: int
    high: int


class _Outer(Section):
    pairs: tuple[_Pair, ...]

    @model_validator(mode="after")
    def _ordered(self) -> _Outer:
        problems = [
            (f"pairs[{i}].high", f"must not be below low ({p.low}), got {p.high}")
            for i, p in enumerate(self.pairs)
            if p.high < p.low
        ]
        if problems:
            raise ConfigProblems([*problems, ("", f"has {len(problems)} pairs out of order")])
        return self


def test_model_validators_raise_one_line_per_problem_with_its_own_key_path() -> None:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate({"pairs": [{"low": 1, "high": 2}, {"low": 5, "high": 3}, {"low": 9, "high": 0}]})
    assert format_validation_error(info.value, _Outer, "adapters[3]") == [
        "adapters[3].pairs[1].high: must not be below low (5), got 3",
        "adapters[3].pairs[2].high: must not be below low (9), got 0",
        "adapters[3]: has 2 pairs out of order",
    ]
    assert format_validation_error(info.value, _Outer)[2] == "(top level): has 2 pairs out of order"


def test_a_simulated_entity_type_error_names_its_key() -> None:
    assert errors_of(
        adapters=[{"name": "s", "type": "simulated", "entity_type": "River Level"}], uplinks=[orion()]
    ) == [
        (
            "adapters[0].entity_type: entity type must be 1-256 printable ASCII characters without blanks or any of "
            "< > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got \"River Level\""
        )
    ]


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + '# 人吉の河川局\n[gateway]\nid = "gw1"\n\n[[uplinks]]\nname = "o"\n'
        'type = "orion"\nurl = "http://127.0.0.1:1026"\n'.encode()
    )
    run = edgegw("check-config", str(path))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == f"{path}: OK — gateway gw1, 0 adapter(s), 1 uplink(s)\n"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            '# 人吉\n[gateway]\nid = "gw1"\n'.encode("utf-16"),
            'must be UTF-8, got UTF-16 (a Windows editor\'s "Unicode"); save it as UTF-8',
        ),
        (
            '[gateway]\nid = "gw1"  # 人吉の水位\n'.encode("cp932"),
            (
                "must be UTF-8, got byte 0x90 at line 2, column 15; save it as UTF-8 (a Japanese Windows editor may have "
                "saved it as Shift_JIS)"
            ),
        ),
        (b"\xef\xbb\xbf\xef\xbb\xbf[gateway]\n", "not valid TOML: Invalid statement (at line 1, column 1)"),
    ],
)
def test_a_file_that_is_not_utf8_says_so(tmp_path: Path, data: bytes, error: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert (info.value.source, info.value.errors) == (str(path), [error])


def test_secret_set_refuses_a_name_it_could_not_reference(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    run = edgegw("secret", "set", "../../x", "--stdin", "-c", str(config), stdin="value-1\n")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        'secret set: name must be 1-128 characters of A-Z a-z 0-9 _ . - starting with a letter or _, got "../../x"\n'
    )
    assert not (tmp_path / "data").exists()  # refused before anything was created
    # a key file that does not belong to the store is a message too, not a traceback
    SecretStore(tmp_path / "data").set("a", "1")
    (tmp_path / "data" / "secrets.key").write_bytes(b"A" * 43 + b"=")
    run = edgegw("secret", "list", "-c", str(config))
    data = tmp_path / "data"
    assert (run.returncode, run.stderr) == (
        2,
        (
            f"secret list: {data / 'secrets.enc'}: cannot be decrypted with "
            f"{data / 'secrets.key'}; the key file does not belong to it\n"
        ),
    )

"""A secret whose bytes are not UTF-8 is refused by `edgegw secret set`, and one stored before is named, not
quoted, when it is used."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import redact
from gateway.cli import main
from gateway.errors import ConfigError
from gateway.secrets import SecretStore, resolve

SHIFT_JIS_TOKEN = "トークン-0123".encode("shift_jis") + b"\r\n"  # a token file saved by a Japanese Windows editor


def secret_set(
    tmp_path: Path, stdin: bytes, errors: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors=errors))
    code = main(["secret", "set", "kintone_token", "--stdin", "-c", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


# stdin decodes with surrogateescape in UTF-8 mode and the C locale, strictly in a UTF-8 locale: both seen
@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_secret_set_refuses_bytes_that_are_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, errors: str
) -> None:
    assert secret_set(tmp_path, SHIFT_JIS_TOKEN, errors, capsys, monkeypatch) == (
        1,
        "",
        "secret kintone_token: value refused, got bytes that are not UTF-8 (not shown); save it as UTF-8, "
        "e.g. iconv -f SHIFT_JIS -t UTF-8 <file> | edgegw secret set kintone_token --stdin\n",
    )
    assert SecretStore(tmp_path / "data").names() == []
    # the same token saved as UTF-8 is taken
    assert secret_set(tmp_path, "トークン-0123\r\n".encode(), errors, capsys, monkeypatch) == (
        0,
        'secret kintone_token stored (reference it as "secret:kintone_token")\n',
        "",
    )
    assert resolve("secret:kintone_token", tmp_path / "data") == "トークン-0123"


def test_a_stored_value_that_is_not_utf8_is_named_not_quoted(tmp_path: Path) -> None:
    # what `edgegw secret set` stored from a Shift_JIS file before it refused them
    SecretStore(tmp_path).set("kintone_token", SHIFT_JIS_TOKEN.decode("utf-8", "surrogateescape").rstrip("\r\n"))
    with pytest.raises(ConfigError) as info:
        resolve("secret:kintone_token", tmp_path)
    assert info.value.errors == [
        "secret:kintone_token: not UTF-8 text, got a value that is not shown here; set it again from a UTF-8 file: "
        "iconv -f SHIFT_JIS -t UTF-8 <file> | edgegw secret set kintone_token --stdin"
    ]
    assert info.value.__suppress_context__  # the encoder's message quotes a byte of the secret


@given(written=st.binary(max_size=24).filter(lambda b: b"\x00" not in b))
def test_an_environment_value_resolves_if_utf8_else_is_named(written: bytes) -> None:
    value = written.decode("utf-8", "surrogateescape")  # how os.environ hands out any bytes
    os.environ["EDGEGW_TEST_SECRET"] = value
    try:
        try:
            written.decode("utf-8")
        except UnicodeDecodeError:
            with pytest.raises(ConfigError) as info:
                resolve("env:EDGEGW_TEST_SECRET", "/nonexistent")
            assert info.value.errors == [
                "env:EDGEGW_TEST_SECRET: not UTF-8 text, got a value that is not shown here; "
                "set the variable to UTF-8 text"
            ]
        else:
            assert resolve("env:EDGEGW_TEST_SECRET", "/nonexistent") == value
    finally:
        del os.environ["EDGEGW_TEST_SECRET"]
        redact.clear()

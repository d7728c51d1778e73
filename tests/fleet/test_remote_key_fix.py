"""A mistyped `public_key` is refused with the command that prints the right one, and the value quoted.

The errors named `edgegw config sign --public-key`, which does not exist, and a key of the wrong
length had no fix. A public key is no secret: quoting it lets the technician see what was pasted.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.configbase import format_validation_error
from gateway.fleet import cli
from gateway.fleet.config import PASTE_KEY, RemoteConfigConfig


def refusal(key: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        RemoteConfigConfig.model_validate({"public_key": key})
    return format_validation_error(info.value, RemoteConfigConfig, "fleet.remote_config")


def test_a_key_that_is_not_base64_is_quoted_with_the_real_command() -> None:
    assert refusal("not base64!") == [
        'fleet.remote_config.public_key: must be base64 of a 32-byte Ed25519 public key, got "not base64!" '
        f"(not base64); {PASTE_KEY}"
    ]


def test_a_key_of_the_wrong_length_is_quoted_with_the_real_command() -> None:
    assert refusal("AAAA") == [
        f'fleet.remote_config.public_key: an Ed25519 public key is 32 bytes, got 3 bytes ("AAAA"); {PASTE_KEY}'
    ]


def test_a_long_paste_is_cut_short() -> None:
    pem = "-----BEGIN PUBLIC KEY-----" + "M" * 200
    (line,) = refusal(pem)
    assert pem not in line and '"-----BEGIN PUBLIC KEY-----MMM' in line and line.endswith(PASTE_KEY)


def test_the_command_the_fix_names_exists() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    assert "`edgegw config public-key platform.pem`" in PASTE_KEY
    args = parser.parse_args(["config", "public-key", "platform.pem"])
    assert args.config_command == "public-key"

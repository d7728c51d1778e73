"""A local part over RFC 5321's 64 characters is refused where an address comes in, never quoted.

It was accepted (only 254 in all was checked), while gateway.redact reads at most 64 characters of a local part:
`taro.yamada.…00012345678@example.jp` in an SMTP reply came out in logs and last_error as `tar***@example.jp`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.mail.message import MAX_LOCAL, Mail, MailError, check_address
from tests.adapters.locker.test_adapter import running
from tests.fleet.test_config_and_catalogs import parse

LONG = "taro.yamada.the.library.patron.with.a.long.alias.number.00012345678"  # 67 characters
assert len(LONG) == 67


def test_a_local_part_of_65_characters_is_refused_with_its_length_and_without_the_address() -> None:
    with pytest.raises(MailError) as info:
        Mail(to=(f"{LONG}@example.jp",), subject="s", text="t")
    message = str(info.value)
    assert message == (
        "mail.to: not an e-mail address, its local part (before the @) has 67 characters, at most 64 "
        "(RFC 5321), got a value not shown here"
    )
    assert "taro" not in message and "example" not in message


@given(st.integers(min_value=1, max_value=120))
def test_the_limit_is_64_characters_of_the_local_part(n: int) -> None:
    address = "a" * n + "@example.jp"
    if n <= MAX_LOCAL:
        assert check_address(address) == address
    else:
        with pytest.raises(MailError, match=rf"has {n} characters, at most 64 \(RFC 5321\)"):
            check_address(address, "email")


def test_a_fleet_alarm_recipient_with_a_long_local_part_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"alarms": {"recipients": {"critical": [f"{LONG}@example.jp"]}}}, tmp_path)
    assert "taro" not in str(info.value.errors)
    assert any(
        "recipients.critical[0]: not an e-mail address, its local part (before the @) has 67 characters" in e
        for e in info.value.errors
    )


async def test_a_locker_assignment_to_a_long_local_part_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        refused = await rig.command("A-02", "assign", {"email": f"{LONG}@example.jp", "reference": "R-1"})
        assert (refused.ok, refused.info.split(";")[0]) == (
            False,
            "invalid_email: the e-mail address is not valid, got a value not shown here",
        )
        assert rig.adapter.store is not None and rig.adapter.store.active() == {}
        assert await rig.mail.due(now=1e12) == []

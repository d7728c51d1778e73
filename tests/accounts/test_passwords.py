"""The password policy and the hashing profile."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.accounts import passwords
from gateway.accounts.passwords import check_policy, common_passwords, default_hasher, verify


def test_the_common_list_is_shipped_with_its_source_named() -> None:
    from importlib import resources

    text = resources.files("gateway.accounts").joinpath(passwords.COMMON_FILE).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("# Source: ")
    assert "zxcvbn 4.5.0" in text.splitlines()[0]
    assert len(common_passwords()) >= 10_000
    assert {"123456", "password", "qwerty", "letmein", "passw0rd"} <= common_passwords()


def test_a_good_password_passes() -> None:
    assert check_policy("river-gauge-cabinet-7", min_length=12, user_name="tanaka") == []


def test_too_short() -> None:
    assert check_policy("x7#kQ9", min_length=12, user_name="tanaka") == ["password.too_short"]


def test_too_long() -> None:
    assert check_policy("k" * 1025 + "Q", min_length=12, user_name="tanaka") == ["password.too_long"]


def test_common_whatever_the_case() -> None:
    # long enough for the length rule (8 is the lowest [web] allows), but on the list
    assert check_policy("PassWord1", min_length=8, user_name="tanaka") == ["password.common"]
    assert check_policy("baseball", min_length=8, user_name="tanaka") == ["password.common"]


def test_contains_the_name_whatever_the_case() -> None:
    assert check_policy("my-Tanaka-password-2026", min_length=12, user_name="tanaka") == ["password.contains_name"]
    # two letters are a coincidence, not the name
    assert check_policy("crystal-clear-water-42", min_length=12, user_name="al") == []


def test_every_broken_rule_is_listed() -> None:
    assert check_policy("password", min_length=12, user_name="password") == [
        "password.too_short",
        "password.common",
        "password.contains_name",
    ]


@given(st.text(min_size=0, max_size=40), st.integers(min_value=8, max_value=40))
def test_policy_keys_are_known_and_length_rule_exact(password: str, min_length: int) -> None:
    problems = check_policy(password, min_length=min_length, user_name="tanaka")
    assert set(problems) <= set(passwords.POLICY_KEYS)
    assert ("password.too_short" in problems) == (len(password) < min_length)
    assert ("password.common" in problems) == (
        password.lower() in common_passwords() or password.strip().lower() in common_passwords()
    )


@given(st.sampled_from(sorted(common_passwords())[:500]))
def test_every_listed_password_is_refused_in_any_case(word: str) -> None:
    assert "password.common" in check_policy(word.upper(), min_length=8, user_name="tanaka")


def test_default_hasher_is_argon2id_rfc9106_low_memory() -> None:
    h = default_hasher()
    hashed = h.hash("river-gauge-cabinet-7")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify(h, hashed, "river-gauge-cabinet-7")
    assert not verify(h, hashed, "river-gauge-cabinet-8")
    assert not verify(h, "not a hash", "river-gauge-cabinet-7")

"""Password hashing (Argon2id, RFC 9106 low-memory profile) and the password policy.

The policy answers with message keys ("password.too_short", ...), never with sentences: the web UI
shows them from its catalogs in Japanese or English, the CLI maps them to English (`accounts.cli`).
Neither the password nor any part of it ever appears in a message.
"""

from __future__ import annotations

import functools
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

__all__ = [
    "CONTAINS_NAME",
    "MAX_LENGTH",
    "POLICY_KEYS",
    "SAME_AS_CURRENT",
    "TOO_COMMON",
    "TOO_LONG",
    "TOO_SHORT",
    "check_policy",
    "common_passwords",
    "default_hasher",
    "verify",
]

TOO_SHORT = "password.too_short"
TOO_LONG = "password.too_long"
TOO_COMMON = "password.common"
CONTAINS_NAME = "password.contains_name"
SAME_AS_CURRENT = "password.same_as_current"  # from AccountStore.set_password, which knows the current hash
POLICY_KEYS = (TOO_SHORT, TOO_LONG, TOO_COMMON, CONTAINS_NAME, SAME_AS_CURRENT)

# Argon2 takes any length, but a login form must not let a stranger make the box hash megabytes
MAX_LENGTH = 1024
COMMON_FILE = "common_passwords.txt"
# a user name shorter than this inside a password is a coincidence ("al" in "crystal"), not a weakness
_MIN_NAME_IN_PASSWORD = 3


def default_hasher() -> PasswordHasher:
    """Argon2id with RFC 9106's second recommended profile (64 MiB, 3 passes): fits a 1 GB box."""
    return PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (the check is case-insensitive)."""
    text = resources.files("gateway.accounts").joinpath(COMMON_FILE).read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_policy(password: str, *, min_length: int, user_name: str) -> list[str]:
    """The message keys of every rule `password` breaks; empty when it is acceptable."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(TOO_SHORT)
    if len(password) > MAX_LENGTH:
        problems.append(TOO_LONG)
    if password.lower() in common_passwords() or password.strip().lower() in common_passwords():
        problems.append(TOO_COMMON)
    name = user_name.strip().lower()
    if len(name) >= _MIN_NAME_IN_PASSWORD and name in password.lower():
        problems.append(CONTAINS_NAME)
    return problems


def verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`; a damaged hash counts as a mismatch, never as an error."""
    try:
        return hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError):
        return False

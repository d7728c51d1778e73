"""Declarative firmware profiles (TOML): one device model's interface, points and commands, validated.

Use `load_profile("eastron/sdm120")` or `load_profile_file(path)`; both raise `ConfigError` with one
`<key.path>: …` line per problem. The schema is documented key by key in firmware_profiles/README.md.
"""

from gateway.profiles.loader import (
    DEFAULT_SEARCH_PATH,
    SHIPPED_DIR,
    SYSTEM_DIR,
    ProfileNotFound,
    ProfileRef,
    find_profiles,
    load_profile,
    load_profile_file,
    parse_profile,
    resolve,
)
from gateway.profiles.schema import ByteOrder, Command, DataType, Interface, Parity, Point, Profile, Quality, Transport

__all__ = [
    "DEFAULT_SEARCH_PATH",
    "SHIPPED_DIR",
    "SYSTEM_DIR",
    "ByteOrder",
    "Command",
    "DataType",
    "Interface",
    "Parity",
    "Point",
    "Profile",
    "ProfileNotFound",
    "ProfileRef",
    "Quality",
    "Transport",
    "find_profiles",
    "load_profile",
    "load_profile_file",
    "parse_profile",
    "resolve",
]

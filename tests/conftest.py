"""Shared fixtures: real peers (mosquitto, the strict Orion double) live in tests/support."""

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.orion_double",
    "tests.support.tmpfs",
    "tests.support.iot_agent",
    "tests.support.javascript",
]

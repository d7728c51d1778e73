"""Shared fixtures: real peers (mosquitto, HTTP doubles) live in tests/support."""

pytest_plugins = ["tests.support.mosquitto"]

"""A TCP-only receiver can be written: TOML has no null, so `udp_port = 0` is "no UDP"."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from adapters.wifi_syslog.config import WifiSyslogConfig

BASE = 'name = "wifi"\ntype = "wifi_syslog"\nlisten = "127.0.0.1"\n'


def _config(extra: str) -> WifiSyslogConfig:
    return WifiSyslogConfig.model_validate(tomllib.loads(BASE + extra))


def test_udp_port_0_is_a_tcp_only_receiver() -> None:
    cfg = _config("udp_port = 0\ntcp_port = 6514\n")
    assert (cfg.udp_port, cfg.tcp_port) == (None, 6514)


def test_by_default_udp_514_alone() -> None:
    cfg = _config("")
    assert (cfg.udp_port, cfg.tcp_port) == (514, None)


def test_no_port_at_all_is_refused_naming_both_keys() -> None:
    with pytest.raises(ValidationError, match=r"udp_port = 0 and tcp_port unset: nothing to listen on; set tcp_port"):
        _config("udp_port = 0\n")

"""The `[[adapters]] type = "wifi_syslog"` section: where to listen (UDP, TCP), which senders, retention."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Literal

from pydantic import AfterValidator, field_validator, model_validator

from gateway.adapter_api import AdapterConfig
from gateway.configbase import Field
from gateway.wifilog.runner import WifiLogOptions, check_listen


class WifiSyslogConfig(AdapterConfig, WifiLogOptions):
    type: Literal["wifi_syslog"]
    listen: Annotated[str, AfterValidator(check_listen)] = Field(description="this box's address on the Wi-Fi side")
    # TOML has no null: 0 is how a TCP-only receiver is written (None inside, as for tcp_port)
    udp_port: int | None = Field(default=514, ge=0, le=65535, description="0: no UDP (TCP only)")
    tcp_port: int | None = Field(default=None, ge=1, le=65535, description="RFC 6587 framing; unset: no TCP")
    senders: list[IPv4Address | IPv6Address] = Field(default=[], description="APs allowed to send; empty: any")
    # syslog has no Interim-Update: a leave lost over UDP, or an AP rebooted, would leave the session open for ever
    max_session_hours: float = Field(
        default=24.0,
        gt=0,
        le=720,
        description="a join whose leave never came is forgotten after N hours: the station's next join is a new "
        "session, and it no longer counts in connectedClients",
    )

    @field_validator("udp_port")
    @classmethod
    def _no_udp(cls, port: int | None) -> int | None:
        return None if port == 0 else port

    @model_validator(mode="after")
    def _some_port(self) -> WifiSyslogConfig:
        if self.udp_port is None and self.tcp_port is None:
            raise ValueError(
                "udp_port = 0 and tcp_port unset: nothing to listen on; set tcp_port (TCP only), or udp_port = 514"
            )
        return self

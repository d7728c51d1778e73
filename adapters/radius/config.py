"""The `[[adapters]] type = "radius"` section: where to listen, which NAS may send, retention."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Literal

from pydantic import AfterValidator, field_validator

from gateway.adapter_api import AdapterConfig
from gateway.configbase import Field, Section
from gateway.secrets import SecretRef
from gateway.wifilog.runner import WifiLogOptions, check_listen


class NasClient(Section):
    address: IPv4Address = Field(description="the NAS's source address (AP or controller)")
    secret: SecretRef = Field(description='its shared secret: "secret:<name>" or "env:<VARIABLE>"')


class RadiusConfig(AdapterConfig, WifiLogOptions):
    type: Literal["radius"]
    listen: Annotated[str, AfterValidator(check_listen)] = Field(description="this box's address on the Wi-Fi side")
    port: int = Field(default=1813, ge=1, le=65535)
    clients: list[NasClient] = Field(min_length=1, description="the NASes allowed to send accounting")

    @field_validator("clients")
    @classmethod
    def _unique(cls, v: list[NasClient]) -> list[NasClient]:
        seen = [str(c.address) for c in v]
        dupes = sorted({a for a in seen if seen.count(a) > 1})
        if dupes:
            raise ValueError(f"each NAS address once, got {', '.join(dupes)} more than once")
        return v

"""The `orion` uplink family (NGSI v2 `/v2/op/update`) on the shared HTTP batch engine; see ../README.md."""

from gateway.uplinks.orion.uplink import CatchUp, OrionConfig, OrionUplink

__all__ = ["CatchUp", "OrionConfig", "OrionUplink"]

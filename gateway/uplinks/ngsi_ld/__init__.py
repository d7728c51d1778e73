"""The `ngsi-ld` uplink family (`/ngsi-ld/v1/entityOperations/upsert`) on the shared HTTP batch engine:
uplink.py, problems.py (RFC 7807 problem details classified); see ../README.md."""

from gateway.uplinks.ngsi_ld.uplink import ContextMode, NgsiLdConfig, NgsiLdUplink

__all__ = ["ContextMode", "NgsiLdConfig", "NgsiLdUplink"]

"""edgegw: the runtime of the edge gateway (config, records, buffer, NGSI, uplinks, CLI)."""

__version__ = "0.1.0"

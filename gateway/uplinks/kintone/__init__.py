"""The `kintone` uplink family: readings as records of a kintone app; see KINTONE.md."""

from gateway.uplinks.kintone.config import KintoneConfig
from gateway.uplinks.kintone.uplink import KintoneUplink

__all__ = ["KintoneConfig", "KintoneUplink"]

"""adapters/modbus/sample.toml is valid as it stands: what the README shows a technician works."""

from __future__ import annotations

import tomllib
from pathlib import Path

from adapters.modbus.config import ModbusConfig

SAMPLE = Path(__file__).parents[3] / "adapters" / "modbus" / "sample.toml"


def test_sample_configuration_validates() -> None:
    doc = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    config = ModbusConfig.model_validate(doc["adapters"][0])
    assert [b.name for b in config.buses] == ["rs485", "pump-house"]
    assert config.serial_settings(config.buses[0]).describe() == "9600 8N1"
    assert config.devices[0].river is not None and config.devices[0].river.point == "level"

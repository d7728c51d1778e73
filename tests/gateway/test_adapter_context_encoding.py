"""Adapters that act on a device for a reading (the library station releases a book for its loan) check the
reading as the gateway will: the context carries `[ngsi] value_encoding`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.ngsi.config import ValueEncoding


@pytest.mark.parametrize("encoding", list(ValueEncoding))
def test_the_adapters_context_carries_the_value_encoding(tmp_path: Path, encoding: ValueEncoding) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nid = "gw-1"\ndata_dir = "{tmp_path / "data"}"\n\n[ngsi]\nvalue_encoding = "{encoding.value}"\n'
        '\n[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "https://orion.example.jp"\n'
    )
    assert Gateway(load_config(path)).context.value_encoding is encoding

"""config.get/check/apply/versions/version/rollback: validated, written atomically with its mode, versioned, reloaded."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from gateway.control.protocol import ControlError
from tests.control.running import config_text, running_gateway, until
from tests.support.orion_double import OrionDouble


async def test_an_invalid_config_is_refused_with_key_paths_and_nothing_written(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_bytes()
        bad = before.decode().replace("entities = 3", "entities = 0").replace('id = "gw-control"', 'id = "gw control"')
        check = await gw.client.call("config.check", text=bad)
        with pytest.raises(ControlError) as refused:
            await gw.client.call("config.apply", text=bad, actor="tanaka", comment="typo")
        with pytest.raises(ControlError) as not_toml:
            await gw.client.call("config.apply", text="[gateway\n", actor="tanaka")
        running = gw.runtime.gateway
        assert gw.config_path.read_bytes() == before
        assert await gw.client.call("config.versions") == []
        assert gw.runtime.gateway is running
    assert check["ok"] is False
    assert refused.value.code == "config_invalid"
    assert refused.value.message == "config: 2 problem(s), nothing written or reloaded"
    assert refused.value.errors == check["errors"]
    assert [e.split(":")[0] for e in check["errors"]] == ["gateway.id", "adapters[0].entities"]
    assert not_toml.value.errors == [
        "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 9)"
    ]


async def test_apply_and_rollback_change_what_the_running_gateway_does(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        got = await gw.client.call("config.get")
        assert (got["path"], got["text"], got["version"]) == (str(gw.config_path), original, None)
        new = config_text(tmp_path / "data", orion_double.url, prefix="urn:ngsi-ld:WaterObserved:b-")
        assert await gw.client.call("config.check", text=new) == {"ok": True, "errors": []}

        def delivered(prefix: str) -> bool:
            return any(key[2].startswith(prefix) for key in orion_double.entities)

        await until(lambda: delivered("urn:ngsi-ld:WaterObserved:a-"), "the first prefix delivered")
        assert await gw.client.call("config.apply", text=new, actor="tanaka", comment="new ids") == {
            "version": 2,
            "reloaded": True,
        }
        assert gw.config_path.read_text() == new
        assert stat.S_IMODE(os.stat(gw.config_path).st_mode) == 0o640  # kept, not the umask's
        assert [p.name for p in gw.config_path.parent.iterdir() if p.name.endswith(".tmp")] == []
        await until(lambda: delivered("urn:ngsi-ld:WaterObserved:b-"), "the applied prefix delivered")
        assert any(e.startswith("urn:ngsi-ld:WaterObserved:b-") for e in gw.runtime.gateway.latest)

        versions = await gw.client.call("config.versions")
        assert [(v["version"], v["actor"], v["comment"]) for v in versions] == [
            (2, "tanaka", "new ids"),
            (1, "file", "before the first apply"),
        ]
        assert all(isinstance(v["applied_at"], float) and len(v["sha256"]) == 64 for v in versions)
        assert (await gw.client.call("config.get"))["version"] == 2
        first = await gw.client.call("config.version", version=1)
        assert first["text"] == original and first["actor"] == "file"

        orion_double.entities.clear()
        assert await gw.client.call("config.rollback", version=1, actor="suzuki") == {"version": 3, "reloaded": True}
        assert gw.config_path.read_text() == original
        orion_double.entities.clear()
        await until(lambda: delivered("urn:ngsi-ld:WaterObserved:a-"), "the rolled-back prefix delivered again")
        latest_version = (await gw.client.call("config.versions"))[0]
        assert (latest_version["actor"], latest_version["comment"]) == ("suzuki", "rollback to version 1")
        with pytest.raises(ControlError) as missing:
            await gw.client.call("config.version", version=99)
        assert (missing.value.code, missing.value.message) == ("not_found", "config.version: no such version, got 99")
        versions_db = tmp_path / "data" / "config_versions.db"
        assert stat.S_IMODE(os.stat(versions_db).st_mode) == 0o600
        with sqlite3.connect(versions_db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (1,)


async def test_checking_a_large_config_does_not_hold_the_gateways_loop(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        base = gw.config_path.read_text()
        # ~2.7 MB of adapters (the socket takes 4 MiB), each refused for a rate of 0: seconds of validation on this machine
        adapters = "".join(
            f'\n[[adapters]]\nname = "g{i}"\ntype = "simulated"\nentities = 1\nrate = 0\nid_prefix = "urn:ngsi-ld:X:{i}-"\n'
            for i in range(25_000)
        )
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        checking = True

        async def ticker() -> None:
            last = loop.time()
            while checking:
                await asyncio.sleep(0.005)
                now = loop.time()
                gaps.append(now - last)
                last = now

        ticks = asyncio.create_task(ticker())
        started = loop.time()
        check = await gw.client.call("config.check", text=base + adapters)
        took = loop.time() - started
        checking = False
        await ticks
    assert check["ok"] is False and len(check["errors"]) >= 25_000
    assert took > 0.2  # long enough that holding the loop would show
    assert max(gaps) < took / 2, f"the loop stood still {max(gaps):.2f} s of the check's {took:.2f} s"

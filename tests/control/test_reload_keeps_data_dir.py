"""A reload (apply, rollback, `reload`, SIGHUP) never moves the data directory or the control socket.

Moving either while running stranded the backlog in the old buffer, left the config history behind
(config.versions [] and rollback not_found after the apply) and the socket at a path the tools no
longer looked at; both need a stop, the data moved, and a start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.control.config_versions import FILE, ConfigVersions
from gateway.control.protocol import ControlError
from tests.control.running import running_gateway
from tests.support.orion_double import OrionDouble


def moved_data_dir(old: Path, new: Path) -> str:
    return (
        f"gateway.data_dir: cannot change while the gateway runs, got {new} (running with {old}); "
        f"the buffer's backlog and the config history are in {old}: stop the gateway, move what {old} "
        f"holds to {new}, then start it"
    )


async def test_an_apply_moving_the_data_dir_is_refused_and_nothing_written(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    old, new = tmp_path / "data", tmp_path / "data2"
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        moved = original.replace(f'data_dir = "{old}"', f'data_dir = "{new}"')
        assert moved != original
        running = gw.runtime.gateway
        check = await gw.client.call("config.check", text=moved)
        with pytest.raises(ControlError) as refused:
            await gw.client.call("config.apply", text=moved, actor="tanaka")
        assert gw.runtime.gateway is running
        assert gw.config_path.read_text() == original
        assert await gw.client.call("config.versions") == []
    assert check == {"ok": False, "errors": [moved_data_dir(old, new)]}
    assert (refused.value.code, refused.value.message) == (
        "config_invalid",
        "config: 1 problem(s), nothing written or reloaded",
    )
    assert refused.value.errors == [moved_data_dir(old, new)]
    assert not new.exists()


async def test_a_rollback_to_a_version_from_before_a_move_is_refused(orion_double: OrionDouble, tmp_path: Path) -> None:
    # the box's data was moved (stopped, moved, config edited, started): the history keeps the old path
    old, new = tmp_path / "data", tmp_path / "elsewhere"
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        store = ConfigVersions(old / FILE)
        try:
            store.record(original.replace(f'data_dir = "{old}"', f'data_dir = "{new}"'), actor="file", at=1.0)
        finally:
            store.close()
        running = gw.runtime.gateway
        with pytest.raises(ControlError) as refused:
            await gw.client.call("config.rollback", version=1, actor="tanaka")
        assert gw.runtime.gateway is running
        assert gw.config_path.read_text() == original
        assert [v["version"] for v in await gw.client.call("config.versions")] == [1]
    assert refused.value.code == "config_invalid"
    assert refused.value.errors == [moved_data_dir(old, new)]


async def test_a_reload_of_a_hand_edit_moving_the_control_socket_is_refused(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        running = gw.runtime.gateway
        old_socket = gw.runtime.config.gateway.control_path()
        new_socket = tmp_path / "run" / "edgegw.sock"
        text = gw.config_path.read_text()
        gw.config_path.write_text(
            text.replace('id = "gw-control"', f'id = "gw-control"\ncontrol_socket = "{new_socket}"')
        )
        with pytest.raises(ControlError) as refused:
            await gw.client.call("reload")
        assert gw.runtime.gateway is running
        # the default path written out is no move: that one reloads
        gw.config_path.write_text(
            text.replace('id = "gw-control"', f'id = "gw-control"\ncontrol_socket = "{old_socket}"')
        )
        assert await gw.client.call("reload") == {"reloaded": True}
    assert refused.value.code == "config_invalid"
    assert refused.value.errors == [
        f"gateway.control_socket: cannot change while the gateway runs, got {new_socket} (listening on "
        f"{old_socket}); the web UI and the edgegw tools look for it where the running gateway listens: restart "
        "the gateway to move it (systemctl restart edgegw)"
    ]


async def test_sighup_moving_the_data_dir_keeps_the_running_generation(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    old, new = tmp_path / "data", tmp_path / "data2"
    async with running_gateway(tmp_path, orion_double.url) as gw:
        running = gw.runtime.gateway
        gw.config_path.write_text(gw.config_path.read_text().replace(f'data_dir = "{old}"', f'data_dir = "{new}"'))
        assert await gw.runtime.reload() == [moved_data_dir(old, new)]  # SIGHUP's path
        assert await gw.runtime.reload(load_config(gw.config_path)) == [moved_data_dir(old, new)]
        assert gw.runtime.gateway is running
    assert not new.exists()

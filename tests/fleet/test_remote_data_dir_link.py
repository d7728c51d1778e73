"""A bundle naming the data directory through a symbolic link to it is no move: applied, not failed.

The offer's check (`remote.unwatched`) compared the paths resolved and the reload's
(`app.reload_problem`) as written: the bundle passed the first, was claimed (its serial used up), then
failed at the reload. Both now make the one comparison, `same_data_dir`.
"""

from __future__ import annotations

from pathlib import Path

from gateway import app
from gateway.config import parse_config
from gateway.fleet import remote
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import bundle, config_text, runtime_on, settled, steps_of
from tests.support.orion_double import OrionDouble


async def test_a_bundle_naming_the_data_dir_through_a_link_to_it_is_applied(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    (tmp_path / "data-link").symlink_to(tmp_path / "data")
    sent = original.replace(f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{tmp_path / "data-link"}"')
    assert sent != original
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        assert (await fleet.offer(bundle(sent, 1), via="push"))["applied"] is True
        await until(lambda: settled(1))
        assert [s for s, _, _ in steps_of(tmp_path)] == ["verified", "applied"]
        assert path.read_text() == sent
        assert runtime.gateway.config.gateway.data_dir == tmp_path / "data-link"
        second = runtime.gateway  # the new generation watches the same state file
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].delivered > 0)
        await second.fleet.tick(clock.advance(5))
        assert remote.RemoteState(tmp_path / "data").pending is None
        assert [s for s, _, _ in steps_of(tmp_path)] == ["verified", "applied", "confirmed"]


async def test_a_bundle_moving_the_data_dir_is_refused_before_its_serial_is_used(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    (tmp_path / "elsewhere").mkdir()
    sent = original.replace(f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{tmp_path / "elsewhere"}"')
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        result = await fleet.offer(bundle(sent, 1), via="push")
        assert result["code"] == "data_dir_moved"
        assert remote.RemoteState(tmp_path / "data").last_serial == 0
        assert path.read_text() == original


def test_the_offer_and_the_reload_make_the_same_comparison(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    (tmp_path / "other").mkdir()

    def cfg(data_dir: Path) -> object:
        return parse_config(
            {
                "gateway": {"id": "gw", "data_dir": str(data_dir)},
                "uplinks": [{"name": "u", "type": "orion", "url": "http://127.0.0.1:1"}],
            }
        )

    running = cfg(data)
    for candidate, same in (
        (data, True),
        (tmp_path / "link", True),
        (tmp_path / "other", False),
        (tmp_path / "data/.", True),
    ):
        assert app.same_data_dir(data, candidate) is same
        new = cfg(candidate)
        moved = remote.unwatched(new, data_dir=data, serial=1)  # type: ignore[arg-type]
        assert (moved is None or moved.code != "data_dir_moved") is same
        problem = app.reload_problem(running, new)  # type: ignore[arg-type]
        assert (problem is None or "data_dir" not in problem) is same

"""Every dead-letter call refuses an uplink that is not configured, naming those that are (review s20, r7).

Before, `dead_letters` with a misspelt uplink answered [] (no dead letters, so nothing to worry about) while
`retry_dead_letters` and `discard_dead_letters` refused the same name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferError

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)


async def test_dead_letters_of_a_misspelt_uplink_are_refused_like_retry_and_discard(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "b.db", CFG, ["orion", "mqtt"]) as box:
        refusals = []
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: box.dead_letters("orino"),
            lambda: box.retry_dead_letters("orino", [1]),
            lambda: box.discard_dead_letters("orino", [1]),
        ]
        for call in calls:
            with pytest.raises(BufferError) as err:
                await call()
            refusals.append((err.value.code, str(err.value)))
        assert await box.dead_letters("orion") == []
        assert await box.dead_letters() == []  # no uplink: all of them
    assert refusals == [("buffer_error", "buffer: unknown uplink, got 'orino'; configured: orion, mqtt")] * 3

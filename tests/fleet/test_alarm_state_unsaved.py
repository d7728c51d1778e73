"""An alarm raised while its state cannot be saved is still raised, and the state is saved once it can be.

The alarm state was written on the loop, unsynced, and a failed write ended the tick: with the data
directory's disk full or remounted read-only after an error, the engine had already marked the alarm
raised, so it was never logged, mailed or sent, and no later tick raised it again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway.app import Gateway
from tests.fleet.conftest import Clock, gateway_config
from tests.support.ports import free_port


async def test_an_alarm_is_raised_while_its_state_cannot_be_saved(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # free disk is always below 101 %: raised at the first tick
    rules = {"alarms": {"rules": [{"kind": "disk_low", "threshold": 101}]}}
    config = gateway_config(tmp_path, f"http://127.0.0.1:{free_port()}", rules)
    path = tmp_path / "data" / "alarms.json"
    path.mkdir(parents=True)  # nothing can be renamed over a directory: the write fails as on a broken disk
    caplog.set_level(logging.INFO, logger="gateway.fleet.service")
    gw = Gateway(config)
    await gw.start()
    try:
        assert gw.fleet is not None
        for _ in range(3):
            await gw.fleet.tick(clock.now)
            clock.advance(10)
        assert [(e["event"], e["key"]) for e in gw.fleet.events] == [("raised", "disk_low:")]
        path.rmdir()
        await gw.fleet.tick(clock.now)  # nothing new happened: saved because the last save failed
        assert list(json.loads(path.read_text(encoding="utf-8"))["active"]) == ["disk_low:"]
    finally:
        await gw.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("alarm ", "fleet tick"))]
    assert len(lines) == 3, lines
    assert lines[0] == (
        f"alarm state not saved to {path}, got Is a directory; the alarms go on, a restart before it is saved "
        "may raise them again; tried again at the next tick"
    )
    assert lines[1].startswith("alarm raised: disk: ")
    assert lines[2] == f"alarm state saved again to {path}"

"""A real scanner adapter's readers on the dashboard: plugged shows online, unplugged shows offline (a warning row).

The scanner reports its readers as `{name: connected}` (a bool), not the `{name: {"state": …}}` of the other
families; read as the latter, every reader showed "unknown" whether it was there or not.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from gateway.web.i18n import Catalogs
from gateway.web.viewmodels.dashboard import DeviceRow, cells, dashboard
from tests.adapters.scanner.test_adapter import make, until


def status(diagnostics: dict[str, Any]) -> dict[str, Any]:
    return {"adapters": [{"name": "lib", "type": "scanner", "state": "running", "diagnostics": diagnostics}]}


async def test_a_plugged_reader_is_online_and_an_unplugged_one_offline(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    doc = {
        "stations": [{"id": "desk", "purpose": "lending"}],
        "scanners": [{"name": "hid", "station": "desk", "transport": "evdev", "path": str(dev / "*-event-kbd")}],
    }
    adapter, _, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    fifo = dev / "usb-scanner-event-kbd"
    name = f"hid:{fifo}"
    try:
        os.mkfifo(fifo)
        writer = os.open(fifo, os.O_RDWR)
        await until(lambda: adapter.connected.get(name) is True, "reader found")
        plugged = adapter.diagnostics()
        os.close(writer)
        await until(lambda: adapter.connected.get(name) is False, "reader lost")
        unplugged = adapter.diagnostics()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    catalogs = Catalogs()

    def t(key: str, **kw: Any) -> str:
        return catalogs.translate("ja", key, **kw)

    for diagnostics, state, text, bad in (
        (plugged, "online", "オンライン", False),
        (unplugged, "offline", "オフライン", True),
    ):
        view = dashboard(status(diagnostics))
        (adapter_row,) = view.adapters
        assert adapter_row.devices == (DeviceRow(name=name, state=state, detail=""),)
        assert adapter_row.devices[0].bad is bad
        assert cells(view, t, str)[f"device.lib.{name}.state"] == text


def test_the_map_form_of_other_families_is_still_read() -> None:
    view = dashboard(status({"devices": {"a": {"state": "offline", "last_error": "timeout"}, "b": "nonsense"}}))
    assert view.adapters[0].devices == (
        DeviceRow(name="a", state="offline", detail="timeout"),
        DeviceRow(name="b", state="unknown", detail=""),
    )

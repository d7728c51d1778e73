"""The dashboard's count of offline devices: every family's form of its devices, and none offline is no problem.

The headline once counted adapters and uplinks only (tests/web/test_dashboard_offline_devices_headline.py has
the page through a real gateway).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway.web.i18n import Catalogs
from gateway.web.viewmodels.dashboard import dashboard, problem_texts


def test_the_count_takes_every_family_and_no_offline_device_is_no_problem() -> None:
    catalogs = Catalogs(strict=True)
    doc: dict[str, Any] = {
        "adapters": [
            {"name": "lib", "type": "scanner", "state": "running", "diagnostics": {"devices": {"r1": False}}},
            {
                "name": "cabinet",
                "type": "modbus",
                "state": "running",
                "diagnostics": {
                    "buses": {
                        "line": {"devices": {"g1": {"state": "offline"}, "g2": {"state": "online"}}},
                    }
                },
            },
        ]
    }
    view = dashboard(doc)
    assert (view.problems, view.offline_devices) == (("devices",), 2)
    for lang, text in (
        ("ja", "オフラインの機器が2台あります。アダプターの表で確認してください。"),
        ("en", "Devices offline: 2. See their rows in the adapters table."),
    ):
        assert problem_texts(view, partial(catalogs.translate, lang)) == [text]
    doc["adapters"][0]["diagnostics"]["devices"]["r1"] = True
    doc["adapters"][1]["diagnostics"]["buses"]["line"]["devices"]["g1"]["state"] = "online"
    assert (dashboard(doc).problems, dashboard(doc).offline_devices) == ((), 0)

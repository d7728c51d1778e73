"""Dashboard rows from the status document: a real gateway's document, and the control socket's additions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.fleet.alarms import AlarmEngine, Condition
from gateway.fleet.config import AlarmKind, AlarmsConfig, Severity
from gateway.web.viewmodels.dashboard import CapFill, DeviceRow, alarm_items, dashboard
from tests.support.orion_double import OrionDouble


async def real_status(tmp_path: Path, orion_url: str) -> dict[str, Any]:
    gw = Gateway(
        parse_config(
            {
                "gateway": {"id": "gw-dash", "data_dir": str(tmp_path)},
                "adapters": [{"name": "gauges", "type": "simulated", "rate": 0.001}],
                "uplinks": [{"name": "orion", "type": "orion", "url": orion_url}],
            }
        )
    )
    await gw.start()
    try:
        return await gw.status()
    finally:
        await gw.stop()


async def test_a_real_gateways_status_document_gives_rows(orion_double: OrionDouble, tmp_path: Path) -> None:
    doc = await real_status(tmp_path, orion_double.url)
    view = dashboard(doc)
    assert (view.gateway, view.version) == ("gw-dash", doc["version"])
    (adapter,) = view.adapters
    assert (adapter.name, adapter.type, adapter.summary) == (
        "gauges",
        "simulated",
        "river-level, 1 entities at 0.001/s",
    )
    (uplink,) = view.uplinks
    assert (uplink.name, uplink.type) == ("orion", "orion")
    assert set(uplink.backlog) == {"alert", "normal", "bulk"}
    # no caps in a bare gateway document: the fill is unknown, not 0 %
    assert [c.percent for c in view.caps] == [None, None, None]
    assert view.host.uptime_s is None and view.alerts == ()


def test_backlog_caps_host_alerts_and_devices() -> None:
    doc: dict[str, Any] = {
        "gateway": "gw-1",
        "version": "1.2.3",
        "started_at": 1000.0,
        "adapters": [
            {
                "name": "modbus-1",
                "type": "modbus",
                "state": "running",
                "since": 1000.0,
                "emitted": 12,
                "restarts": 1,
                "malformed": 2,
                "invalid": 1,
                "last_error": "",
                "diagnostics": {
                    "summary": "devices online 1/2 (not online: g2)",
                    "buses": {
                        "rs485": {
                            "port": "/dev/ttyUSB0",
                            "devices": {
                                "g1": {"state": "online", "last_error": ""},
                                "g2": {"state": "offline", "last_error": "timeout after 1.0 s"},
                            },
                        }
                    },
                },
            }
        ],
        "uplinks": [
            {
                "name": "orion",
                "type": "orion",
                "state": "backing-off",
                "delivered": 5,
                "last_error": "connection refused",
                "last_rejection": "",
                "last_delivery": 0,
            }
        ],
        "buffer": {
            "rows": 250,
            "bytes": 1024,
            "oldest_observed_age_s": 90.0,
            "oldest_appended_age_s": 60.0,
            "uplinks": {"orion": {"pending": {"alert": 1, "normal": 200, "bulk": 49}, "dead_letters": 3}},
            "dropped": {"bulk": {"max_rows": 7}, "normal": {}},
            "disk_full": False,
        },
        "host": {"uptime_s": 3600, "clock_synced": False, "mem_total": 1000, "mem_available": 250, "disk_total": 0},
        "buffer_caps": {"max_rows": 1000, "max_bytes": None, "max_age_s": 600},
        "alerts": [{"entity_id": "urn:x", "name": "waterLevel", "level": "warning", "since": 1.0, "value": 3.2}],
    }
    view = dashboard(doc)
    (adapter,) = view.adapters
    assert adapter.errors == 3
    assert adapter.devices == (
        DeviceRow(name="g1", state="online", detail="rs485 (/dev/ttyUSB0)"),
        DeviceRow(name="g2", state="offline", detail="rs485 (/dev/ttyUSB0): timeout after 1.0 s"),
    )
    assert [d.bad for d in adapter.devices] == [False, True]
    (uplink,) = view.uplinks
    assert dict(uplink.backlog) == {"alert": 1, "normal": 200, "bulk": 49}
    assert (uplink.backlog_total, uplink.oldest_pending_age_s, uplink.dead_letters) == (250, 90.0, 3)
    assert uplink.last_delivery is None and uplink.bad
    assert view.caps == (
        CapFill(name="rows", value=250.0, cap=1000.0, percent=25.0),
        CapFill(name="bytes", value=1024.0, cap=None, percent=None),
        CapFill(name="age", value=60.0, cap=600.0, percent=10.0),
    )
    assert view.dropped == 7
    assert (view.host.mem_percent, view.host.disk_percent, view.host.clock_synced) == (75.0, None, False)
    # g2 is offline under a running adapter: the headline counts it (it once said only uplinks and clock)
    assert view.problems == ("devices", "uplinks", "clock") and view.offline_devices == 1
    (alert,) = view.alerts
    assert (alert.entity_id, alert.level, alert.value, alert.unit) == ("urn:x", "warning", 3.2, "")


def test_a_document_of_another_shape_gives_empty_rows_not_errors() -> None:
    view = dashboard({"adapters": "nonsense", "uplinks": [None, 3], "buffer": [], "host": None})
    assert view.adapters == ()
    assert [u.name for u in view.uplinks] == ["", ""]
    assert view.gateway == "" and view.problems == ()


def test_cells_are_display_texts_in_the_users_language() -> None:
    from gateway.web.i18n import Catalogs
    from gateway.web.render import jst
    from gateway.web.viewmodels.dashboard import cells
    from gateway.web.viewmodels.formats import duration, size

    catalogs = Catalogs(strict=True)

    def t(key: str, /, **kw: Any) -> str:
        return catalogs.translate("en", key, **kw)

    doc: dict[str, Any] = {
        "gateway": "gw-1",
        "started_at": 1796365800.0,
        "host": {"uptime_s": 93784, "clock_synced": True, "cpu_percent": 12.4, "load1": 0.5},
        "uplinks": [{"name": "o", "state": "idle", "last_delivery": 0}],
        "buffer": {"rows": 10, "oldest_appended_age_s": 125, "uplinks": {"o": {"pending": {"normal": 2}}}},
        "buffer_caps": {"max_rows": 40, "max_age_s": 3600},
    }
    out = cells(dashboard(doc), t, jst)
    assert out["uptime"] == "1 d 2 h"
    assert out["clock"] == "synchronized"
    assert out["cpu"] == "12 % used, load average 0.50"
    assert out["started"] == "2026-12-04 15:30:00 JST"
    assert (out["uplink.o.state"], out["uplink.o.last_delivery"]) == ("idle (all sent)", "not yet")
    assert out["uplink.o.backlog.normal"] == "2"
    assert out["cap.rows"] == "10 (cap 40, 25 %)"
    assert out["cap.age"] == "2 min 5 s (cap 1 h 0 min, 3 %)"
    assert out["cap.bytes"] == "— (no cap)"
    assert [duration(s, t) for s in (None, 0, 59.9, 3600)] == ["—", "0 s", "59 s", "1 h 0 min"]
    assert [size(n) for n in (None, 512, 1536, 3 * 1024**3)] == ["—", "512 B", "1.5 KB", "3.0 GB"]


def test_the_gateways_own_alarms_and_safe_mode_are_worded_like_their_e_mails() -> None:
    """The fleet's alarm engine (as `edgegw status` and the e-mails see it) → the dashboard's alarm list."""
    engine = AlarmEngine(AlarmsConfig())
    held = [
        Condition(
            kind=AlarmKind.UPLINK_NOT_DELIVERING,
            subject="orion",
            severity=Severity.CRITICAL,
            detail="orion delivered nothing for 600 s",
        )
    ]
    engine.evaluate(held, 1_764_800_000.0)
    engine.evaluate(held, 1_764_800_000.0 + 3600)  # past every rule's duration: raised
    doc = {"fleet": {"alarms": engine.summary(), "safe_mode": {"active": True, "reason": "crash loop"}}}
    view = dashboard(doc)
    assert view.problems == ("alarms", "safe_mode") and view.safe_mode == "crash loop"
    (ja,) = alarm_items(view, "ja", lambda t: f"at {t}")
    (en,) = alarm_items(view, "en", lambda t: f"at {t}")
    assert (ja["title"], ja["level"], ja["severity"]) == ("上位連携 orion が配信していません", "重大", "critical")
    assert (en["title"], en["detail"]) == ("uplink orion is not delivering", "orion delivered nothing for 600 s")
    assert en["since"] == f"at {view.alarms[0].raised_at}"
    assert dashboard({}).alarms == () and dashboard({}).safe_mode == ""

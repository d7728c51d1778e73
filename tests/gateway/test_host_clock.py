"""Whether the gateway's clock is synchronised, when adjtimex(2) is refused (our units' ProtectClock=): what
systemd-timesyncd leaves in /run says it. Before, a timesyncd that had not synchronised yet read as "unknown", so
the Wi-Fi syslog receiver went on judging the APs' right clocks by the gateway's wrong one."""

from __future__ import annotations

from pathlib import Path

from gateway.host import clock_synced, timesyncd_synced


def test_timesyncd_running_and_not_synchronised_yet_is_false(tmp_path: Path) -> None:
    run = tmp_path / "timesync"
    run.mkdir()  # its RuntimeDirectory=, made when it starts
    assert timesyncd_synced(run) is False


def test_timesyncd_synchronised_since_boot_is_true(tmp_path: Path) -> None:
    run = tmp_path / "timesync"
    run.mkdir()
    (run / "synchronized").touch()
    assert timesyncd_synced(run) is True


def test_no_timesyncd_is_unknown(tmp_path: Path) -> None:
    # chrony or ntpd keep the clock: they leave no such directory, and nothing can be said from it
    assert timesyncd_synced(tmp_path / "timesync") is None
    (tmp_path / "file").write_text("not a directory")
    assert timesyncd_synced(tmp_path / "file") is None


def test_this_machines_kernel_answers_with_a_bool() -> None:
    # adjtimex is not refused here (no seccomp filter): the kernel's own answer, not the fallback's None
    assert clock_synced() in (True, False)

"""systemd/: the units as systemd reads them, supervisor-edgegw.conf's programs matching them, supervisord running them.

The supervisord test needs the `supervisor` package (Debian's, or PyPI's) and the verify test
`systemd-analyze`; each is skipped where its tool is not installed, saying so. The consistency
tests always run.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
CONF = REPO / "systemd" / "supervisor-edgegw.conf"
UNITS = {
    "edgegw": "edgegw.service",
    "edgegw-web": "edgegw-web.service",
    "edgegw-backup": "edgegw-backup.service",
    "edgegw-kiosk": "edgegw-kiosk.service",
}
ENTRY = "/opt/edgegw/.venv/bin/edgegw"


def _programs() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(CONF)
    return parser


def _settings(name: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def _unit(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _settings(name):
        out.setdefault(key, value)
    return out


def test_the_supervisor_programs_match_the_systemd_units() -> None:
    programs = _programs()
    assert sorted(s.removeprefix("program:") for s in programs.sections()) == sorted(UNITS)
    for program, unit_name in UNITS.items():
        p = programs[f"program:{program}"]
        unit = _unit(unit_name)
        assert p["user"] == unit["User"]
        assert p["environment"] == 'EDGEGW_CONFIG="/etc/edgegw/gateway.toml"'
        assert p["autorestart"] == "true"
        assert p["stopsignal"] == "TERM"
        if program == "edgegw-backup":  # the timer's --once is the loop under supervisord
            assert unit["ExecStart"] == p["command"].replace("backup scheduler", "backup scheduler --once")
            continue
        assert p["command"] == unit["ExecStart"]
        assert unit["Restart"] == "always"
        assert unit["KillSignal"] == "SIGTERM"
        assert int(p["stopwaitsecs"]) == int(unit["TimeoutStopSec"])
    # the kiosk is for boxes with lockers only: enabled by hand under either manager
    assert programs["program:edgegw-kiosk"]["autostart"] == "false"


def test_every_unit_file_has_its_program_or_timer() -> None:
    units = {p.name for p in (REPO / "systemd").glob("*.service")}
    assert units == set(UNITS.values())


def test_the_kiosk_unit_has_the_web_units_sandbox_and_less() -> None:
    web = _settings("edgegw-web.service")
    kiosk = _settings("edgegw-kiosk.service")
    sandbox = web[[k for k, _ in web].index("NoNewPrivileges") :]
    # everything the web UI is denied, the kiosk is denied too; only its memory is sized for its own job
    assert [s for s in sandbox if s not in kiosk] == [("MemoryMax", "384M")]
    assert _unit("edgegw-kiosk.service")["MemoryMax"] == "128M"
    for same in ("Type", "User", "Group", "Restart", "RestartSec", "TimeoutStopSec", "KillSignal", "StateDirectory"):
        assert _unit("edgegw-kiosk.service")[same] == _unit("edgegw-web.service")[same], same
    # the kiosk writes nothing but the web UI's state (its audit log) and reaches no device and no remote address
    assert ("ReadWritePaths", "/var/lib/edgegw/web") in kiosk
    assert [v for k, v in kiosk if k == "ReadWritePaths"] == ["/var/lib/edgegw/web"]
    assert ("IPAddressDeny", "any") in kiosk and ("IPAddressAllow", "localhost") in kiosk
    assert "SupplementaryGroups" not in dict(kiosk) and "DeviceAllow" not in dict(kiosk)


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here (Debian package `systemd`)")
def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    # the units as shipped, with the packaged entry point replaced by an executable that exists here (verify
    # checks that ExecStart's program is there; the directives, sections and references are checked as shipped)
    entry = tmp_path / "edgegw"
    entry.write_text("#!/bin/sh\nexit 0\n")
    entry.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for source in sorted((REPO / "systemd").glob("edgegw*")):
        (units / source.name).write_text(source.read_text().replace(ENTRY, str(entry)))
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *sorted(str(p) for p in units.iterdir())],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_kiosk_units_command_notifies_ready_serves_the_page_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`Type=notify`: READY=1 once the port is bound, STOPPING=1 and exit 0 on SIGTERM within TimeoutStopSec."""
    import socket
    import urllib.request

    from tests.backup.conftest import write_config

    config = write_config(tmp_path / "gateway.toml", tmp_path / "data")
    command = _unit("edgegw-kiosk.service")["ExecStart"].split()
    assert command[:3] == [ENTRY, "locker", "kiosk"]
    with socket.socket() as probe:  # a free port for the kiosk (the unit's is 8444)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(30)
    args = [a if a != "/etc/edgegw/gateway.toml" else str(config) for a in command[1:]]
    kiosk = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert notify.recv(1024) == b"READY=1\nSTATUS=serving"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and "予約資料の受け取り" in page.read().decode()
        kiosk.send_signal(signal.SIGTERM)
        assert notify.recv(1024) == b"STOPPING=1"
        out, err = kiosk.communicate(timeout=int(_unit("edgegw-kiosk.service")["TimeoutStopSec"]))
        assert kiosk.returncode == 0, err
        assert f"edgegw locker kiosk: listening on http://127.0.0.1:{port}/" in out
    finally:
        notify.close()
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.communicate()


SUPERVISORD = shutil.which("supervisord")


@pytest.mark.e2e
@pytest.mark.skipif(SUPERVISORD is None, reason="supervisord is not installed here (Debian package `supervisor`)")
def test_supervisord_starts_restarts_after_kill_9_and_stops_the_gateway_cleanly(tmp_path: Path) -> None:
    from tests.backup.conftest import write_config

    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "gateway.toml", data_dir)
    gateway = _programs()["program:edgegw"]
    sock = tmp_path / "supervisor.sock"
    conf = tmp_path / "supervisord.conf"
    # the packaged program, with this checkout's Python in place of /opt/edgegw and no user switch
    options = {k: v for k, v in gateway.items() if k not in ("user", "command", "stdout_logfile")}
    options["command"] = f"{sys.executable} -m gateway run --config {config}"
    options["directory"] = str(REPO)
    options["stdout_logfile"] = str(tmp_path / "gateway.log")
    conf.write_text(
        f"[unix_http_server]\nfile={sock}\n\n[supervisord]\nnodaemon=true\nlogfile={tmp_path / 'supervisord.log'}\n"
        f"pidfile={tmp_path / 'supervisord.pid'}\n\n"
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{sock}\n\n[program:edgegw]\n"
        + "".join(f"{k}={v}\n" for k, v in options.items())
    )
    assert SUPERVISORD is not None
    daemon = subprocess.Popen([SUPERVISORD, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl(*args: str) -> str:
        return subprocess.run(
            [shutil.which("supervisorctl") or "supervisorctl", "-c", str(conf), *args],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def running_pid(not_pid: int | None = None) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = ctl("status", "edgegw")
            if "RUNNING" in line:
                pid = int(line.split("pid ")[1].split(",")[0])
                if pid != not_pid:
                    return pid
            time.sleep(0.2)
        raise AssertionError(f"edgegw not RUNNING: {ctl('status')}")

    try:
        pid = running_pid()
        os.kill(pid, signal.SIGKILL)
        again = running_pid(not_pid=pid)
        assert again != pid
        ctl("stop", "edgegw")
        assert "STOPPED" in ctl("status", "edgegw")  # not FATAL/killed: it left on SIGTERM within stopwaitsecs
        log = (tmp_path / "gateway.log").read_text()
        # the kill -9 above is logged as such; the stop must be a clean exit on SIGTERM, no SIGKILL after it
        stopping = (tmp_path / "supervisord.log").read_text().rpartition("waiting for edgegw to stop")[2]
        assert "stopped: edgegw (exit status 0)" in stopping and "SIGKILL" not in stopping
        assert "stopped" in log.lower()
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)

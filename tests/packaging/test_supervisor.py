"""systemd/supervisor-edgegw.conf: the systemd units' restart and stop behaviour, and supervisord running the gateway.

The supervisord test needs the `supervisor` package (Debian's, or PyPI's); it is skipped where it is
not installed, saying so. The consistency test always runs.
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
UNITS = {"edgegw": "edgegw.service", "edgegw-web": "edgegw-web.service", "edgegw-backup": "edgegw-backup.service"}


def _programs() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(CONF)
    return parser


def _unit(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), value.strip())
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

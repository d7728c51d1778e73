"""`sudo edgegw locker open|kiosk` leave every file they make in the web state directory to the gateway's user, and
the kiosk serves as that user once its port is bound.

Before, both left web/, audit.db, audit.head and the audit key root's: the web UI (User=edgegw) could then not
start, `edgegw user list` as the gateway's user said Permission denied, and `audit verify` took the unreadable
audit.head for entries deleted. The gateway's user is played by uid 65534 (setpriv), root by this test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.gateway.secret_files import (
    GATEWAY_USER,
    ROOT,
    by_root,
    data_dir,
    edgegw,
    needs_root,
    python_both_may_run,
    write_config,
)
from tests.web.test_cli import free_port
from tests.web.test_cli_as_root import credentials

__all__ = ["data_dir", "python_both_may_run"]  # the fixtures
pytestmark = needs_root


def not_the_gateways(top: Path) -> list[str]:
    return [
        f"{p} {p.lstat().st_uid}:{p.lstat().st_gid}"
        for p in (top, *top.rglob("*"))
        if (p.lstat().st_uid, p.lstat().st_gid) != (GATEWAY_USER, GATEWAY_USER)
    ]


def test_locker_open_by_root_leaves_the_audit_log_to_the_gateways_user(data_dir: Path) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    done = edgegw("locker", "open", "A-01", "-c", str(config))
    assert done.returncode == 2, done.stderr  # no gateway running: refused, and audited as refused
    assert "the gateway did not answer" in done.stderr
    assert (data_dir / "web" / "audit.head").exists()
    assert not_the_gateways(data_dir) == []
    verified = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert (verified.returncode, verified.stderr) == (0, "")
    assert verified.stdout == f"audit log {data_dir / 'web' / 'audit.db'}: OK, 1 entries verified\n"
    listed = edgegw("user", "list", "-c", str(config), uid=GATEWAY_USER)
    assert (listed.returncode, listed.stderr) == (0, "")


def test_locker_kiosk_by_root_leaves_the_web_state_to_the_gateways_user_and_serves_as_it(
    data_dir: Path, python_both_may_run: str
) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    port = free_port()
    with subprocess.Popen(
        [python_both_may_run, "-m", "gateway", "locker", "kiosk", "--port", str(port), "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "EDGEGW_USER": "nobody"},
    ) as kiosk:
        try:
            assert kiosk.stdout is not None
            assert kiosk.stdout.readline() == f"edgegw locker kiosk: listening on http://127.0.0.1:{port}/\n"
            # while it serves, not only once it stops: the web UI may start meanwhile
            assert (data_dir / "web" / "audit.db").exists()
            assert not_the_gateways(data_dir) == []
            assert credentials(kiosk.pid) == {
                "Uid": [GATEWAY_USER] * 4,
                "Gid": [GATEWAY_USER] * 4,
                "Groups": [GATEWAY_USER],
            }
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:  # as that user
                assert page.status == 200
            kiosk.send_signal(signal.SIGTERM)
            _, journal = kiosk.communicate(timeout=15)
            assert kiosk.returncode == 0, journal
            assert "locker kiosk: started as root, runs as nobody (uid 65534) from now on" in journal
        finally:
            if kiosk.poll() is None:
                kiosk.kill()
    assert not_the_gateways(data_dir) == []
    verified = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_locker_kiosk_by_root_that_cannot_become_the_gateways_user_stops_naming_it(
    data_dir: Path, python_both_may_run: str
) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    done = by_root(
        python_both_may_run,
        *("locker", "kiosk", "--port", str(free_port()), "-c", str(config)),
        before=("setpriv", "--bounding-set=-setuid,-setgid"),  # root without the capabilities to change user
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""  # never said it listens: nothing served as root
    assert done.stderr.endswith(
        "locker kiosk: started as root, could not become nobody (uid 65534), the gateway's account "
        "(Operation not permitted); start it as that account (systemctl start edgegw-kiosk)\n"
    )

"""`sudo edgegw web` leaves what it makes in the web state directory to the gateway's user.

Before, web/, its stores, the TLS key and certificate, the audit key and audit.head stayed root's, and the web UI
run by its unit (User=edgegw) then stopped at "cannot start, got Permission denied: …/web/tls-cert.pem". The
gateway's user is played by uid 65534 (setpriv), root by this test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.gateway.secret_files import GATEWAY_USER, ROOT, data_dir, edgegw, needs_root, write_config
from tests.web.test_cli import free_port

__all__ = ["data_dir"]  # the fixture
pytestmark = needs_root


def not_the_gateways(top: Path) -> list[str]:
    return [str(p) for p in (top, *top.rglob("*")) if (p.lstat().st_uid, p.lstat().st_gid) != (GATEWAY_USER,) * 2]


def serve_once(config: Path, uid: int | None = None) -> tuple[int, str, str]:
    """`edgegw web` until it says its setup link (or stops), then SIGTERM: its exit code, the lines, the journal."""
    switch = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    with subprocess.Popen(
        [*switch, sys.executable, "-m", "gateway", "web", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as web:
        try:
            assert web.stdout is not None
            lines = [web.stdout.readline(), web.stdout.readline()]
            web.send_signal(signal.SIGTERM)
            out, journal = web.communicate(timeout=15)
        finally:
            if web.poll() is None:
                web.kill()
    return web.returncode, "".join(lines) + out, journal


def test_web_by_root_leaves_its_files_to_the_gateways_user_who_can_then_serve(data_dir: Path) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    with config.open("a") as f:
        f.write(f'\n[web]\nlisten = ["127.0.0.1"]\nport = {free_port()}\n')
    code, out, journal = serve_once(config)
    assert code == 0, journal
    assert "no admin yet" in out  # the setup link is audited: audit.head written, and replaced
    assert (data_dir / "web" / "audit.head").exists()
    assert not_the_gateways(data_dir) == []
    # the web UI's unit, as the gateway's user, starts on them, and the log verifies
    code, out, journal = serve_once(config, uid=GATEWAY_USER)
    assert code == 0, journal
    assert "listening on" in out
    verified = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert (verified.returncode, verified.stderr) == (0, ""), verified.stdout

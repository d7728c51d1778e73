"""`sudo edgegw web` leaves what it makes in the web state directory to the gateway's user, and serves as that user.

Before, web/, its stores, the TLS key and certificate, the audit key and audit.head stayed root's, and the web UI
run by its unit (User=edgegw) then stopped at "cannot start, got Permission denied: …/web/tls-cert.pem". It also
went on serving the network as root. The gateway's user is played by uid 65534 (setpriv), root by this test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

from gateway.web.certs import make_self_signed
from gateway.web.config import WebConfig
from tests.gateway.secret_files import (
    GATEWAY_USER,
    ROOT,
    by_root,
    data_dir,
    edgegw,
    needs_root,
    owner,
    python_both_may_run,
    write_config,
)
from tests.web.test_cli import free_port

__all__ = ["data_dir", "python_both_may_run"]  # the fixtures
pytestmark = needs_root


def not_the_gateways(top: Path) -> list[str]:
    return [str(p) for p in (top, *top.rglob("*")) if (p.lstat().st_uid, p.lstat().st_gid) != (GATEWAY_USER,) * 2]


def serve_once(python: str, config: Path, uid: int | None = None) -> tuple[int, str, str]:
    """`edgegw web` until it says its setup link (or stops), then SIGTERM: its exit code, the lines, the journal."""
    with serving(python, config, uid=uid) as web:
        assert web.process.stdout is not None
        second = web.process.stdout.readline()
    return web.process.returncode, web.first + second + web.out, web.journal


def test_web_by_root_leaves_its_files_to_the_gateways_user_who_can_then_serve(
    data_dir: Path, python_both_may_run: str
) -> None:
    config = ui_config(data_dir.parent / "gw.toml", data_dir)
    code, out, journal = serve_once(python_both_may_run, config)
    assert code == 0, journal
    assert "no admin yet" in out  # the setup link is audited: audit.head written, and replaced
    assert (data_dir / "web" / "audit.head").exists()
    assert not_the_gateways(data_dir) == []
    # the web UI's unit, as the gateway's user, starts on them, and the log verifies
    code, out, journal = serve_once(sys.executable, config, uid=GATEWAY_USER)
    assert code == 0, journal
    assert "listening on" in out
    verified = edgegw("audit", "verify", "-c", str(config), uid=GATEWAY_USER)
    assert (verified.returncode, verified.stderr) == (0, ""), verified.stdout


def credentials(pid: int) -> dict[str, list[int]]:
    """The Uid (real, effective, saved, file system), Gid and Groups lines of `pid`'s /proc status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: [int(v) for v in rest.split()] for k, _, rest in (ln.partition(":") for ln in lines) if k in WHO}


WHO = ("Uid", "Gid", "Groups")


@dataclass
class Served:
    process: subprocess.Popen[str]
    first: str  # its first line: where it listens
    out: str = ""  # the rest of its lines and its journal, once stopped
    journal: str = ""

    @property
    def url(self) -> str:
        return self.first.removeprefix("edgegw web: listening on ").strip()


@contextmanager
def serving(python: str, config: Path, *, uid: int | None = None, account: str = "nobody") -> Iterator[Served]:
    """`edgegw web` started by root (or by `uid` from the start), once it says where it listens; SIGTERM after,
    its output then kept. `account` plays the gateway's account (edgegw on a box)."""
    switch = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    with subprocess.Popen(
        [*switch, python, "-m", "gateway", "web", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "EDGEGW_USER": account},
    ) as web:
        try:
            assert web.stdout is not None
            first = web.stdout.readline()
            assert first.startswith("edgegw web: listening on "), first + web.communicate(timeout=15)[1]
            served = Served(web, first)
            yield served
            web.send_signal(signal.SIGTERM)
            served.out, served.journal = web.communicate(timeout=15)
        finally:
            if web.poll() is None:
                web.kill()


def login_page(url: str) -> int:
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE  # its own self-signed certificate
    with urllib.request.urlopen(f"{url}login", context=unverified, timeout=10) as page:
        return int(page.status)


def ui_config(config: Path, data: Path, web: str = "") -> Path:
    """A gateway config at `config` over `data`, its web UI on a free loopback port; `web`: more [web] lines."""
    write_config(config, data)
    with config.open("a") as f:
        f.write(f'\n[web]\nlisten = ["127.0.0.1"]\nport = {free_port()}\n{web}')
    return config


def web_stops(python: str, config: Path, *, before: tuple[str, ...] = (), path: Path = ROOT) -> CompletedProcess[str]:
    """`edgegw web` started by root (through `before`, a setpriv), expected to stop on its own."""
    return by_root(python, "web", "-c", str(config), before=before, path=path)


def test_web_by_root_serves_as_the_gateways_user_once_bound(data_dir: Path, python_both_may_run: str) -> None:
    config = ui_config(data_dir.parent / "gw.toml", data_dir)
    with serving(python_both_may_run, config) as web:
        pid = web.process.pid
        assert credentials(pid) == {"Uid": [GATEWAY_USER] * 4, "Gid": [GATEWAY_USER] * 4, "Groups": [GATEWAY_USER]}
        assert login_page(web.url) == 200  # its pages, templates and stores, as that user
    assert web.process.returncode == 0, web.journal
    assert "web: started as root, runs as nobody (uid 65534) from now on" in web.journal
    assert not_the_gateways(data_dir) == []  # the setup link's audit entry, written after the switch


def test_web_state_elsewhere_is_made_by_the_gateways_user(data_dir: Path, python_both_may_run: str) -> None:
    """[web] state_dir in a root-owned directory (an admin's layout): the process is the gateway's user (the data
    directory's owner) before it makes a file there, so nothing there is ever root's."""
    with tempfile.TemporaryDirectory(prefix="edgegw-root-web-") as name:
        top = Path(name)
        top.chmod(0o755)
        state = top / "srv" / "web"
        state.mkdir(parents=True, mode=0o700)
        os.chown(state, GATEWAY_USER, GATEWAY_USER)
        config = ui_config(top / "gw.toml", data_dir, f'state_dir = "{state}"\n')
        with serving(python_both_may_run, config) as web:
            assert credentials(web.process.pid)["Uid"] == [GATEWAY_USER] * 4
            assert login_page(web.url) == 200
        assert web.process.returncode == 0, web.journal
        assert "runs as nobody (uid 65534) from now on" in web.journal
        assert (state / "accounts.db").exists()
        assert not_the_gateways(state) == []


def test_web_by_root_stays_root_and_says_why_without_the_gateways_account(
    data_dir: Path, python_both_may_run: str
) -> None:
    """A box without the gateway's account (a developer's): no one to become, as before, and the log says so."""
    config = ui_config(data_dir.parent / "gw.toml", data_dir)
    with serving(python_both_may_run, config, account="edgegw-not-here") as web:
        assert credentials(web.process.pid)["Uid"] == [0] * 4
        assert login_page(web.url) == 200
    assert web.process.returncode == 0, web.journal
    assert "web: runs as root, as started: this box has no account edgegw-not-here to become" in web.journal
    assert "systemctl start edgegw-web" in web.journal


def test_web_by_root_becomes_the_gateways_account_whatever_owns_the_configured_data(
    data_dir: Path, python_both_may_run: str
) -> None:
    """The account is root's choice, never what the config names: the gateway's account may rewrite the config
    (the web UI's config apply does) and point data_dir at another account's directory. Before, the UI became
    that directory's owner (review: postgres, with its ssl-cert group)."""
    other = data_dir.parent / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 4242, 4242)
    config = ui_config(data_dir.parent / "gw.toml", other)
    done = web_stops(python_both_may_run, config)
    assert "web: started as root, runs as nobody (uid 65534) from now on" in done.stderr
    assert "4242" not in done.stderr.split("from now on")[0]
    assert done.returncode == 1  # as its unit would: the gateway's account may not write there
    assert f"Permission denied: '{other / 'web'}" in done.stderr
    assert (
        f"; {other} and what it holds must be the gateway's account's (nobody), as its unit runs: sudo chown -R "
        f"nobody: {other} (a new box: sudo install -d -o nobody -g nobody -m 0750 {other})"
    ) in done.stderr
    assert sorted(other.iterdir()) == []  # nothing made there as root


def test_web_by_root_never_uses_a_state_directory_reached_through_a_planted_link(
    data_dir: Path, python_both_may_run: str
) -> None:
    """A state directory reached through a link the gateway's account planted (into another account's directory,
    next to a root-only file) is used as that account, never as root. Before, the UI became that other account and
    gave it the root-only file."""
    with tempfile.TemporaryDirectory(prefix="edgegw-victim-") as name:
        victim = Path(name)
        victim.chmod(0o755)  # root's, as /etc is
        (victim / "web").mkdir(mode=0o750)
        os.chown(victim / "web", 4242, 4242)  # another account's directory
        (victim / "web" / "root-only.conf").write_text("secret\n")
        (data_dir / "ui").symlink_to(victim)  # planted by the gateway's account: its own directory
        os.lchown(data_dir / "ui", GATEWAY_USER, GATEWAY_USER)
        config = ui_config(data_dir.parent / "gw.toml", data_dir, f'state_dir = "{data_dir / "ui" / "web"}"\n')
        done = web_stops(python_both_may_run, config)
        assert "runs as nobody (uid 65534) from now on" in done.stderr
        assert "listening on" not in done.stdout  # as the gateway's account, 4242's directory is not writable
        assert done.returncode == 1
        tls = data_dir / "ui" / "web" / "tls-cert.pem"
        assert f"web: cannot start, got [Errno 13] Permission denied: '{tls}'" in done.stderr  # as its unit would
        assert "Traceback" not in done.stderr
        assert owner(victim / "web" / "root-only.conf")[:2] == (0, 0)
        assert sorted(p.name for p in (victim / "web").iterdir()) == ["root-only.conf"]  # nothing made by root


def test_web_by_root_that_cannot_become_the_gateways_user_stops_naming_it(
    data_dir: Path, python_both_may_run: str
) -> None:
    config = ui_config(data_dir.parent / "gw.toml", data_dir)
    # root without the capabilities to change user (a container's, a unit's CapabilityBoundingSet)
    done = web_stops(python_both_may_run, config, before=("setpriv", "--bounding-set=-setuid,-setgid"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "listening on" not in done.stdout  # never served as root
    assert done.stderr.endswith(
        "edgegw web: started as root, could not become nobody (uid 65534), the gateway's account "
        "(Operation not permitted); start it as that account (systemctl start edgegw-web)\n"
    )


def test_web_by_root_that_could_not_read_its_own_code_as_the_gateways_user_stops_naming_it(
    data_dir: Path, python_both_may_run: str
) -> None:
    """The code in a directory only root may enter (a venv under /root): as the gateway's user every page would
    fail at its first import; it stops instead, saying so."""
    with tempfile.TemporaryDirectory(prefix="edgegw-roots-code-") as name:  # 0700, root's
        for package in ("gateway", "adapters", "firmware_profiles"):
            shutil.copytree(ROOT / package, Path(name) / package, ignore=shutil.ignore_patterns("__pycache__"))
        config = ui_config(data_dir.parent / "gw.toml", data_dir)
        done = web_stops(python_both_may_run, config, path=Path(name))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "listening on" not in done.stdout
    assert (
        f"edgegw web: started as root and now nobody (uid 65534), which may not read {name}, where the Python it "
        "runs on imports from"
    ) in done.stderr


def test_web_by_root_refuses_a_port_below_1024_from_the_config(data_dir: Path, python_both_may_run: str) -> None:
    """The config is the gateway's account's to write: root bound 631 for it, which it may not bind, and held it
    (a real service restarting there then failed)."""
    config = ui_config(data_dir.parent / "gw.toml", data_dir)
    config.write_text(re.sub(r"(?m)^port = \d+$", "port = 631", config.read_text()))
    done = web_stops(python_both_may_run, config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "edgegw web: [web] port 631 is below 1024: started as root it would be bound for whoever" in done.stderr
    assert "listening on" not in done.stdout


def test_admin_tls_files_only_root_may_read_are_named_with_the_fix(data_dir: Path, python_both_may_run: str) -> None:
    with tempfile.TemporaryDirectory(prefix="edgegw-tls-") as name:  # 0700, root's: as /etc/ssl/private
        tls = Path(name)
        make_self_signed(tls, WebConfig())
        cert = tls / "tls-cert.pem"
        config = ui_config(
            data_dir.parent / "gw.toml", data_dir, f'tls_cert = "{cert}"\ntls_key = "{tls / "tls-key.pem"}"\n'
        )
        done = web_stops(python_both_may_run, config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.endswith(
        f"edgegw web: web.tls_cert: '{cert}' is not readable by the gateway's account (nobody), which the UI reads it "
        f"as; sudo chgrp nobody '{cert}' && sudo chmod 0640 '{cert}' (and its directories searchable by nobody)\n"
    )


def test_fingerprint_by_root_reads_the_state_as_the_gateways_account(data_dir: Path, python_both_may_run: str) -> None:
    """The state directory is the gateway's account's: a link it put there to a file only root may read (or a
    device, a pipe) was read by root. Now the files are read as that account, as the server reads them."""
    with tempfile.TemporaryDirectory(prefix="edgegw-tls-") as name:  # 0700, root's
        make_self_signed(Path(name), WebConfig())
        (data_dir / "web").mkdir(mode=0o700)
        os.chown(data_dir / "web", GATEWAY_USER, GATEWAY_USER)
        for pem in ("tls-cert.pem", "tls-key.pem"):
            (data_dir / "web" / pem).symlink_to(Path(name) / pem)
        config = ui_config(data_dir.parent / "gw.toml", data_dir)
        done = by_root(python_both_may_run, "web", "fingerprint", "-c", str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SHA-256" not in done.stdout
    cert = data_dir / "web" / "tls-cert.pem"
    assert done.stderr == (
        f"edgegw web fingerprint: [Errno 13] Permission denied: '{cert}'; {data_dir} and what it holds must be the "
        f"gateway's account's (nobody), as its unit runs: sudo chown -R nobody: {data_dir} (a new box: sudo install "
        f"-d -o nobody -g nobody -m 0750 {data_dir})\n"
    )

"""`sudo edgegw user|audit|wifi …` and `sudo edgegw locker open` become the gateway's account before they open a file
of its state, and their audit entries still name who ran them (`cli:root`).

Before, they stayed root for their whole life and opened accounts.db, the audit log, the Wi-Fi log and the secret
stores by path in directories that account owns: a link it planted at accounts.db had root make an SQLite file
wherever it led (review, brief cliroot), and everything root made in a `[web] state_dir` outside the data directory
stayed root's (hand_over gives files back to the parent directory's owner, root there). The gateway's account is
played by nobody (EDGEGW_USER, uid 65534, as tests/web/test_cli_as_root.py does), root by this test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.secret_files import (
    GATEWAY_USER,
    ROOT,
    data_dir,
    needs_root,
    owner,
    python_both_may_run,
    run_as,
    write_config,
)

__all__ = ["data_dir", "python_both_may_run"]  # the fixtures
pytestmark = needs_root

PASSWORD = "a long enough pass phrase 7\n"
MAC = "aa:bb:cc:01:02:03"
MAKE_WIFI_LOG = """
from datetime import UTC, datetime
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
store = WifiLogStore(data)
store.apply([SessionEvent(nas="id:ap1", session_id="s1", kind=EventKind.START,
                          time=datetime(2026, 1, 15, 10, tzinfo=UTC), client_mac="aa:bb:cc:01:02:03")])
store.publish_public_key()
store.close()
"""

# an entry the web UI wrote in 2023, for `audit purge` to remove (and record, naming who purged)
OLD_ENTRY = """
from gateway.audit.log import AuditLog
AuditLog(Path("{state}")).append(actor="web", action="login.failed", target="taro", at=1_700_000_000.0)
"""


def as_root(
    python: str, *args: str, stdin: str = "", account: str = "nobody", before: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`edgegw <args>` started by root (through `before`, a setpriv), `account` playing the gateway's account."""
    return subprocess.run(
        [*before, python, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "EDGEGW_USER": account},
        timeout=60,
        check=False,
    )


def not_the_accounts(top: Path) -> list[str]:
    return [str(p) for p in (top, *top.rglob("*")) if (p.lstat().st_uid, p.lstat().st_gid) != (GATEWAY_USER,) * 2]


@pytest.fixture
def roots_only() -> Iterator[Path]:
    """A directory only root may enter (0700), as /root or /etc/ssl/private."""
    with tempfile.TemporaryDirectory(prefix="edgegw-roots-only-") as name:
        yield Path(name)


@pytest.fixture
def state_elsewhere(data_dir: Path) -> Path:
    """`[web] state_dir` in a root-owned directory (an admin's layout), the state directory itself the account's:
    hand_over gives nothing back there (the parent is root's), so whatever root makes in it stays root's."""
    srv = data_dir.parent / "srv"
    srv.mkdir(mode=0o755)
    state = srv / "web"
    state.mkdir(mode=0o700)
    os.chown(state, GATEWAY_USER, GATEWAY_USER)
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    with config.open("a") as f:
        f.write(f'\n[web]\nstate_dir = "{state}"\n')
    return state


def config_of(data_dir: Path) -> str:
    return str(data_dir.parent / "gw.toml")


def test_user_add_by_root_never_makes_a_database_through_a_link_the_account_planted(
    data_dir: Path, python_both_may_run: str, roots_only: Path
) -> None:
    web = data_dir / "web"
    web.mkdir(mode=0o700)
    os.chown(web, GATEWAY_USER, GATEWAY_USER)
    (web / "accounts.db").symlink_to(roots_only / "planted.db")  # by the account, in its own directory
    os.lchown(web / "accounts.db", GATEWAY_USER, GATEWAY_USER)
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    done = as_root(
        python_both_may_run, "user", "add", "alice", "--role", "admin", "--password-stdin", "-c", str(config),
        stdin=PASSWORD,
    )  # fmt: skip
    assert sorted(roots_only.iterdir()) == []  # before, root made planted.db there
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"user add: cannot use {web}, got [Errno 13] Permission denied: '{web / 'accounts.db'}'; {data_dir} and what "
        f"it holds must be the gateway's account's (nobody), as its unit runs: sudo chown -R nobody: {data_dir} (a new "
        f"box: sudo install -d -o nobody -g nobody -m 0750 {data_dir})\n"
    )


def test_every_file_the_commands_make_is_the_accounts_and_every_entry_names_root(
    data_dir: Path, state_elsewhere: Path, python_both_may_run: str
) -> None:
    made = run_as(GATEWAY_USER, data_dir, MAKE_WIFI_LOG + OLD_ENTRY.format(state=state_elsewhere))
    assert made.returncode == 0, made.stderr
    config = config_of(data_dir)
    py = python_both_may_run
    runs = [
        as_root(py, "user", "setup-link", "-c", config),  # no admin yet
        as_root(py, "user", "add", "alice", "--role", "viewer", "--password-stdin", "-c", config, stdin=PASSWORD),
        as_root(py, "user", "passwd", "alice", "--password-stdin", "-c", config, stdin="another pass phrase 8\n"),
        as_root(py, "user", "unlock", "alice", "-c", config),
        as_root(py, "user", "list", "-c", config),
        as_root(py, "wifi", "search", "--reference", "R-1", "--mac", MAC, "-c", config),
        as_root(py, "wifi", "certificates", "-c", config),
        as_root(py, "audit", "purge", "-c", config),
        as_root(py, "user", "remove", "alice", "-c", config),
        as_root(py, "audit", "verify", "-c", config),
    ]
    assert [(r.returncode, r.stderr) for r in runs] == [(0, "")] * len(runs)
    locker = as_root(py, "locker", "open", "A-01", "-c", config)  # no gateway running: refused, and audited
    assert locker.returncode == 2, locker.stderr
    assert locker.stderr.startswith(f"locker open: the gateway did not answer on {data_dir / 'control.sock'}, got ")
    shown = as_root(py, "audit", "show", "-c", config)
    assert shown.returncode == 0, shown.stderr
    entries = [line.strip().split("  ")[2:4] for line in shown.stdout.splitlines()]
    assert entries == [
        ["cli:root", "locker.unlock"],
        ["cli:root", "user.remove"],
        ["cli:root", "audit.purge"],
        ["cli:root", "wifi.search"],
        ["cli:root", "user.unlock"],
        ["cli:root", "user.password"],
        ["cli:root", "user.add"],
        ["cli:root", "user.setup_link"],
    ]  # the web UI's old entry purged
    assert (state_elsewhere / "accounts.db").exists()
    assert not_the_accounts(state_elsewhere) == []  # before: accounts.db, audit.db, its key … root's
    assert not_the_accounts(data_dir) == []


def test_wifi_export_by_root_writes_where_the_admin_asked_and_the_state_as_the_account(
    data_dir: Path, state_elsewhere: Path, python_both_may_run: str, roots_only: Path
) -> None:
    made = run_as(GATEWAY_USER, data_dir, MAKE_WIFI_LOG)
    assert made.returncode == 0, made.stderr
    out = roots_only / "inquiry.csv"  # the admin's home: the account may not even enter it
    config = config_of(data_dir)
    done = as_root(python_both_may_run, "wifi", "export", "--reference", "R-2", "--mac", MAC, "--out", str(out),
                   "-c", config)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    assert done.stdout.startswith(f"{out}: 1 sessions, sha256 ")
    assert [owner(p) for p in sorted(roots_only.iterdir())] == [(0, 0, 0o600)] * 2  # the CSV and its manifest
    assert MAC in out.read_text(encoding="utf-8-sig")
    verified = as_root(python_both_may_run, "wifi", "verify-export", str(out), "-c", config)
    assert (verified.returncode, verified.stdout) == (0, f"{out}: OK, signature and content verified\n")
    shown = as_root(python_both_may_run, "audit", "show", "--action", "wifi.export", "-c", config)
    assert shown.stdout.strip().split("  ")[2:5] == ["cli:root", "wifi.export", "R-2"]
    assert not_the_accounts(state_elsewhere) == []  # the audit log and its key made as the account
    assert not_the_accounts(data_dir) == []


def test_wifi_export_that_fails_after_root_made_its_files_leaves_none(
    data_dir: Path, python_both_may_run: str, roots_only: Path
) -> None:
    """The audit log cannot be written as the account (a state directory an earlier version left root's): the
    export stops before it discloses anything, and root, which made the files, removes them."""
    made = run_as(GATEWAY_USER, data_dir, MAKE_WIFI_LOG)
    assert made.returncode == 0, made.stderr
    (data_dir / "web").mkdir(mode=0o700)  # root's
    out = roots_only / "inquiry.csv"
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    done = as_root(python_both_may_run, "wifi", "export", "--reference", "R-3", "--mac", MAC, "--out", str(out),
                   "-c", str(config))  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"wifi export: {data_dir / 'web'}: not accessible to user nobody, ")
    assert done.stderr.endswith(SECRET_STORE_FIX.format(data=data_dir))
    assert sorted(roots_only.iterdir()) == []  # no half export left
    assert sorted((data_dir / "web").iterdir()) == []  # nothing written there as root


# the account store's file refused: the web server's fix; the audit log's secret store checks its own directory
# first and says whose it may be given to, and how to look before
OWNERSHIP_FIX = (
    "; {data} and what it holds must be the gateway's account's (nobody), as its unit runs: sudo chown -R nobody: "
    "{data} (a new box: sudo install -d -o nobody -g nobody -m 0750 {data})\n"
)
SECRET_STORE_FIX = (
    ": check who owns it and what it holds (`sudo ls -la {data}/web`); only if it holds nothing but the gateway's "
    "files (buffer.db, secrets.key, secrets.enc and the like) give it and all in it to the gateway's user, else give "
    "the gateway a directory of its own, e.g. `sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, and set "
    "gateway.data_dir to it\n"
)


@pytest.mark.parametrize(
    ("command", "fix"),
    [
        (("user", "list"), OWNERSHIP_FIX),
        (("audit", "show"), SECRET_STORE_FIX),
        (("wifi", "search", "--reference", "R-4", "--mac", MAC), SECRET_STORE_FIX),
    ],
)
def test_a_state_directory_left_roots_is_refused_with_the_fix(
    data_dir: Path, python_both_may_run: str, command: tuple[str, ...], fix: str
) -> None:
    made = run_as(GATEWAY_USER, data_dir, MAKE_WIFI_LOG)
    assert made.returncode == 0, made.stderr
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    web = data_dir / "web"
    # an earlier version's `sudo edgegw user setup-link`, on a box where nothing gave its files back
    earlier = as_root(python_both_may_run, "user", "setup-link", "-c", str(config), account="edgegw-not-here")
    assert earlier.returncode == 0, earlier.stderr
    for p in (web, *web.rglob("*")):
        os.lchown(p, 0, 0)
    done = as_root(python_both_may_run, *command, "-c", str(config))
    assert done.returncode in (1, 2), done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"{' '.join(command[:2])}: ")
    assert f"{web}" in done.stderr.split(";")[0]  # the directory refused, named first
    assert done.stderr.endswith(fix.format(data=data_dir))
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [
        ("user", "list"),
        ("audit", "verify"),
        ("wifi", "certificates"),
        ("wifi", "export", "--reference", "R-5", "--out", "{out}"),
        ("locker", "open", "A-01"),
    ],
)
def test_root_that_cannot_become_the_account_stops_in_one_line_having_touched_nothing(
    data_dir: Path, python_both_may_run: str, roots_only: Path, command: tuple[str, ...]
) -> None:
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    args = [a.format(out=roots_only / "inquiry.csv") for a in command]
    # root without the capabilities to change user (a container's)
    done = as_root(python_both_may_run, *args, "-c", str(config), before=("setpriv", "--bounding-set=-setuid,-setgid"))
    what = " ".join(command[:2])
    assert done.returncode in (1, 2), done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.endswith(
        f"{what}: started as root, could not become nobody (uid 65534), the gateway's account (Operation not "
        f"permitted); run it as that account (sudo -u nobody edgegw {what} …)\n"
    )
    assert "Traceback" not in done.stderr
    assert sorted(data_dir.iterdir()) == []
    assert sorted(roots_only.iterdir()) == []  # the export's files, made by root first, removed


def test_without_the_account_root_works_as_before_and_hands_its_files_over(
    data_dir: Path, python_both_may_run: str, roots_only: Path
) -> None:
    made = run_as(GATEWAY_USER, data_dir, MAKE_WIFI_LOG)
    assert made.returncode == 0, made.stderr
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    out = roots_only / "inquiry.csv"
    py = python_both_may_run
    runs = [
        as_root(py, "user", "add", "alice", "--role", "admin", "--password-stdin", "-c", str(config), stdin=PASSWORD,
                account="edgegw-not-here"),
        as_root(py, "wifi", "export", "--reference", "R-6", "--mac", MAC, "--out", str(out), "-c", str(config),
                account="edgegw-not-here"),
        as_root(py, "audit", "show", "-c", str(config), account="edgegw-not-here"),
    ]  # fmt: skip
    assert [(r.returncode, r.stderr) for r in runs] == [(0, "")] * 3
    assert [line.strip().split("  ")[2] for line in runs[2].stdout.splitlines()] == ["cli:root", "cli:root"]
    assert sorted(p.name for p in roots_only.iterdir()) == ["inquiry.csv", "inquiry.csv.manifest.json"]
    assert not_the_accounts(data_dir) == []  # hand_over gave root's files back, as before


def test_wifi_export_whose_worker_is_killed_leaves_no_file(
    data_dir: Path, python_both_may_run: str, roots_only: Path
) -> None:
    """The export's worker, the account's, killed (the OOM killer, an admin's kill -9): root, which made the files
    and waits for it, removes them and exits as a shell reports a killed command."""
    made = run_as(GATEWAY_USER, data_dir, MAKE_WIFI_LOG)
    assert made.returncode == 0, made.stderr
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    out = roots_only / "inquiry.csv"
    argv = ["wifi", "export", "--reference", "R-7", "--mac", MAC, "--out", str(out), "-c", str(config)]
    with subprocess.Popen(
        [python_both_may_run, "-m", "gateway", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "EDGEGW_USER": "nobody"},
    ) as export:
        children = Path(f"/proc/{export.pid}/task/{export.pid}/children")
        deadline = time.monotonic() + 30
        while not (worker := children.read_text().split()) and export.poll() is None:
            assert time.monotonic() < deadline, "no worker forked"
        assert export.poll() is None, export.communicate()
        assert out.exists()  # made by root before the fork
        os.kill(int(worker[0]), signal.SIGKILL)
        stdout, stderr = export.communicate(timeout=30)
    assert (export.returncode, stdout, stderr) == (128 + signal.SIGKILL, "", "")
    assert sorted(roots_only.iterdir()) == []

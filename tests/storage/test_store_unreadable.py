"""A store's file that is no SQLite database (a hand-altered backup, a card that lost a write): refused by name.

Every store opened on such a file raised a bare `sqlite3.DatabaseError: file is not a database`, without
the file's name, and `edgegw web` / `edgegw run` stopped with a traceback (review F6). The file is left as
it is (personal data is never moved aside by itself: only the buffer salvages, on its own path).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.locker.pickup import PickupStore
from adapters.scanner.store import StationStore
from gateway.accounts.store import AccountStore
from gateway.audit.log import AuditLog
from gateway.control.config_versions import ConfigVersions
from gateway.errors import ConfigError
from gateway.mail.queue import MailQueue
from gateway.web.config import WebConfig
from gateway.wifilog.store import WifiLogStore
from tests.web.test_cli import free_port

GARBAGE = bytes(range(256)) * 32  # 8192 bytes that do not start as SQLite's do
FIX = (
    "the file is left as it is: restore another backup generation (`edgegw backup list`), or stop the services "
    "and move the file aside to start the store empty, losing everything it held"
)


def _mail(data: Path) -> None:
    async def open_and_close() -> None:
        await (await MailQueue.open(data)).close()

    asyncio.run(open_and_close())


# store, as its errors name it -> (its file under the data directory, how the gateway opens it)
STORES: dict[str, tuple[str, Callable[[Path], object]]] = {
    "account store": ("web/accounts.db", lambda d: AccountStore(d / "web", WebConfig())),
    "audit log": ("web/audit.db", lambda d: AuditLog(d / "web")),
    "Wi-Fi log": ("wifilog/wifilog.db", WifiLogStore),
    "config versions": ("config_versions.db", lambda d: ConfigVersions(d / "config_versions.db")),
    "station store": ("stations.db", lambda d: StationStore(d / "stations.db")),
    "locker store": ("locker-x.db", lambda d: PickupStore(d / "locker-x.db", clock=time.time)),
    "mail queue": ("mail.db", _mail),
}


@pytest.mark.parametrize("store", sorted(STORES))
def test_a_file_that_is_no_database_is_refused_by_name_and_left_as_it_is(
    tmp_path: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    name, opener = STORES[store]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GARBAGE)
    with pytest.raises(sqlite3.DatabaseError) as info:
        opener(tmp_path)
    message = f"{store} {path}: not an SQLite database, got 8192 bytes without SQLite's header; {FIX}"
    assert str(info.value) == message
    # a ConfigError, as every command says in one line; a DatabaseError, for the code that catches SQLite's
    assert isinstance(info.value, ConfigError)
    assert (info.value.code, info.value.params["path"]) == ("store_unreadable", str(path))
    assert path.read_bytes() == GARBAGE
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("gateway.storage")] == [
        (logging.ERROR, message)
    ]
    path.rename(path.with_name(f"{path.name}.damaged"))  # what the message says, then the store starts empty
    reopened = opener(tmp_path)
    close = getattr(reopened, "close", None)
    if close is not None:
        close()


def test_the_wal_beside_a_foreign_file_is_kept(tmp_path: Path) -> None:
    # SQLite opening a file that is no database deletes the -wal beside it: the last commits of the right file
    wal = tmp_path / "web" / "accounts.db-wal"
    wal.parent.mkdir()
    (tmp_path / "web" / "accounts.db").write_bytes(GARBAGE)
    wal.write_bytes(b"the right file's last commits")
    with pytest.raises(sqlite3.DatabaseError):
        AccountStore(tmp_path / "web", WebConfig())
    assert wal.read_bytes() == b"the right file's last commits"


def test_a_damaged_first_page_is_refused_by_name(tmp_path: Path) -> None:
    AccountStore(tmp_path, WebConfig())
    path = tmp_path / "accounts.db"
    data = bytearray(path.read_bytes())
    data[100:112] = b"\xff" * 12  # the header of the schema's b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(sqlite3.DatabaseError) as info:
        AccountStore(tmp_path, WebConfig())
    assert str(info.value) == (
        f'account store {path}: a damaged SQLite database, got SQLite\'s "database disk image is malformed"; {FIX}'
    )
    assert info.value.sqlite_errorcode & 0xFF == sqlite3.SQLITE_CORRUPT
    assert path.read_bytes() == bytes(data)


# -- the commands that open stores at start: one line, exit 2, no traceback ----------------------------------


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, env=env)


def _config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "gw-store"\ndata_dir = "{tmp_path / "data"}"\nlog_format = "text"\n\n'
        f'[web]\nlisten = ["127.0.0.1"]\nport = {free_port()}\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n' + extra
    )
    return config


def test_edgegw_web_says_which_store_in_one_line_and_exits_2(tmp_path: Path) -> None:
    config = _config(tmp_path)
    accounts = tmp_path / "data" / "web" / "accounts.db"
    accounts.parent.mkdir(parents=True)
    accounts.write_bytes(GARBAGE)
    run = edgegw("web", "--config", str(config))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1] == (
        f"edgegw web: account store {accounts}: not an SQLite database, got 8192 bytes without SQLite's header; {FIX}"
    )
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert accounts.read_bytes() == GARBAGE


SCANNER = """
[[adapters]]
name = "library"
type = "scanner"

[[adapters.stations]]
id = "counter"
purpose = "lending"

[[adapters.rules]]
kind = "patron"
pattern = "[Aa][0-9]{8}.[Bb]"
scheme = "mod16"
guards_in = "present"
"""


def test_edgegw_run_says_which_store_and_exits_2(tmp_path: Path) -> None:
    config = _config(tmp_path, SCANNER)
    stations = tmp_path / "data" / "stations.db"
    stations.parent.mkdir(parents=True)
    stations.write_bytes(GARBAGE)
    run = edgegw("run", "-c", str(config))
    assert run.returncode == 2, run.stderr
    assert run.stderr.endswith(
        f"\nstation store {stations}: not an SQLite database, got 8192 bytes without SQLite's header; {FIX}\n"
    ), run.stderr
    assert "Traceback" not in run.stderr and "unexpected error" not in run.stderr
    assert stations.read_bytes() == GARBAGE

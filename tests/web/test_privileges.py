"""gateway.privileges' words, where no switch of user happens (the switch itself: tests/web/test_cli_as_root.py)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from gateway.privileges import drop_root, gateway_account, ownership_hint


@pytest.mark.skipif(os.geteuid() != 0, reason="only root looks up the account to become")
def test_an_account_variable_naming_root_is_said_and_not_followed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, EDGEGW_USER=root read as 'this box has no account root to become … create it'."""
    monkeypatch.setenv("EDGEGW_USER", "root")
    caplog.set_level(logging.WARNING, logger="gateway.privileges")
    account = gateway_account()
    assert account is not None
    assert account.pw_uid == 0
    assert drop_root(account, who="web", unit="edgegw-web") is None
    assert os.geteuid() == 0
    assert caplog.messages == [
        "web: runs as root, as started: EDGEGW_USER names root (uid 0), which is root; name the gateway's account"
    ]


def test_the_ownership_hint_is_for_a_file_refused_never_a_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEGW_USER", "edgegw")
    refused_file = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "web" / "accounts.db"))
    assert ownership_hint(refused_file, tmp_path) == (
        f"; {tmp_path} and what it holds must be the gateway's account's (edgegw), as its unit runs: sudo chown -R "
        f"edgegw: {tmp_path} (a new box: sudo install -d -o edgegw -g edgegw -m 0750 {tmp_path})"
    )
    data, state = tmp_path / "data", tmp_path / "srv" / "web"  # [web] state_dir outside the data: that one is named
    in_state = PermissionError(errno.EACCES, "Permission denied", str(state / "accounts.db"))
    in_data = PermissionError(errno.EACCES, "Permission denied", str(data / "buffer.db"))
    assert ownership_hint(in_state, data, state).startswith(f"; {state} and what it holds must be")
    assert ownership_hint(in_data, data, state).startswith(f"; {data} and what it holds must be")
    inside = data / "web"  # the default state directory is the data directory's: the data directory is named
    in_inside = PermissionError(errno.EACCES, "Permission denied", str(inside / "accounts.db"))
    assert ownership_hint(in_inside, data, inside).startswith(f"; {data} and what it holds must be")
    refused_port = OSError(
        errno.EACCES, "error while attempting to bind on address ('0.0.0.0', 443): Permission denied"
    )
    assert ownership_hint(refused_port, tmp_path) == ""
    assert ownership_hint(OSError(errno.EADDRINUSE, "in use"), tmp_path) == ""

"""`user passwd|add --password-stdin` on a terminal: a prompt, nothing echoed; Ctrl-C and Ctrl-D end in one line.

Before, `--password-stdin` read the terminal as a line: the password appeared on the screen as it was typed, after
no prompt at all (the command looked hung), and Ctrl-C or Ctrl-D at a prompt ended in a traceback. Run in a real
pseudo-terminal (the pty module), as a technician's ssh session is.
"""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts.store import AccountStore, Role
from gateway.web.config import WebConfig

ROOT = Path(__file__).resolve().parents[2]
OLD = "river-gauge-cabinet-7"
NEW = "S3cret-Typed-Visible-42"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    AccountStore(data / "web", WebConfig(), hasher=hasher).add_user("bob", Role.ADMIN, OLD, now=1.0)
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{data}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    return path


class Terminal:
    """`edgegw <args>` with a pseudo-terminal as its stdin, stdout and stderr (and controlling terminal)."""

    def __init__(self, *args: str) -> None:
        pid, self.fd = pty.fork()
        if pid == 0:  # the child: nothing of pytest's must run here
            os.chdir(ROOT)
            os.environ["PYTHONPATH"] = str(ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "gateway", *args])
        self.pid = pid
        self.screen = b""

    def wait_for(self, text: bytes, within_s: float = 30.0) -> None:
        deadline = time.monotonic() + within_s
        while text not in self.screen:
            assert time.monotonic() < deadline, self.screen
            if not self._read(deadline - time.monotonic()):
                break
        assert text in self.screen, self.screen

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if ready:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                return False
            self.screen += chunk
            return bool(chunk)
        return True

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self, within_s: float = 30.0) -> int:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                while self._read(0.05) and len(self.screen) < 1_000_000:
                    pass
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self._read(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"still running: {self.screen!r}")


def test_password_stdin_on_a_terminal_prompts_and_never_echoes(config: Path) -> None:
    term = Terminal("user", "passwd", "bob", "--password-stdin", "-c", str(config))
    term.wait_for(b"password for bob: ")
    term.type(NEW.encode() + b"\r")
    term.wait_for(b"password for bob (again): ")
    term.type(NEW.encode() + b"\r")
    assert term.exit_code() == 0
    assert b"password of bob changed" in term.screen
    assert NEW.encode() not in term.screen
    store = AccountStore(config.parent / "data" / "web", WebConfig())
    assert store.authenticate("bob", NEW, address="192.0.2.1", now=time.time()).ok


@pytest.mark.parametrize("stdin_flag", [(), ("--password-stdin",)])
def test_ctrl_c_at_the_prompt_is_one_line_and_130(config: Path, stdin_flag: tuple[str, ...]) -> None:
    term = Terminal("user", "passwd", "bob", *stdin_flag, "-c", str(config))
    term.wait_for(b"password for bob: ")
    term.type(b"\x03")
    assert term.exit_code() == 130
    assert b"Traceback" not in term.screen
    assert term.screen.endswith(b"\r\nuser passwd bob: interrupted; nothing changed\r\n"), term.screen


def test_ctrl_d_at_the_prompt_is_one_line_and_1(config: Path) -> None:
    term = Terminal("user", "add", "suzuki", "--role", "viewer", "-c", str(config))
    term.wait_for(b"password for suzuki: ")
    term.type(b"\x04")
    assert term.exit_code() == 1
    assert b"Traceback" not in term.screen
    assert term.screen.endswith(b"\r\nuser add suzuki: no password, got the end of input; nothing changed\r\n")
    assert [u.name for u in AccountStore(config.parent / "data" / "web", WebConfig()).list_users()] == ["bob"]

"""`edgegw secret set`: a typed secret is never shown, a piped one is one line, no input is said in one line.

Before, `--stdin` on a terminal read a line with echo on and no prompt (the secret on the screen), a piped
PEM key was stored as its first line "-----BEGIN PRIVATE KEY-----" with exit 0, Ctrl-C or Ctrl-D at the prompt
and a closed stdin ended in tracebacks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.secrets import SecretStore, resolve
from tests.cli.edgegw import ROOT, config, edgegw, env
from tests.cli.terminal import on_terminal

SECRET = "S3cret-Typed-Visible"


def stored(tmp_path: Path) -> list[str]:
    data = tmp_path / "data"
    return SecretStore(data).names() if (data / "secrets.enc").exists() else []


@pytest.mark.parametrize("how", [("--stdin",), ()], ids=["stdin", "prompt"])
def test_a_secret_typed_on_a_terminal_is_prompted_for_and_not_echoed(tmp_path: Path, how: tuple[str, ...]) -> None:
    cfg = config(tmp_path)
    run = on_terminal(
        "secret",
        "set",
        "uplink.token",
        *how,
        "-c",
        str(cfg),
        wait_for=b"value for uplink.token: ",
        typed=f"{SECRET}\r".encode(),
    )
    assert SECRET.encode() not in run.screen
    assert run.screen.endswith(b'secret uplink.token stored (reference it as "secret:uplink.token")\r\n')
    assert run.returncode == 0
    assert resolve("secret:uplink.token", tmp_path / "data") == SECRET


def test_ctrl_c_at_the_prompt_says_interrupted_and_stores_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run = on_terminal("secret", "set", "uplink.token", "--stdin", "-c", str(cfg), wait_for=b"value for", typed=b"\x03")
    assert (run.returncode, run.screen.replace(b"\r\n", b"\n").split(b": ", 1)[1]) == (130, b"\nedgegw: interrupted\n")
    assert stored(tmp_path) == []


def test_a_piped_pem_key_is_refused_whole_not_stored_as_its_first_line(tmp_path: Path) -> None:
    pem = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB1c\n-----END PRIVATE KEY-----\n"
    run = edgegw("secret", "set", "uplink.tls_key", "--stdin", "-c", str(config(tmp_path)), stdin=pem)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        "secret uplink.tls_key: value refused, got 3 lines (not shown); a secret is one line: a token or a password "
        "(a TLS key or certificate is a file: name it in tls.key_file or tls.cert_file); nothing stored\n"
    )
    assert stored(tmp_path) == []


def test_blank_lines_after_the_value_are_not_more_lines(tmp_path: Path) -> None:
    run = edgegw("secret", "set", "uplink.token", "--stdin", "-c", str(config(tmp_path)), stdin=b"tok-1\r\n\r\n \n")
    assert run.returncode == 0, run.stderr
    assert resolve("secret:uplink.token", tmp_path / "data") == "tok-1"


def test_a_closed_stdin_is_one_line(tmp_path: Path) -> None:
    # the shell's `<&-`: the command starts with no file descriptor 0
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m gateway secret set uplink.token --stdin -c "{config(tmp_path)}" <&-'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(),
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "secret uplink.token: no value, got a closed standard input; pipe the value in, e.g. edgegw secret set "
        "uplink.token --stdin < token.txt\n"
    )


def test_no_terminal_and_nothing_typed_is_one_line(tmp_path: Path) -> None:
    run = edgegw("secret", "set", "uplink.token", "-c", str(config(tmp_path)), stdin=b"")
    assert run.returncode == 1
    assert run.stderr.endswith(
        "secret uplink.token: no value, got the end of the input before a line; nothing stored (type it at the "
        "prompt, or pipe it in with --stdin)\n"
    )
    assert "Traceback" not in run.stderr

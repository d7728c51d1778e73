"""`edgegw user add|list|passwd|unlock|remove|setup-link`: the web UI's accounts from the box's shell.

Every change is written to the audit log with actor `cli:<unix user>`. Policy refusals come back
from the store as message keys; `ENGLISH` turns them into sentences (the CLI stays English).
Run by root (sudo), it reads the configuration and who ran it, then becomes the gateway's account before it
opens the state directory (gateway.privileges): the account may put a link at accounts.db.
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from gateway import cliopts
from gateway.accounts import passwords
from gateway.accounts.store import (
    ACCOUNTS_FILE,
    AccountError,
    AccountStore,
    PasswordRejected,
    Role,
    SetupRefused,
    UnknownUser,
    User,
    UserExists,
    check_user_name,
)
from gateway.audit.log import AuditError, AuditLog
from gateway.cliopts import add_config_option, print_config_error
from gateway.errors import ConfigError
from gateway.hand_over import hand_over
from gateway.privileges import PrivilegeError, become_the_account, ownership_hint
from gateway.web.config import WebConfig

__all__ = [
    "ENGLISH",
    "EXIT_FAILURE",
    "EXIT_INVALID",
    "EXIT_OK",
    "add_parser",
    "cannot_use",
    "cli_actor",
    "hand_over",
    "open_state",
    "run",
    "state_of",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped

SETUP_TTL_S = 3600.0
JST = timezone(timedelta(hours=9), "JST")

# message keys of the store and the policy, in English; {min_length} and {max_length} are filled in
ENGLISH: dict[str, str] = {
    passwords.TOO_SHORT: "the password is too short; use at least {min_length} characters",
    passwords.TOO_LONG: "the password is too long; use at most {max_length} characters",
    passwords.TOO_COMMON: "the password is on the list of common passwords; choose one that is not",
    passwords.CONTAINS_NAME: "the password contains the user name; choose one that does not",
    passwords.SAME_AS_CURRENT: "the new password is the current one; choose a different one",
}

PasswordReader = Callable[[str], str]
# the CLI's clock; tests replace it
clock: Callable[[], float] = time.time


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `user` and its subcommands to the `edgegw` argument parser; returns the `user` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser("user", help="accounts of the web UI")
    sub = p.add_subparsers(dest="user_command", required=True, metavar="{add,list,passwd,unlock,remove,setup-link}")
    a = sub.add_parser("add", help="add an account (password typed twice, or --password-stdin)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", required=True, choices=[r.value for r in Role])
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a.add_argument("--must-change", action="store_true", help="the user must choose a new password at the first login")
    sub.add_parser("list", help="accounts with role, last login and lock state (never passwords)")
    pw = sub.add_parser("passwd", help="set an account's password")
    pw.add_argument("name", metavar="NAME")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    pw.add_argument("--must-change", action="store_true", help="the user must choose a new password at the next login")
    u = sub.add_parser("unlock", help="end an account's lockout now")
    u.add_argument("name", metavar="NAME")
    r = sub.add_parser("remove", help="remove an account")
    r.add_argument("name", metavar="NAME")
    sub.add_parser("setup-link", help="a one-time link to create the first admin in the browser (valid 1 h)")
    for s in sub.choices.values():
        add_config_option(s)
    return p


def cli_actor() -> str:
    """`cli:<unix user>`: who ran the command, as the audit log records it."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        name = str(os.getuid())
    return f"cli:{name}"


def open_state(config_path: Path | None) -> tuple[Path, WebConfig]:
    """The web state directory and the [web] section of the configuration at `config_path` (or the default)."""
    state_dir, web, _ = state_of(config_path)
    return state_dir, web


def state_of(config_path: Path | None) -> tuple[Path, WebConfig, Path]:
    """`open_state`'s two and the data directory, which `ownership_hint` names."""
    from gateway.config import load_config

    cfg = load_config(cliopts.config_path(config_path))
    data_dir = Path(cfg.gateway.data_dir)
    return cfg.web.state_path(data_dir), cfg.web, data_dir


def cannot_use(what: str, exc: OSError, data_dir: Path, state_dir: Path, as_account: str | None) -> str:
    """The line for a file of the state this command may not use: run as the gateway's account (after root's
    switch), whose it must be and the command, as the web server says it; otherwise the advice of old."""
    hint = ownership_hint(exc, data_dir, state_dir) if as_account else ""
    if hint:
        return f"{what}: cannot use {state_dir}, got {exc}{hint}\n"
    return f"{what}: cannot use {state_dir}, got {exc.strerror or exc}; run it as the gateway's user (or root)\n"


def english(key: str, web: WebConfig) -> str:
    return ENGLISH.get(key, key).format(min_length=web.password_min_length, max_length=passwords.MAX_LENGTH)


class PasswordNotText(AccountError):
    """A password whose bytes are not UTF-8 (CLI only): Argon2 hashes UTF-8, and no browser could send it."""

    code = "password_not_utf8"


class NoPassword(AccountError):
    """No password came: standard input closed, or at its end (Ctrl-D at the prompt)."""

    code = "password_missing"


def _read_password(args: argparse.Namespace, read: PasswordReader, stdin: TextIO | None) -> str | None:
    """The new password from stdin (one line) or typed twice; None when the two typed differ.

    `--password-stdin` on a terminal is typed twice at the prompt too: read as a line, what is typed would
    be shown on the screen, with nothing saying the command waits for it.
    Bytes that are not UTF-8 reach here as lone surrogates (a surrogateescape stdin: UTF-8 mode, the C
    locale) or as a UnicodeDecodeError (a strict one); both are refused before anything is hashed.
    """
    what = f"user {args.user_command} {args.name}"
    if args.password_stdin and stdin is None:  # started with standard input closed (`<&-`)
        raise NoPassword(f"{what}: no password, got no standard input; pipe the password in; nothing changed")
    try:
        if args.password_stdin and stdin is not None and not stdin.isatty():
            password: str | None = stdin.readline().rstrip("\r\n")
        else:
            first = read(f"password for {args.name}: ")
            second = read(f"password for {args.name} (again): ")
            password = first if first == second else None
        if password is not None:
            password.encode("utf-8")
    except EOFError:  # Ctrl-D at the prompt, or no terminal and nothing on standard input
        raise NoPassword(f"{what}: no password, got the end of input; nothing changed") from None
    except UnicodeError:  # UnicodeDecodeError reading, UnicodeEncodeError for the surrogates
        raise PasswordNotText(
            f"user {args.user_command} {args.name}: password refused, got bytes that are not UTF-8 (not shown); "
            "save it as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8); nothing changed",
            name=args.name,
        ) from None
    return password


def read_from_terminal(args: argparse.Namespace, stdin: TextIO | None) -> bool:
    """Whether the password is typed at a prompt, whose line the terminal leaves unended after Ctrl-C/Ctrl-D."""
    return not args.password_stdin or (stdin is not None and stdin.isatty())


def _no_accounts(args: argparse.Namespace, state_dir: Path, out: TextIO, err: TextIO) -> int:
    """No accounts.db: nothing made for a command that only reads or needs an account; what that means said."""
    path = state_dir / ACCOUNTS_FILE
    what = f"user {args.user_command}" + (f" {args.name}" if args.user_command != "list" else "")
    if not state_dir.parent.is_dir():
        # a gateway.data_dir mistyped, or a -c naming another box's config: nothing here says anything of this box
        err.write(
            f"{what}: no accounts at {path}, got no directory {state_dir.parent}; check gateway.data_dir "
            "(and [web] state_dir) in the configuration, or start the gateway once\n"
        )
        return EXIT_FAILURE
    if args.user_command == "list":  # a box whose web UI was never set up: no users, as in an empty store
        _write_list([], None, 0.0, out)
        return EXIT_OK
    err.write(
        f"{what}: no accounts at {path}, got no user {args.name!r}; "
        "add the first admin with `edgegw user add NAME --role admin`; nothing changed\n"
    )
    return EXIT_FAILURE


def _show_time(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def _write_list(users: list[User], store: AccountStore | None, now: float, out: TextIO) -> None:
    if not users or store is None:
        out.write("no users; add the first admin with `edgegw user add NAME --role admin`\n")
        return
    out.write(f"{'NAME':<20} {'ROLE':<10} {'LAST LOGIN':<20} {'FROM':<16} STATE\n")
    for u in users:
        state = []
        if u.locked(now):
            state.append(f"locked until {_show_time(u.locked_until)}")
        if u.disabled:
            state.append("disabled")
        if u.must_change:
            state.append("must change password")
        elif store.password_expired(u, now=now):
            state.append("password expired")
        out.write(
            f"{u.name:<20} {u.role.value:<10} {_show_time(u.last_login_at):<20} "
            f"{u.last_login_address or '-':<16} {', '.join(state) or 'ok'}\n"
        )


def _check_before_typing(store: AccountStore, command: str, name: str) -> None:
    """The name's errors before the password is typed twice, not after."""
    if command == "add":
        check_user_name(name)
        taken = next((u.name for u in store.list_users() if u.name.lower() == name.lower()), None)
        if taken is not None:
            raise UserExists(f"user {name}: already exists, got a second user of that name", name=name)
    elif store.get_user(name) is None:
        raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    now: float | None = None,
    read_password: PasswordReader | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run a `user` subcommand; returns the exit code (2 for a bad config or a refused value)."""
    out = out or sys.stdout
    err = err or sys.stderr
    at = clock() if now is None else now
    read = read_password or getpass.getpass
    command = args.user_command
    what = f"user {command}"
    try:
        state_dir, web, data_dir = state_of(args.config)
    except ConfigError as exc:
        print_config_error(exc, err, what=what)
        return EXIT_INVALID
    actor = cli_actor()  # before the switch: the audit log names who ran it (cli:root), not the account
    try:
        as_account = become_the_account(what)
    except PrivilegeError as exc:
        err.write(f"{what}: {exc}\n")
        return EXIT_FAILURE
    try:
        # only these may begin a box's accounts: the others read, or change an account that must exist
        create = command in ("add", "setup-link")
        try:
            store = AccountStore(state_dir, web, create=create)
        except FileNotFoundError:
            if create:
                raise
            return _no_accounts(args, state_dir, out, err)
        if command == "list":
            _write_list(store.list_users(), store, at, out)
            return EXIT_OK
        audit = AuditLog(state_dir)
        if command == "setup-link":
            token = store.create_setup_token(now=at, ttl_s=SETUP_TTL_S)
            audit.append(actor=actor, action="user.setup_link", at=at)  # never the token
            out.write(
                f"one-time setup link, valid until {_show_time(at + SETUP_TTL_S)}: /setup/{token}\n"
                f"open it on the web UI, e.g. https://<this box>:{web.port}/setup/{token}\n"
            )
            return EXIT_OK
        name = args.name
        what = f"user {command} {name}"
        if command in ("add", "passwd"):
            _check_before_typing(store, command, name)
            source = stdin or sys.stdin
            # the prompt's line is left unended by Ctrl-C and Ctrl-D: the message begins a line of its own
            end_prompt = "\n" if read_from_terminal(args, source) else ""
            try:
                password = _read_password(args, read, source)
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a choice, not a failure to show a traceback for
                err.write(f"{end_prompt}{what}: interrupted; nothing changed\n")
                return EXIT_INTERRUPTED
            except NoPassword as exc:
                err.write(f"{end_prompt}{exc}\n")
                return EXIT_FAILURE
            if password is None:
                err.write(f"{what}: the two passwords differ; nothing changed\n")
                return EXIT_INVALID
            if command == "add":
                role = Role(args.role)
                store.add_user(name, role, password, now=at, must_change=args.must_change)
                audit.append(actor=actor, action="user.add", target=name, detail={"role": role.value}, at=at)
                out.write(f"user {name} added ({role.value})\n")
            else:
                store.set_password(name, password, now=at, must_change=args.must_change)
                audit.append(actor=actor, action="user.password", target=name, at=at)
                out.write(f"password of {name} changed\n")
            return EXIT_OK
        if command == "unlock":
            store.unlock(name)
            audit.append(actor=actor, action="user.unlock", target=name, at=at)
            out.write(f"user {name} unlocked\n")
            return EXIT_OK
        store.remove_user(name)
        audit.append(actor=actor, action="user.remove", target=name, at=at)
        out.write(f"user {name} removed\n")
        return EXIT_OK
    except PasswordRejected as exc:
        err.write(f"{what}: password refused; nothing changed\n")
        err.writelines(f"  {english(key, web)}\n" for key in exc.reasons)
        return EXIT_INVALID
    except SetupRefused as exc:
        text = {
            "setup.admin_exists": "an admin exists already; log in and add users on the Users page",
        }.get(exc.key, str(exc))
        err.write(f"{what}: {text}\n")
        return EXIT_FAILURE
    except AuditError as exc:  # an audit log written by a newer edgegw
        err.write(f"{what}: {exc}\n")
        return EXIT_INVALID
    except AccountError as exc:  # its message names the user already
        err.write(f"{exc}\n")
        return EXIT_INVALID
    except ConfigError as exc:  # a secret store whose key file does not belong to it
        err.writelines(f"{what}: {line}\n" for line in exc.errors)
        return EXIT_INVALID
    except BrokenPipeError:  # the reader quit (`| head`): main() ends quietly, no store advice
        raise
    except OSError as exc:
        err.write(cannot_use(what, exc, data_dir, state_dir, as_account))
        return EXIT_FAILURE
    finally:
        hand_over(state_dir)  # root that stayed root (no account to become): what it made goes back

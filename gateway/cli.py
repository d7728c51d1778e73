"""The `edgegw` command: run, check-config, buffer …, secret …, status, version."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from gateway import __version__, logs
from gateway.buffer.location import data_dir_error
from gateway.cliopts import add_config_option, config_path, os_error_words, print_config_error
from gateway.config import GatewaySection, load_config
from gateway.configbase import read_toml
from gateway.errors import BufferUnavailable, ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
EXIT_READER_GONE = 141  # 128 + SIGPIPE

# Families contribute subcommands through pyproject.toml `[project.entry-points."edgegw.cli"]`: each entry
# point names a callable that takes the `edgegw` subparsers, adds its parsers and sets `func(args) -> int`.
CLI_GROUP = "edgegw.cli"


def _add_config_to_subcommands(parser: argparse.ArgumentParser) -> None:
    """`edgegw buffer stats -c FILE`: the option goes after the last subcommand, where people type it."""
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public accessor
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - the type of add_subparsers()
            for sub in action.choices.values():
                add_config_option(sub)


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    return load_config(config_path(args.config))


def _written_data_dir(path: Path) -> Path | None:
    """gateway.data_dir as the file has it (or its default), for a file with errors elsewhere; None if unusable."""
    try:
        section = read_toml(path).get("gateway")
    except ConfigError:
        return None
    if not isinstance(section, dict):
        return None
    value = section.get("data_dir", str(GatewaySection.model_fields["data_dir"].default))
    return Path(value) if isinstance(value, str) and value else None


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import config_warnings
    from gateway.tls import tls_problems  # ssl: not for the other commands' start

    if args.file is not None and args.config is not None and args.file != args.config:
        print(
            f"check-config: two configurations given, got {args.file} and -c {args.config}; name one",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    path = args.file or config_path(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        data_dir = _written_data_dir(path)
        extra = data_dir_error(data_dir) if data_dir is not None else None
        print_config_error(ConfigError([*exc.errors, extra], exc.source) if extra else exc)
        return EXIT_CONFIG
    if not args.offline:  # the file alone (e.g. on a laptop): not this box's data directory and TLS files
        extra = data_dir_error(Path(cfg.gateway.data_dir))
        if extra:
            print_config_error(ConfigError([extra], str(path)))
            return EXIT_CONFIG
    print(f"{path}: OK — gateway {cfg.gateway.id}, {len(cfg.adapters)} adapter(s), {len(cfg.uplinks)} uplink(s)")
    # Warnings, not errors, from the file alone (so with --offline too): the package starts the units only when
    # this passes, and a config valid before an upgrade must not stop the box.
    advice = config_warnings(cfg)
    if advice:
        print(f"{path}: {len(advice)} warning(s): the gateway starts with them", file=sys.stderr)
        for line in advice:
            print(f"  {line}", file=sys.stderr)
    # Warnings, not errors: the gateway starts with them (this command is the unit's ExecStartPre), and only
    # the adapter or uplink whose file is wrong stays down, retrying until it loads, while the rest keeps
    # reading and buffering.
    warnings = [] if args.offline else tls_problems(cfg)
    if warnings:
        print(
            f"{path}: {len(warnings)} warning(s): each of these stays down, retrying, until its file is fixed",
            file=sys.stderr,
        )
        for line in warnings:
            print(f"  {line}", file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import app

    path = config_path(args.config)
    try:
        return app.run(path)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    except BufferUnavailable as exc:
        # the box, not the data, is wrong (a read-only or missing data directory…): like a config error,
        # restarting cannot help until a technician acts, and the message says what to do
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except Exception:  # a bug: said once, through the redacting log handler, not as a bare traceback
        if not logging.getLogger().handlers:
            logs.setup()
        logging.getLogger("gateway").critical(
            "stopped by an unexpected error; every acknowledged reading is in the buffer and is delivered after "
            "the restart. Please report this traceback",
            exc_info=True,
        )
        return EXIT_FAILURE


def cmd_version(args: argparse.Namespace) -> int:
    print(f"edgegw {__version__} (Python {sys.version.split()[0]})")
    return EXIT_OK


def cmd_buffer(args: argparse.Namespace) -> int:
    from gateway.buffer import cli as buffer_cli
    from gateway.buffer.location import BUFFER_FILE

    try:
        cfg = _load(args)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    return buffer_cli.run(args, Path(cfg.gateway.data_dir) / BUFFER_FILE)


# Enough for any token or password; a pipe that never ends (a device file by mistake) is not read for good.
SECRET_MAX_CHARS = 64 * 1024


class _SecretRefused(Exception):
    """`secret set` got no usable value; the message says why, the value itself is never in it."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _secret_value(args: argparse.Namespace) -> str:
    """The value typed or piped in for `secret set`; _SecretRefused if there is none, or more than one line.

    On a terminal it is read with getpass, also with --stdin: read as a line, it was echoed on the screen
    (and into a recorded session) with no prompt. Piped, it is one line: secrets are tokens and passwords
    sent in headers and logins (TLS keys are files, tls.key_file), and a PEM key piped in was stored as
    its first line "-----BEGIN PRIVATE KEY-----", exit 0. Bytes that are not UTF-8 reach Python as lone
    surrogates (a surrogateescape stdin) or as a UnicodeDecodeError (a strict one): stored, they could never
    be sent nor registered with the redactor, and every start of the uplink using them failed.
    """
    name = args.name
    stdin = sys.stdin
    try:
        if stdin is None:  # started with stdin closed (`<&-`)
            raise _SecretRefused(
                f"secret {name}: no value, got a closed standard input; pipe the value in, "
                f"e.g. edgegw secret set {name} --stdin < token.txt",
                EXIT_CONFIG,
            )
        if args.stdin and not stdin.isatty():
            value = _one_line(name, stdin.read(SECRET_MAX_CHARS + 1))
        else:
            value = getpass.getpass(f"value for {name}: ")
        value.encode("utf-8")
    except UnicodeError:  # UnicodeDecodeError reading, UnicodeEncodeError for the surrogates
        raise _SecretRefused(
            f"secret {name}: value refused, got bytes that are not UTF-8 (not shown); save it as UTF-8, "
            f"e.g. iconv -f SHIFT_JIS -t UTF-8 <file> | edgegw secret set {name} --stdin"
        ) from None
    except EOFError:  # Ctrl-D at the prompt, or no terminal and nothing on stdin
        raise _SecretRefused(
            f"secret {name}: no value, got the end of the input before a line; nothing stored "
            f"(type it at the prompt, or pipe it in with --stdin)"
        ) from None
    if not value:
        raise _SecretRefused(f"secret {name}: empty value refused")
    return value


def _one_line(name: str, text: str) -> str:
    """The piped value: its first line without the line ending; refused if anything but blank lines follows."""
    if len(text) > SECRET_MAX_CHARS:
        raise _SecretRefused(
            f"secret {name}: value refused, got more than {SECRET_MAX_CHARS} characters (not shown); "
            "a secret is one line: a token or a password; nothing stored",
            EXIT_CONFIG,
        )
    first, newline, rest = text.partition("\n")
    if rest.strip():
        lines = len([line for line in rest.splitlines() if line.strip()]) + 1
        raise _SecretRefused(
            f"secret {name}: value refused, got {lines} lines (not shown); a secret is one line: a token or a "
            "password (a TLS key or certificate is a file: name it in tls.key_file or tls.cert_file); nothing stored",
            EXIT_CONFIG,
        )
    # only the line ending, LF or CRLF: a token file saved on Windows keeps a CR otherwise, which no HTTP
    # header can carry; spaces, tabs or a lone CR are left as they are (they may be meant)
    return first.removesuffix("\r") if newline else first


def cmd_secret(args: argparse.Namespace) -> int:
    from gateway.secrets import SecretNameError, SecretStore, check_name

    try:
        cfg = _load(args)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    store = SecretStore(Path(cfg.gateway.data_dir))
    what = f"secret {args.secret_command}"
    # the output is printed outside the `try`: a reader gone (`| head`) is not a store that cannot be used
    try:
        if args.secret_command == "set":
            check_name(args.name)  # before the value is typed, not after
            store.set(args.name, _secret_value(args))
            names = None
        else:
            names = store.names()
    except _SecretRefused as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except SecretNameError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:  # a key file that does not belong to the store
        for line in exc.errors:  # one line per problem, as check-config prints them
            print(f"{what}: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(
            f"{what}: cannot use the secret store in {store.directory}, got {exc.strerror or exc}; "
            "run it as the gateway's user (or root)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if names is None:
        print(f'secret {args.name} stored (reference it as "secret:{args.name}")')
    elif names:
        print("\n".join(names))
    else:  # on stderr: the standard output stays a list of names for scripts
        print(f"secret list: no secrets stored in {store.directory}", file=sys.stderr)
    return EXIT_OK


def _adapter_line(a: dict[str, Any]) -> str:
    """One line per adapter; what its family adds comes from the conventional keys of its diagnostics
    (gateway.adapter_api.Diagnosable), so no family is named here."""
    diagnostics = a.get("diagnostics") or {}
    malformed = a.get("malformed", 0)
    reasons = diagnostics.get("malformed")
    if malformed and isinstance(reasons, dict):
        detail = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])) if v)
        malformed = f"{malformed} ({detail})"
    line = (
        f"  {a['name']:<20} {a['type']:<10} {a['state']:<12} emitted {a['emitted']:>10}  "
        f"malformed {malformed}  invalid {a.get('invalid', 0)}  restarts {a['restarts']}"
    )
    if diagnostics.get("connected") is False:
        line += "  disconnected"
    if isinstance(diagnostics.get("summary"), str) and diagnostics["summary"]:
        line += f"  {diagnostics['summary']}"
    last_error = a["last_error"] or diagnostics.get("last_error")
    if last_error:
        line += f"  last error: {last_error}"
    return line


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.app import STATUS_FILE
    from gateway.backup.schedule import status_line as backup_status_line

    try:
        cfg = _load(args)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    data_dir = Path(cfg.gateway.data_dir)
    code = _show_status(args, data_dir / STATUS_FILE, cfg.gateway.status_interval_s)
    backup = backup_status_line(data_dir)
    if backup is not None and code != EXIT_OK:
        # a restore cut short leaves the gateway stopped, and a backup that failed matters as much then
        print(backup, file=sys.stderr)
    elif backup is not None and not args.json:
        print(backup)
    return code


def _show_status(args: argparse.Namespace, path: Path, interval_s: float) -> int:
    """The gateway's status as the status file says, or on stderr why there is none from a running gateway."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, or not UTF-8: rewritten without a sync, a power cut can leave it empty or cut
        return _not_a_status(path)
    except FileNotFoundError:
        print(f"{path}: no status yet; is the gateway running?", file=sys.stderr)
        return EXIT_FAILURE
    except PermissionError:
        print(_status_unreadable(path), file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"{path}: cannot read, got {os_error_words(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        lines = _status_lines(doc)  # checked for --json too: `[]` or `{}` is no status
        written_at = float(doc["written_at"])
    except (KeyError, TypeError, AttributeError, ValueError):
        return _not_a_status(path)
    dead = _not_running(path.parent, time.time() - written_at, interval_s, doc.get("pid"))
    if dead is not None:
        print(f"{path}: {dead}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else "\n".join(lines))
    return EXIT_OK


# A status this many write intervals old is from a gateway that stopped writing; never under STALE_MIN_S, so a
# box busy for a moment with a short interval is not called dead.
STALE_INTERVALS = 3
STALE_MIN_S = 10.0


def _not_running(data_dir: Path, age: float, interval_s: float, pid: object) -> str | None:
    """Why the status file is not the word of a running gateway, or None if it is.

    The gateway lock says it first (the kernel lets go of it however the gateway ended, kill -9 included):
    a status file outlives its writer, and a gateway killed 20 s before was shown running, exit 0.
    Where the lock cannot be asked (never made: no `edgegw run` here yet; no /proc), the age says it.
    """
    from gateway.backup.archive import unfinished_restores
    from gateway.run_lock import held

    stale = age > max(STALE_INTERVALS * interval_s, STALE_MIN_S)
    lock = held(data_dir)
    if lock is False or (lock is None and stale):
        if unfinished_restores(data_dir):
            # a restore cut short leaves the gateway stopped on purpose: started, it takes the mixed files for
            # the truth (docs/backup.md)
            return (
                f"the gateway is not running (last status {age:.0f} s old, pid {pid}), and a restore into {data_dir} "
                "did not finish: do not start it on a part-restored data directory; put the data directory right "
                "(or restore again) first, as the backup line says"
            )
        return (
            f"the gateway is not running (last status {age:.0f} s old, pid {pid}); `journalctl -u edgegw` says "
            "why it stopped, `systemctl start edgegw` starts it"
        )
    if stale:
        return (
            f"the gateway holds its lock but has not rewritten its status for {age:.0f} s (it does every "
            f"{interval_s:g} s), got pid {pid}; it may hang: `journalctl -u edgegw` shows its last lines, "
            "`systemctl restart edgegw` restarts it"
        )
    return None


def _status_unreadable(path: Path) -> str:
    """A status file the caller may not read, with its owner: after a `sudo edgegw run` it is root's, 0640."""
    try:
        st = path.stat()
        directory = path.parent.stat()
    except OSError:
        return f"{path}: not readable; run as the gateway's user or a member of its group"
    me = _user_name(os.geteuid())
    owner, group = _user_name(st.st_uid), _group_name(st.st_gid)
    dir_owner, dir_group = _user_name(directory.st_uid), _group_name(directory.st_gid)
    fix = (
        f"run `sudo chown {dir_owner}:{dir_group} {path}` and start the gateway as {dir_owner} "
        "(systemctl start edgegw), not with sudo"
        if (st.st_uid, st.st_gid) != (directory.st_uid, directory.st_gid)
        else f"run it as {owner} or a member of group {group}"
    )
    return (
        f"{path}: not readable by user {me}, got a file owned by {owner}:{group} (mode {st.st_mode & 0o777:04o}); {fix}"
    )


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _not_a_status(path: Path) -> int:
    print(
        f"{path}: not a status document (damaged, or written by another edgegw version); is the gateway running? "
        "It rewrites the file every few seconds",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def _status_lines(doc: dict[str, Any]) -> list[str]:
    """The status file as `edgegw status` shows it; raises KeyError/TypeError on a document that is not one."""
    age = time.time() - float(doc["written_at"])
    out = [f"gateway {doc['gateway']} (edgegw {doc['version']}, pid {doc['pid']}), status {age:.0f} s old"]
    out.append("adapters:")
    out.extend(_adapter_line(a) for a in doc["adapters"])
    out.append("uplinks:")
    out.extend(_uplink_line(u) for u in doc["uplinks"])
    if doc.get("processing"):  # absent in a status written by an older version, empty without a stage
        out.append("processing:")
        out.extend(_processing_line(p) for p in doc["processing"])
    if doc.get("mail"):  # only with a [mail] section
        from gateway.mail.cli import status_line

        out.append(status_line(doc["mail"]))
    if doc.get("fleet"):
        from gateway.fleet.cli import status_lines

        out.extend(status_lines(doc["fleet"]))
    return out


def _processing_line(p: dict[str, Any]) -> str:
    counters = "  ".join(f"{k} {v}" for k, v in p.get("counters", {}).items())
    return f"  {p['name']:<40} {counters}".rstrip()


def _uplink_line(u: dict[str, Any]) -> str:
    line = (
        f"  {u['name']:<20} {u['type']:<10} {u['state']:<12} delivered {u['delivered']:>10}  rejected {u['rejected']}"
    )
    counts = u.get("diagnostics") or {}
    if "confirmed" in counts:  # the mqtt uplink with [uplinks.confirm]: what reached Orion behind the agent
        line += (
            f"  confirmed {counts['confirmed']}  republished {counts['republished']}  "
            f"confirm errors {counts['confirm_errors']}"
        )
    if u["last_error"]:
        line += f"  last error: {u['last_error']}"
    if u.get("last_rejection"):
        line += f"  last rejection: {u['last_rejection']}"
    return line


def _add_family_commands(sub: Any, family_commands: Iterable[EntryPoint]) -> None:
    """The subcommands of every family in the `edgegw.cli` group; one that cannot load costs only its own."""
    for ep in sorted(family_commands, key=lambda e: e.name):
        try:
            ep.load()(sub)
        # a family left behind by an upgrade (module gone, callable renamed, a subcommand name taken) must
        # not take `edgegw run` or `edgegw status` with it
        except (ImportError, AttributeError, argparse.ArgumentError) as exc:
            print(
                f"edgegw: commands of {ep.name} ({ep.value}) not available, got {type(exc).__name__}: {exc}; "
                "reinstall edgegw",
                file=sys.stderr,
            )


def build_parser(family_commands: Iterable[EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The `edgegw` parser; family subcommands from `family_commands`, by default the installed `edgegw.cli` group."""
    parser = argparse.ArgumentParser(prog="edgegw", description="edge gateway for FIWARE data linkage platforms")
    # what a technician types first; `edgegw version` also names the Python
    parser.add_argument("--version", action="version", version=f"edgegw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)

    p = sub.add_parser("check-config", help="validate a configuration file; exit 2 with every error")
    p.add_argument("file", nargs="?", type=Path)
    p.add_argument(
        "--offline",
        action="store_true",
        help="check the file alone, not on the box it is for: skip gateway.data_dir and the TLS files it names",
    )
    add_config_option(p)
    p.set_defaults(func=cmd_check_config)

    from gateway.buffer import cli as buffer_cli

    buffer_cli.add_parser(sub)
    p = sub.choices["buffer"]
    _add_config_to_subcommands(p)
    p.set_defaults(func=cmd_buffer)

    from gateway.profiles import cli as profile_cli

    profile_cli.add_parser(sub).set_defaults(func=profile_cli.run)

    _add_family_commands(sub, entry_points(group=CLI_GROUP) if family_commands is None else family_commands)

    # the pseudonymization keys live in the secret store too; the processor, not a family, owns them
    from gateway.processing import pseudonym_keys

    pseudonym_keys.add_parser(sub).set_defaults(func=pseudonym_keys.run)

    from gateway.wifilog import cli as wifi_cli

    wifi_cli.add_parser(sub).set_defaults(func=wifi_cli.run)

    from gateway.accounts import cli as user_cli
    from gateway.audit import cli as audit_cli
    from gateway.web import cli as web_cli

    user_cli.add_parser(sub).set_defaults(func=user_cli.run)
    audit_cli.add_parser(sub).set_defaults(func=audit_cli.run)
    web_cli.add_parser(sub).set_defaults(func=web_cli.run)

    from gateway.mail import cli as mail_cli

    mail_cli.add_parser(sub).set_defaults(func=mail_cli.run)
    from gateway.backup import cli as backup_cli

    backup_cli.add_parser(sub).set_defaults(func=backup_cli.run)

    p = sub.add_parser("secret", help="manage the encrypted secret store")
    ssub = p.add_subparsers(dest="secret_command", required=True)
    s = ssub.add_parser("set", help="store a secret (read from the terminal, or --stdin)")
    s.add_argument("name")
    s.add_argument(
        "--stdin",
        action="store_true",
        help="read the value, one line, from standard input (on a terminal: a prompt, not echoed); "
        'a trailing "\\r\\n" or "\\n" (only the line ending) is not part of the value; more lines are refused',
    )
    ssub.add_parser("list", help="names of the stored secrets")
    _add_config_to_subcommands(p)
    p.set_defaults(func=cmd_secret)

    p = sub.add_parser("status", help="what the running gateway last reported")
    add_config_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    from gateway.fleet import cli as fleet_cli

    fleet_cli.add_parsers(sub)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run the gateway")
    add_config_option(p)
    p.set_defaults(func=cmd_run)


def _run_parser() -> argparse.ArgumentParser:
    """The parser of `edgegw run` alone, as `build_parser` has it."""
    parser = argparse.ArgumentParser(prog="edgegw", description="edge gateway for FIWARE data linkage platforms")
    _add_run(parser.add_subparsers(dest="command", required=True))
    return parser


def _config_first(argv: list[str]) -> list[str]:
    """`edgegw -c FILE status` read as `edgegw status -c FILE`: the option belongs to the subcommands, and the
    parser answered "invalid choice: 'FILE'"."""
    if argv[:1] in (["-c"], ["--config"]) and len(argv) > 2:
        return [*argv[2:], *argv[:2]]
    if argv[:1] and argv[0].startswith("--config="):
        return [*argv[1:], argv[0]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = _config_first(sys.argv[1:] if argv is None else argv)
    try:
        # `run` is the one command that lives on: building every command's parser imports their modules
        # (the web UI's aiohttp, the mail sender, the Wi-Fi log's signing, ~23 MB resident), which the
        # gateway would then carry for good (issue 18: ≤ 70 MB while draining; tests/test_lazy_imports.py)
        parser = _run_parser() if argv[:1] == ["run"] else build_parser()
        args = parser.parse_args(argv)
        code = int(args.func(args))
        sys.stdout.flush()  # a reader gone shows here, not as a traceback at the interpreter's exit
        return code
    except KeyboardInterrupt:  # Ctrl-C at a prompt or while listening: no traceback; each command keeps its
        # files whole on its own (backups write to a temporary file, the stores commit or roll back)
        with contextlib.suppress(OSError, ValueError):
            print("\nedgegw: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`edgegw status | head -1`): nothing left to say to it, and no message, as cat
        # or ls killed by SIGPIPE; the exit code is the one the shell shows for them (128 + SIGPIPE)
        _stdout_to_devnull()
        return EXIT_READER_GONE


def _stdout_to_devnull() -> None:
    """What is left in stdout's buffer goes nowhere: flushed at exit into the broken pipe, it raised again."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor under a test's captured stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())

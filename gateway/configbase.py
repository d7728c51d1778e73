"""Building blocks for typed configuration sections and their key-path error messages.

Every section is a frozen pydantic model that rejects unknown keys. Validation errors are
rendered as `<key.path>: <what is wrong>, got <value>` lines for `edgegw check-config`. A model
validator that checks several keys together raises `ConfigProblems`, one (key path, message) pair
per problem, so each gets its own line with its own full key path.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import stat
import sys
import tomllib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, Union, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import ConfigError
from gateway.secret_key_file import KINDS
from gateway.secrets import SecretInClear, check_url_credentials

__all__ = [
    "BrokerClient",
    "ConfigProblems",
    "ConnectsToBrokers",
    "Field",
    "Host",
    "HttpUrl",
    "Identifier",
    "NamedSection",
    "Section",
    "check_host",
    "check_http_url",
    "format_validation_error",
    "key_path",
    "parse_toml",
    "read_toml",
    "show_value",
]

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_toml(path: Path, *, missing_hint: str = "") -> dict[str, Any]:
    """The parsed document, or ConfigError (source = the file) saying why it could not be read.

    One UTF-8 byte-order mark at the start is skipped: Windows editors write it invisibly and it
    carries no meaning in UTF-8. TOML 1.0 does not mention it (toml-lang/toml#1088), toml-test and
    most parsers accept a leading one; Python's tomllib alone answers "Invalid statement".
    """
    try:
        data = _config_bytes(path)
    except FileNotFoundError:
        raise ConfigError(["file not found" + (f"; {missing_hint}" if missing_hint else "")], str(path)) from None
    except IsADirectoryError:
        raise ConfigError(["cannot read, got a directory; name the configuration file in it"], str(path)) from None
    except _NotAFile as exc:
        raise ConfigError([f"cannot read, got {exc}; name the configuration file"], str(path)) from None
    except _TooLarge as exc:
        raise ConfigError([str(exc)], str(path)) from None
    except PermissionError:
        raise ConfigError(
            ["cannot read, got permission denied; run it as the gateway's user or with sudo"], str(path)
        ) from None
    except OSError as exc:  # the words, not "[Errno 5] …" with the path the source names already
        raise ConfigError([f"cannot read, got {exc.strerror or type(exc).__name__}"], str(path)) from None
    data = data.removeprefix(_UTF8_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([_not_utf8(data, exc)], str(path)) from None
    return parse_toml(text, str(path))


# far beyond any gateway's configuration; bounds what a device or /dev/zero named as one would have root read
MAX_CONFIG_BYTES = 16 * 1024 * 1024


class _NotAFile(Exception):
    """What a configuration's name leads to instead of a regular file: the words for it."""


class _TooLarge(Exception):
    """A regular file far larger than any configuration: the whole message."""


def _config_bytes(path: Path) -> bytes:
    """The bytes of the regular file at `path` (links followed), at most MAX_CONFIG_BYTES + 1 of them.

    Root reads the configuration (`sudo edgegw web`, `check-config` in the package's postinst) and the gateway's
    account may replace it (/etc/edgegw is the account's to write: the web UI's config apply). So its name is
    opened O_PATH first, which opens no device (opening a serial port resets a board; opening a watchdog arms
    it), and only a regular file is opened for reading, through that very descriptor: a named pipe would hang a
    start or an apt upgrade, /dev/zero would fill memory.
    """
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(handle)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise _NotAFile(KINDS.get(stat.S_IFMT(st.st_mode), "no regular file"))
        fd = _reopen(handle, path, st)
    finally:
        os.close(handle)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _TooLarge(
            f"cannot read, got a file over {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; a configuration is "
            "a few KiB of text: name the configuration file"
        )
    return data


def _reopen(handle: int, path: Path, st: os.stat_result) -> int:
    """The regular file `handle` (O_PATH) holds, opened for reading: through /proc/self/fd, the very inode; without
    /proc (a chroot, an image build) by its name again, non-blocking and checked to be that inode."""
    try:
        return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.isdir("/proc/self/fd"):
            raise
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise _NotAFile("a file replaced while it was being opened")
    os.set_blocking(fd, True)
    return fd


def parse_toml(text: str, source: str = "") -> dict[str, Any]:
    """The parsed document, or ConfigError (with `source`) saying why `text` is not TOML this reader takes.

    Besides TOMLDecodeError, tomllib lets two errors out that a hostile or broken file can cause: the
    ValueError of Python's limit on the digits of a decimal integer (CVE-2020-10735) and a RecursionError
    from arrays or inline tables nested a few hundred deep. Both are the text's fault, not the gateway's.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source) from None
    except ValueError as exc:
        raise ConfigError([_too_many_digits(text, exc)], source) from None
    except RecursionError:
        raise ConfigError(
            [
                "not valid TOML: arrays or inline tables nested too deeply for this reader, got more than a few "
                "hundred levels; a configuration needs only a few"
            ],
            source,
        ) from None


# a decimal integer's digits, TOML's underscores included
_DECIMAL_RUN = re.compile(r"[0-9][0-9_]*")
_DIGITS_IN_MESSAGE = re.compile(r"value has (\d+) digits")


def _too_many_digits(text: str, exc: ValueError) -> str:
    limit = sys.get_int_max_str_digits()
    said = _DIGITS_IN_MESSAGE.search(str(exc))
    # the run with as many digits as Python counted: a string of digits (legal) is passed over unless it
    # happens to have that very length too
    wanted = int(said.group(1)) if said else None
    for m in _DECIMAL_RUN.finditer(text):
        digits = len(m.group().replace("_", ""))
        if digits == wanted or (wanted is None and digits > limit):
            line = text.count("\n", 0, m.start()) + 1
            column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            # the same "(at line, column)" tail as tomllib's own errors: the web editor marks that line
            return (
                f"not valid TOML: an integer may have at most {limit} digits, got one with {digits} "
                f"(at line {line}, column {column})"
            )
    # Python's hint (sys.set_int_max_str_digits) is for programmers, not for whoever edits the file
    return f"not valid TOML: {str(exc).split('; use sys.', 1)[0]}"


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    if data.startswith(_UTF16_BOMS):
        return 'must be UTF-8, got UTF-16 (a Windows editor\'s "Unicode"); save it as UTF-8'
    line = data.count(b"\n", 0, exc.start) + 1
    # everything before the bad byte decoded, so the column can count characters, as editors do
    column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8")) + 1
    return (
        f"must be UTF-8, got byte 0x{data[exc.start]:02x} at line {line}, column {column}; save it as UTF-8 "
        "(a Japanese Windows editor may have saved it as Shift_JIS)"
    )


class Section(BaseModel):
    """Base of every configuration section: immutable, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check_name(v: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError("must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit")
    return v


Identifier = Annotated[str, AfterValidator(_check_name)]


class NamedSection(Section):
    """An `[[adapters]]` or `[[uplinks]]` entry: a unique name (used in logs and cursors) and a type."""

    name: Identifier
    type: str


def check_http_url(v: str) -> str:
    check_url_credentials(v)  # first: the other message would show the URL, password and all
    if not re.match(r"^https?://[^\s/?#]+(/[^\s]*)?$", v):
        raise ValueError("must be an http(s) URL")
    return v.rstrip("/")


# What text that goes on one line of a header must not hold (a mail header, an HTTP header carrying a
# secret): every character str.splitlines breaks on, and the other C0/C1 controls.
NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# a DNS name: labels of 1-63 letters, digits, '-' (not first or last) and '_' (in use on private
# networks, e.g. docker service names), at most 253 characters, a trailing dot allowed
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?", re.ASCII)
_PORT_SUFFIX = re.compile(r"(?:^\[[^\]]*\]|^[^:]*):\d*$")  # host:1883, [2001:db8::1]:1883


def check_host(v: str) -> str:
    """A host to connect to: a host name, an IPv4 address or an IPv6 address, bare or in brackets (given
    back bare, as the resolver takes it); never a URL, credentials, a port or a path. The error never
    shows the value, which may hold a password (mqtt://user:password@broker)."""
    found: list[str] = []
    rest = v
    if "://" in rest:
        found.append("a URL scheme")
        rest = rest.partition("://")[2]
    if "@" in rest:
        found.append("credentials")
        rest = rest.rpartition("@")[2]
    if "/" in rest:
        found.append("a path")
        rest = rest.partition("/")[0]
    if any(c.isspace() for c in rest):
        found.append("spaces")
    elif _PORT_SUFFIX.match(rest):
        found.append("a port")
    if found:
        fix = ["write the host name or IP address alone (mqtt.example.jp, 192.0.2.10, 2001:db8::1)"]
        if "a port" in found:
            fix.append("the port goes in the port key")
        if "credentials" in found:
            fix.append(
                'the user name goes in username and the password in the secret store (password = "secret:<name>")'
            )
        listed = ", ".join(found[:-1]) + " and " + found[-1] if len(found) > 1 else found[0]
        raise SecretInClear(f"must be a host name or IP address alone, found {listed} in it", "; ".join(fix))
    bare = v[1:-1] if v.startswith("[") and v.endswith("]") else v
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
    if address is not None and (bare == v or address.version == 6):
        return bare
    # a last label of digits alone is a mistyped IPv4 address (999.1.1.1), which the resolver may read
    # as some other address, not a name (RFC 3696 §2)
    if bare == v and _HOST_NAME.fullmatch(v) and not v.rstrip(".").rpartition(".")[2].isdigit():
        return v
    raise SecretInClear(
        "must be a host name (letters, digits, '-', '_' and '.', labels of at most 63 characters) or an IP "
        "address (IPv6 bare or in brackets)",
        "an internationalized name goes in its xn-- (punycode) form",
    )


Host = Annotated[str, AfterValidator(check_host)]


@dataclass(frozen=True, slots=True)
class BrokerClient:
    """One connection a section makes to an MQTT broker, for the check that no two share a client id."""

    broker: tuple[str, int]  # (host in lower case, port)
    client_id: str
    role: str = ""  # who connects, for messages: "" for the section itself, "the command listener of "


@runtime_checkable
class ConnectsToBrokers(Protocol):
    """Optional, on an adapter's or uplink's config: the MQTT connections it makes. A broker keeps one
    connection per client id, so two with one id on one broker would take each other's session over,
    forever: `edgegw check-config` refuses that across every adapter and uplink (gateway/config.py)."""

    def broker_clients(self, gateway_id: str) -> tuple[BrokerClient, ...]: ...


class ConfigProblems(ValueError):
    """Raised by a model validator: one (key path relative to the model, message) pair per problem.

    `format_validation_error` prints each as `<model's path>.<key path>: <message>`; the message
    is complete (`<what>, got <value>[; <fix>]`), nothing is appended. An empty key path means the
    model itself.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        # one line per problem, never joined into one: each keeps its own key path wherever this is shown
        super().__init__("\n".join(f"{path}: {msg}" if path else msg for path, msg in self.problems))


def _join(base: str, relative: str) -> str:
    if not relative or not base:
        return base or relative
    return base + relative if relative.startswith("[") else f"{base}.{relative}"


HttpUrl = Annotated[str, AfterValidator(check_http_url)]


def key_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-plain", "function-wrap"):
            continue
        elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
            # pydantic inserts union/tagged-union markers into loc; they are not keys
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def show_value(value: Any) -> str:
    """A value as error lines quote it: strings in quotes, a table or a list by its kind, scalars as TOML has them."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, ensure_ascii=False, default=str)


def _unwrap(tp: Any) -> Any:
    """The model class a (possibly optional / tuple / list) annotation holds, if any."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _unwrap(arg)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return _unwrap(args[0]) if args else None
    return tp


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """One `<key.path>: <message>, got <value>` line per problem pydantic found."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigProblems):
            base = key_path(loc, prefix)
            lines.extend(f"{_join(base, rel) or '(top level)'}: {msg}" for rel, msg in cause.problems)
            continue
        path = key_path(loc, prefix) or "(top level)"
        kind = err["type"]
        msg = str(err["msg"])
        if isinstance(cause, SecretInClear) and cause.fix:
            # a secret written in clear must not be echoed into a terminal or a log by the error about it
            lines.append(f"{path}: {cause.what}, got a value that is not shown here; {cause.fix}")
            continue
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            valid = ", ".join(sorted(parent.model_fields)) if parent else ""
            lines.append(f"{path}: unknown key" + (f"; valid keys here: {valid}" if valid else ""))
            continue
        if kind == "missing":
            lines.append(f"{path}: required key is missing")
            continue
        for head in ("Value error, ", "Assertion failed, "):
            if msg.startswith(head):
                msg = msg[len(head) :]
        msg = msg[:1].lower() + msg[1:]
        if isinstance(cause, SecretInClear):
            msg += ", got a value that is not shown here"
        elif "input" in err and ", got " not in msg and not isinstance(err["input"], dict):
            # a whole table's value says nothing the message does not; quote only scalars and lists
            msg += f", got {show_value(err['input'])}"
        lines.append(f"{path}: {msg}")
    return lines

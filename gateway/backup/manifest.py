"""A backup's MANIFEST.json and the names it may list: parsed and checked without touching a disk.

A backup file comes back from a network share and is restored by root, so nothing in it is trusted
until it has passed these rules, all checked before a member is extracted. The manifest has exactly
the fields and types `Manifest.to_json` writes. Its names are the tar's regular files, one for one:
exactly one `config/<file>`, and `data/<path>` names that are plain relative paths (no `..`, `.`,
empty part, leading `/`, backslash or NUL) naming only what `create` puts into a backup — never a
sqlite side file, a lock, a hidden file (a restore's own `.pre-restore-*` directory among them).
Where the data names land on the box is archive.py's to check, since only it knows the data directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.control.protocol import MAX_CONFIG_BYTES
from gateway.errors import GatewayError

MANIFEST = "MANIFEST.json"
FORMAT = 1
CONFIG_DIR = "config"
DATA_DIR = "data"
# Bounds that hold before a byte of a member is read. A data directory holds a few dozen files; the
# manifest of MAX_MEMBERS of them, with long names, stays under MANIFEST_MAX_BYTES.
MAX_MEMBERS = 10_000
MANIFEST_MAX_BYTES = 4 << 20
# the most a config apply writes (gateway/control/protocol.py): a larger one was never applied
CONFIG_MAX_BYTES = MAX_CONFIG_BYTES
NAME_MAX_BYTES = 255  # one part of a path, as Linux file systems allow
_VERSION_MAX_CHARS = 64
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Never in a backup: sqlite's side files (the snapshot holds their content), the buffer's disk
# reserve, locks, sockets, temporary and damaged files moved aside, the status the gateway rewrites.
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".reserve", ".lock", ".sock", ".tmp", ".part")
_SKIP_NAMES = frozenset({"status.json", "backup-status.json"})
_T = TypeVar("_T")
ALTERED = "the file was altered or not made by `edgegw backup`; use another generation"


class BackupError(GatewayError):
    code = "backup_error"


def never_backed_up(name: str) -> bool:
    """Whether a file called `name` is one `create` leaves out (hidden, a side file, a lock, the status …)."""
    return name.startswith(".") or name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES) or ".corrupt-" in name


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    name: str  # inside the archive: "config/<file>" or "data/<relative path>"
    size: int
    sha256: str
    sqlite: bool
    schema_version: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    gateway_id: str
    edgegw_version: str
    created_at: datetime
    members: tuple[Member, ...]

    @property
    def config(self) -> Member:
        """The one `config/<file>` member (`check_names` made sure there is exactly one)."""
        return next(m for m in self.members if m.name.startswith(f"{CONFIG_DIR}/"))

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "gateway_id": self.gateway_id,
            "edgegw_version": self.edgegw_version,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "members": [
                {
                    "name": m.name,
                    "size": m.size,
                    "sha256": m.sha256,
                    "sqlite": m.sqlite,
                    "schema_version": m.schema_version,
                }
                for m in self.members
            ],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, where: str, raw: bytes) -> Manifest:
        """The manifest in `raw`, each field of the type `to_json` writes; BackupError naming the first that is not.

        The names are not checked here: `check_names` does, and says which member is wrong.
        """
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _bad(where, "", f"must be UTF-8, got byte 0x{raw[exc.start]:02x} at offset {exc.start}") from None
        except RecursionError:
            raise _bad(where, "", "must be the JSON a backup writes, got arrays or objects nested too deep") from None
        except ValueError as exc:
            raise _bad(where, "", f"must be JSON, got {exc}") from None
        top = _table(where, "", doc)
        fmt = top.get("format")
        if type(fmt) is not int or fmt != FORMAT:
            raise BackupError(f"{where}: unknown backup format, got {fmt!r}; expected {FORMAT}")
        version = _get(where, top, "", "edgegw_version", str)
        if not version or len(version) > _VERSION_MAX_CHARS:
            raise _bad(where, "edgegw_version", f"must be a version of 1 to {_VERSION_MAX_CHARS} characters", version)
        stamp = _get(where, top, "", "created_at", str)
        try:
            created_at = datetime.fromisoformat(stamp)
        except ValueError:
            raise _bad(where, "created_at", "must be an ISO 8601 time", stamp) from None
        if created_at.tzinfo is None:
            raise _bad(where, "created_at", "must carry its UTC offset", stamp)
        listed = _get(where, top, "", "members", list)
        if len(listed) > MAX_MEMBERS:
            raise _bad(where, "members", f"must list at most {MAX_MEMBERS} files", len(listed), quote=False)
        return cls(
            gateway_id=_get(where, top, "", "gateway_id", str),
            edgegw_version=version,
            created_at=created_at,
            members=tuple(_member(where, f"members[{i}]", item) for i, item in enumerate(listed)),
        )


def _member(where: str, at: str, item: object) -> Member:
    entry = _table(where, at, item)
    size = _get(where, entry, at, "size", int)
    if size < 0:
        raise _bad(where, f"{at}.size", "must be a number of bytes, 0 or more", size)
    sha256 = _get(where, entry, at, "sha256", str)
    if not _SHA256.fullmatch(sha256):
        raise _bad(where, f"{at}.sha256", "must be 64 lower-case hex digits", sha256)
    schema_version = entry.get("schema_version")
    if schema_version is not None and type(schema_version) is not int:
        raise _bad(where, f"{at}.schema_version", "must be a whole number or null", schema_version)
    return Member(
        name=_get(where, entry, at, "name", str),
        size=size,
        sha256=sha256,
        sqlite=_get(where, entry, at, "sqlite", bool),
        schema_version=schema_version,
    )


_KINDS: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a whole number",
    bool: "true or false",
}


def _kind(value: object) -> str:
    return "null" if value is None else _KINDS.get(type(value), "a number")


def _table(where: str, at: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, at, "must be a JSON object", _kind(value), quote=False)
    return value


def _get(where: str, table: dict[str, Any], at: str, key: str, kind: type[_T]) -> _T:
    path = f"{at}.{key}" if at else key
    if key not in table:
        raise _bad(where, path, "is required", "nothing", quote=False)
    value = table[key]
    if type(value) is not kind:  # not isinstance: JSON's true is no size, and 1 no `sqlite` flag
        raise _bad(where, path, f"must be {_KINDS[kind]}", _kind(value), quote=False)
    return value


def _bad(where: str, path: str, what: str, got: object = None, *, quote: bool = True) -> BackupError:
    shown = "" if got is None else f", got {got!r}" if quote else f", got {got}"
    return BackupError(f"{where}: {MANIFEST}{' ' + path if path else ''}: {what}{shown}; {ALTERED}")


def name_problem(name: str) -> str | None:
    """Why `name` can be no member of a backup, or None. The rules in the module docstring, one name at a time."""
    if "\x00" in name:
        return "holds a NUL byte"
    if "\\" in name:
        return "holds a backslash"
    if name.startswith("/"):
        return "is absolute"
    parts = name.split("/")
    for odd in ("", ".", ".."):
        if odd in parts:
            return "has an empty part" if not odd else f"has a {odd!r} part"
    try:
        too_long = any(len(part.encode("utf-8")) > NAME_MAX_BYTES for part in parts)
    except UnicodeEncodeError:
        return "is not UTF-8"
    if too_long:
        return f"has a part longer than {NAME_MAX_BYTES} bytes"
    top, rest = parts[0], parts[1:]
    if top == CONFIG_DIR:
        return None if len(rest) == 1 else "is not config/<file>: a config file has no directory of its own"
    if top != DATA_DIR or not rest:
        return "is neither config/<file> nor data/<path>"
    # as `data_files` walks: hidden directories are left out, the other rules are about files
    if any(part.startswith(".") for part in rest[:-1]) or never_backed_up(rest[-1]):
        return (
            "names a file a backup never holds (a hidden file or directory, a sqlite side file, a lock, a socket, "
            "a temporary or damaged file, a status file)"
        )
    return None


def check_names(where: str, manifest: Manifest) -> None:
    """Every name of `manifest` allowed, none twice, none both a file and a directory, exactly one config."""
    names: set[str] = set()
    configs: list[str] = []
    for m in manifest.members:
        problem = name_problem(m.name)
        if problem is None and m.name in names:
            problem = "is listed twice"
        if problem is not None:
            raise BackupError(f"{where}: member {m.name!r} {problem}; {ALTERED}")
        names.add(m.name)
        if m.name.startswith(f"{CONFIG_DIR}/"):
            configs.append(m.name)
            if len(configs) > 1:
                raise BackupError(
                    f"{where}: member {m.name!r} is a second config, got {configs[0]!r} already; a backup holds "
                    f"one config: {ALTERED}"
                )
            if m.size > CONFIG_MAX_BYTES:
                raise BackupError(
                    f"{where}: member {m.name!r} is a config, at most {CONFIG_MAX_BYTES} bytes (what a config apply "
                    f"takes), got {m.size}; {ALTERED}"
                )
    if not configs:
        raise BackupError(f"{where}: no config/<file> member, got none; every backup holds its config: {ALTERED}")
    for name in sorted(names):
        parts = name.split("/")
        for end in range(2, len(parts)):
            if "/".join(parts[:end]) in names:
                raise BackupError(
                    f"{where}: member {name!r} needs {'/'.join(parts[:end])} to be a directory, got it as a file "
                    f"in the backup too; {ALTERED}"
                )

"""The control socket's configuration ops: get, check, apply, versions, version, rollback, reload.

Apply is lock → validate → record the file as it is if it is not the latest version → write
atomically keeping its mode → record the new version → reload → unlock. Nothing is written when
validation fails; a new version the versions store cannot record is taken back off the disk (the
file as it was); and the running gateway keeps going when a reload is refused. A text over
MAX_CONFIG_CHARS is refused before the lock: more than any editor sends, and more than a backup
takes back.

Theory of operation: the control server and the fleet service (a remote bundle, its rollback)
each make their own ConfigOps, and another process may apply too; so the one serialisation point
is an exclusive flock on `.<config name>.lock` beside the config (`/etc/edgegw/.gateway.toml.lock`,
in the unit's ReadWritePaths), held from reading the file through the reload. The file then is
always the latest recorded version, and an apply answered "ok" was the live config when it
returned. A crash between the rename and the recording leaves the file ahead of the history: the
next apply records the file first (actor "file"), so no config that was ever live is lost from it;
a hand edit is kept the same way if it validates. One validation refuses never ran, so it is not
needed to roll back to, and it may hold a secret in clear that no check reached (validation stops
short of a section it cannot type): only its sha256 is kept, with a comment saying why and naming the
key paths `clear_secrets` sees, as the history goes into every backup. A caller whose decision
depends on the file (the fleet's rollback text, a rollback that must not overwrite a newer config)
makes it in `guard`, under the same lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import sqlite3
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.app import reload_problem
from gateway.config import GatewayConfig, parse_config
from gateway.configbase import parse_toml
from gateway.control import args as a
from gateway.control.config_versions import (
    FILE,
    ConfigVersions,
    access_fix,
    cannot_open,
    not_writable,
    os_words,
    sha256_text,
)
from gateway.control.protocol import (
    BAD_ARGS,
    CONFIG_INVALID,
    MAX_CONFIG_CHARS,
    NOT_FOUND,
    RELOAD_FAILED,
    UNAVAILABLE,
    WRITE_FAILED,
    ControlError,
)
from gateway.control.target import ControlTarget
from gateway.errors import ConfigError
from gateway.secrets import CREDENTIAL_NAME, SecretInClear, check_url_credentials, is_ref
from gateway.storage.files import StoreUnreadable, write_atomic

_BOM = "\ufeff"  # see gateway.configbase.read_toml: Windows editors write it invisibly
LOCK_POLL_S = 0.02
# called under the apply's lock, in a worker thread, with the text on disk (None: no file yet) before
# anything is validated or written: it may note that text, or raise to have nothing written
Guard = Callable[[str | None], None]
FIRST = "before the first apply"
UNRECORDED = "found on disk, not recorded: edited by hand, or an apply cut short before it was recorded"
NOT_KEPT = "its text is not kept, only its sha256"
_NOT_SHOWN = ", got a value that is not shown here"  # configbase's mark on a SecretInClear's line
# a field that must be a secret reference; `key$` of CREDENTIAL_NAME (for header and parameter names) left out,
# as it names public keys and kintone's upsert key
_SECRET_FIELD = re.compile(r"authorization|cookie|api[-_]?key|token|secret|password|passwd", re.IGNORECASE)
_NAMED_BY_HEADER = ("headers", "params")  # tables whose keys are header/parameter names, checked as validation does


def parse_text(text: str, source: str = "") -> GatewayConfig:
    """`text` validated as `load_config` validates a file; ConfigError with key-path lines otherwise."""
    return parse_config(parse_toml(text.removeprefix(_BOM), source), source)


def _strings(value: Any, path: str, parent: str = "") -> Iterator[tuple[str, str, str]]:
    """(key path, key name, string) of every string in a parsed TOML value; a list's items named by their key."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key, parent=key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]", parent=parent)
    elif isinstance(value, str):
        yield path, parent, value


def _held(path: str, name: str, value: str) -> bool:
    if "://" in value:  # a URL (token_url too) holds one only in its user info or query, as validation says
        try:
            check_url_credentials(value)
        except SecretInClear:
            return True
        return False
    if is_ref(value):
        return False
    table = path.rpartition(".")[0].rpartition(".")[2]
    return bool((CREDENTIAL_NAME if table in _NAMED_BY_HEADER else _SECRET_FIELD).search(name))


def clear_secrets(text: str) -> list[str] | None:
    """The key paths where `text` is seen to hold a secret in clear ([] for none seen); None when it cannot be told
    (not TOML). A text validation accepts holds none: every secret check ran."""
    try:
        parse_text(text)
        return []
    except ConfigError as exc:
        return _seen(text, exc.errors)


def _seen(text: str, errors: list[str]) -> list[str] | None:
    """`clear_secrets` of a text validation refused with `errors`: validation's own finds (a host with user info
    too) and the shared rules of gateway.secrets on every string. Not every secret: validation stops short of a
    section it cannot type (`type = "scaner"`), and a key there (a scanner's `visit_keys.K1`) has no name the rules
    know, so what is seen names places in a comment and never decides whether a text is kept."""
    try:
        doc = tomllib.loads(text.removeprefix(_BOM))
    except tomllib.TOMLDecodeError:
        return None
    found = {line.partition(": ")[0] for line in errors if _NOT_SHOWN in line}
    found.update(path for path, name, value in _strings(doc, "") if _held(path, name, value))
    return sorted(found)


def _found_comment(text: str, first: bool) -> str | None:
    """The comment of a text found on disk unrecorded; None to keep it whole, else why only its sha256 is.

    Kept whole only if it validates: then every secret check ran and it may have run, so it is one to roll back to.
    One validation refuses cannot run (the gateway refuses it at start and reload too), so it is none to roll back
    to, while keeping it could keep a secret no check reached for good."""
    found = FIRST if first else UNRECORDED
    try:
        parse_text(text)
        return None
    except ConfigError as exc:
        seen = _seen(text, exc.errors)
    if seen is None:
        return f"{found}; {NOT_KEPT}: not valid TOML, so it could not be checked for a secret in clear (never run)"
    if not seen:
        return (
            f"{found}; {NOT_KEPT}: validation refuses it, so it never ran, and a section validation cannot type may "
            "hold a secret no check reached (`edgegw check-config` says what is wrong)"
        )
    return (
        f"{found}; {NOT_KEPT}: it held a secret in clear at {', '.join(seen)} (never run: validation refuses it; "
        'write it as "secret:<name>")'
    )


def lock_path(config_path: Path) -> Path:
    return config_path.with_name(f".{config_path.name}.lock")


async def _take(fd: int) -> None:
    # Polled, not a flock in a thread: a thread blocked per waiting apply would hold a worker of
    # the default executor that the holder's reload needs, and a cancelled wait would leave that
    # thread to take the lock for nobody.
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(LOCK_POLL_S)


def _write_failed(path: Path, exc: OSError) -> ControlError:
    return ControlError(
        WRITE_FAILED,
        f"config: {path} not written, got {exc.strerror or exc}; the gateway's user needs write "
        f"access to {path.parent} (systemd: ReadWritePaths=)",
    )


def _not_recorded(path: Path, versions: Path, exc: sqlite3.Error | OSError, state: str) -> ControlError:
    if isinstance(exc, OSError):  # the store's open: its file or directory, never the config file
        got = os_words(versions, exc)
    else:
        # StoreUnreadable (a damaged or foreign file) says what it is and what to do; SQLite's own errors do not
        got = str(exc) if isinstance(exc, StoreUnreadable) else f"{type(exc).__name__}: {exc}"
    fix = (
        f"{access_fix(versions)}; then apply again"
        if not_writable(exc)
        else "check that store (is another program holding it?) and apply again"
    )
    return ControlError(
        WRITE_FAILED,
        f"config: not applied, the config versions store {versions} cannot record it, got {got}; {state}: {fix}",
    )


def _put_back(path: Path, on_disk: str | None) -> None:
    if on_disk is None:
        path.unlink(missing_ok=True)
    else:
        write_atomic(path, on_disk.encode(), None, durable=True)


class ConfigOps:
    def __init__(self, target: ControlTarget, clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self.clock = clock

    def _versions(self) -> ConfigVersions:
        return ConfigVersions(Path(self.target.config.gateway.data_dir) / FILE)

    def _reading(self) -> ConfigVersions:
        """The store, for the ops that only read it; its open's OSError in the store's words."""
        path = Path(self.target.config.gateway.data_dir) / FILE
        try:
            return ConfigVersions(path)
        except OSError as exc:
            fix = access_fix(path) if not_writable(exc) else "check that file and its directory"
            raise ControlError(UNAVAILABLE, f"{cannot_open(path, exc)}; {fix}") from None

    def check(self, text: str) -> tuple[GatewayConfig | None, list[str]]:
        try:
            new = parse_text(text)
        except ConfigError as exc:
            return None, list(exc.errors)
        problem = reload_problem(self.target.config, new)
        return (None, [problem]) if problem is not None else (new, [])

    async def op_get(self, args: dict[str, Any]) -> dict[str, Any]:
        path = self.target.config_path
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        sha = sha256_text(text)

        def version() -> int | None:
            store = self._reading()
            try:
                return store.version_of(sha)
            finally:
                store.close()

        return {"path": str(path), "text": text, "sha256": sha, "version": await asyncio.to_thread(version)}

    async def op_check(self, args: dict[str, Any]) -> dict[str, Any]:
        # in a thread, as in apply: a 1 MiB text takes ~0.8 s to validate, which on the loop would hold
        # every device read and delivery of the gateway that long
        _, errors = await asyncio.to_thread(self.check, a.text(args, "text"))
        return {"ok": not errors, "errors": errors}

    async def op_apply(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.apply(a.text(args, "text"), actor=a.text(args, "actor"), comment=a.text(args, "comment", ""))

    async def apply(self, text: str, *, actor: str, comment: str, guard: Guard | None = None) -> dict[str, Any]:
        """Lock, validate, write, record, reload (see the module's docstring); `guard`'s exception propagates as is."""
        path = self.target.config_path
        if len(text) > MAX_CONFIG_CHARS:
            raise ControlError(
                BAD_ARGS,
                f"config: text of {len(text)} characters, at most {MAX_CONFIG_CHARS} are applied; nothing written",
            )
        try:
            fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _write_failed(path, exc) from None
        try:
            await _take(fd)
            return await self._apply_locked(path, text, actor=actor, comment=comment, guard=guard)
        finally:
            os.close(fd)  # releases the lock

    async def _apply_locked(
        self, path: Path, text: str, *, actor: str, comment: str, guard: Guard | None
    ) -> dict[str, Any]:
        def read() -> str | None:
            return path.read_text(encoding="utf-8") if path.exists() else None

        try:
            on_disk = await asyncio.to_thread(read)
        except OSError as exc:
            raise _write_failed(path, exc) from None
        if guard is not None:
            await asyncio.to_thread(guard, on_disk)
        new, errors = await asyncio.to_thread(self.check, text)
        if new is None:
            raise ControlError(CONFIG_INVALID, f"config: {len(errors)} problem(s), nothing written or reloaded", errors)
        at = self.clock()
        versions = Path(self.target.config.gateway.data_dir) / FILE  # the running data_dir's

        def write() -> int:
            try:
                store = self._versions()
            except (sqlite3.Error, OSError) as exc:  # an OSError here is the store's, not the config file's
                raise _not_recorded(path, versions, exc, "nothing written") from None
            try:
                try:
                    if on_disk is not None:
                        latest = store.list(limit=1)
                        if not latest or latest[0].sha256 != sha256_text(on_disk):
                            # kept, for good and in every backup, only if it validates (`_found_comment`)
                            why = _found_comment(on_disk, first=not latest)
                            if why is None:
                                store.record(on_disk, actor="file", at=at, comment=UNRECORDED if latest else FIRST)
                            else:
                                store.record_digest(sha256_text(on_disk), actor="file", at=at, comment=why)
                except sqlite3.Error as exc:
                    raise _not_recorded(path, versions, exc, "nothing written") from None
                write_atomic(path, text.encode(), None, durable=True)
                try:
                    return store.record(text, actor=actor, at=at, comment=comment)
                except sqlite3.Error as exc:
                    # Left in place, the text would run at the next start, applied by nobody's word and
                    # missing from the history: put back, an apply is all or nothing.
                    try:
                        _put_back(path, on_disk)
                    except OSError as back:
                        raise ControlError(
                            WRITE_FAILED,
                            f"config: {path} written but its version not recorded in {versions}, got "
                            f"{type(exc).__name__}: {exc}; nor could the text before it be put back, got "
                            f"{back.strerror or back}: {path} holds the new text, not running",
                        ) from None
                    raise _not_recorded(path, versions, exc, f"{path} is as it was") from None
            finally:
                store.close()

        try:
            version = await asyncio.to_thread(write)
        except OSError as exc:
            raise _write_failed(path, exc) from None
        failed = await self.target.reload(new)
        if failed:
            raise ControlError(RELOAD_FAILED, f"config: version {version} written but not running", failed)
        return {"version": version, "reloaded": True}

    async def op_versions(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        def listing() -> list[dict[str, Any]]:
            store = self._reading()
            try:
                return [v.summary() for v in store.list()]
            finally:
                store.close()

        return await asyncio.to_thread(listing)

    async def _version(self, args: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        number = a.integer(args, "version", lo=1)

        def get() -> Any:
            store = self._reading()
            try:
                return store.get(number)
            finally:
                store.close()

        found = await asyncio.to_thread(get)
        if found is None:
            raise ControlError(NOT_FOUND, f"config.version: no such version, got {number}")
        return number, found.text, found.summary() | {"text": found.text}

    async def op_version(self, args: dict[str, Any]) -> dict[str, Any]:
        return (await self._version(args))[2]

    async def op_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        number, text, _ = await self._version(args)
        if not text:  # no text validates, and one whose text was not kept (NOT_KEPT) is recorded by its digest
            raise ControlError(
                NOT_FOUND,
                f"config.rollback: version {number}'s text was not kept (see its comment), got nothing to roll "
                "back to; choose another version",
            )
        return await self.apply(text, actor=a.text(args, "actor"), comment=f"rollback to version {number}")

    async def op_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        errors = await self.target.reload()
        if errors:
            raise ControlError(CONFIG_INVALID, "reload: refused, the running configuration is kept", errors)
        return {"reloaded": True}

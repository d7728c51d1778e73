"""Secrets referenced from the config and kept encrypted at rest (Fernet, key file readable by root only).

A config value of type `SecretRef` is never the secret itself but `secret:<name>` (the encrypted
store under the data directory) or `env:<VAR>` (for systemd credentials / containers). The rules
every config section shares live here too: a credential-looking header or parameter must be such a
reference, and no URL may carry credentials. Every value `resolve` hands out is registered with
`gateway.redact`, so it never reaches a log line or the status file.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator

from gateway import redact
from gateway.backup.held_dir import kind, new_file, who_may_change
from gateway.errors import ConfigError, GatewayError
from gateway.secret_key_file import KINDS, directory_refusal, make_private, not_permitted, open_regular, present
from gateway.storage.files import create_whole, write_atomic

if TYPE_CHECKING:
    # imported in SecretStore._fernet, the one place a store is opened: cryptography's bindings are
    # ~8 MB resident, and the config layer imports this module for every gateway (issue 18)
    from cryptography.fernet import Fernet

_log = logging.getLogger("gateway.secrets")

_NAME = r"[A-Za-z_][A-Za-z0-9_.-]{0,127}"
_NAME_RE = re.compile(_NAME)
_REF = re.compile(rf"^(secret|env):({_NAME})$")
NAME_RULE = "1-128 characters of A-Z a-z 0-9 _ . - starting with a letter or _"
STORE_FILE = "secrets.enc"
KEY_FILE = "secrets.key"
LOCK_FILE = "secrets.lock"
# Version of the store's plaintext layout (gateway.storage: every store carries one); 0 is the bare map.
SCHEMA_VERSION = 1
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_ROOT_FIX = "if you did not put it there, find who did; move it aside and run the command again"
REF_HELP = 'use a secret reference: "secret:<name>" (set with `edgegw secret set <name>`) or "env:<VARIABLE>"'
# Header, parameter and query names that carry credentials: their values must be secret references.
CREDENTIAL_NAME = re.compile(r"authorization|cookie|api[-_]?key|token|secret|password|passwd|key$", re.IGNORECASE)
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*@")
URL_CREDENTIAL_FIX = (
    'put the credential in the secret store (`edgegw secret set <name>`) and reference it as "secret:<name>" '
    '(or "env:<VARIABLE>") from the section\'s headers, params or token settings'
)


class SecretInClear(ValueError):
    """A config value that should reference a secret holds something else; never echo it.

    `fix` (optional) is shown after the `got …` part: `<what>, got a value that is not shown here; <fix>`.
    """

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


class SecretNameError(GatewayError, ValueError):
    """A name for the secret store that is not allowed."""

    code = "secret_name_invalid"


def check_name(name: str) -> str:
    """A secret's name as `secret:<name>` can reference it; SecretNameError otherwise."""
    if not _NAME_RE.fullmatch(name):
        raise SecretNameError(f"name must be {NAME_RULE}, got {json.dumps(name, ensure_ascii=False)}", name=name)
    return name


def is_ref(value: str) -> bool:
    """Whether a header or parameter value is meant as a `secret:`/`env:` reference."""
    return value.startswith(("secret:", "env:"))


def check_ref_or_text(what: str, name: str, value: str) -> None:
    """A header or parameter: one line; a valid reference; and a reference if its name says credential."""
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{what} {name!r} must be one line without control characters")
    if is_ref(value):
        if not _REF.match(value):
            raise ValueError(f"{what} {name!r} is not a valid secret reference; {REF_HELP}")
    elif CREDENTIAL_NAME.search(name):
        raise ValueError(f"{what} {name!r} carries a credential and must not be written in clear; {REF_HELP}")


def check_url_credentials(url: str) -> str:
    """No user:password@ and no credential-named query parameter in a URL; the error never shows the URL."""
    if _USERINFO.match(url):
        raise SecretInClear("must not carry credentials (user:password@)", URL_CREDENTIAL_FIX)
    _, _, rest = url.partition("?")
    query = rest.partition("#")[0]
    for pair in query.split("&") if query else ():
        key = pair.partition("=")[0]
        if CREDENTIAL_NAME.search(key):
            raise SecretInClear(f"must not carry a credential in its query (parameter {key!r})", URL_CREDENTIAL_FIX)
    return url


def _check_ref(v: str) -> str:
    if not _REF.match(v):
        raise SecretInClear(
            'must reference a secret as "secret:<name>" (stored with `edgegw secret set <name>`) '
            'or "env:<VARIABLE>", never the secret in clear'
        )
    return v


SecretRef = Annotated[str, AfterValidator(_check_ref)]


class SecretStore:
    """A JSON map name → value, encrypted with a key file of mode 0600 next to it.

    Several processes write it (the gateway makes its keys at start, the web UI, `edgegw secret set`):
    a change is read, modified and written under an exclusive lock on `secrets.lock`, through a file
    of its own, renamed over the store and made durable with its directory. Without the lock two
    writers each kept only their own change, and a key made for sealed data (a locker's address
    key) could be lost with everything it sealed. Readers take no lock: a rename is atomic. A value
    computed from a value read must be changed with `update` (or made with `get_or_create`), which
    runs the change under that lock: a `get` then a `set` is a race between processes.

    Run by root (`sudo edgegw pseudonym rotate`, `sudo edgegw secret set`), every file it writes keeps the
    owner of the file it replaces, or takes the data directory's when it is new (`_owner`), before it
    appears under its name: a root-owned 0600 store, key or lock file left the gateway's user unable to
    read any secret after its next restart.

    The key is used only as a regular file that no one but its owner may read or write (`_key_bytes`, with the
    checks of `gateway.secret_key_file`). A link at the key's or the store's name counts as that file even when
    what it points to is not there: it is refused by name, never read as "no store", replaced nor written through.

    Under root the store's directory is held open for the whole call (`_holding`) and its files are made, renamed and
    handed over by name in it: the gateway's user owns the directory holding it (`<state_dir>/secrets`, the data
    directory) and could put a link to /etc under its name, or at a file's name, at any moment. A link is followed
    only where no one but root may change it (an admin's layout); in a directory another user may change, a link or
    a hard link at a file's name is refused, never read nor written through. The directory's parent is still reached
    by its path, as any user reaches it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.store_path = self.directory / STORE_FILE
        self.key_path = self.directory / KEY_FILE
        self.lock_path = self.directory / LOCK_FILE
        self._held = _Held()

    @contextlib.contextmanager
    def _usable(self) -> Iterator[None]:
        """Every way in: a PermissionError as the ConfigError for a data directory left root's, when that is why."""
        try:
            with self._holding():
                yield
        except PermissionError:
            refusal = directory_refusal(self.directory)
            if refusal is None:
                raise
            raise refusal from None

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Under root, the store's directory held open (`_Held`) until the outermost call using it returns."""
        held = self._held
        if os.geteuid() != 0:
            yield
            return
        if held.depth:  # a call within a call (migrate reads the version first): the same directory
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        try:
            held.parent = os.open(self.directory.parent, _DIR_FLAGS)
        except FileNotFoundError:
            held.parent = None  # made by the first write, as before
        try:
            held.fd = None if held.parent is None else self._open_dir(held.parent)
            held.depth = 1
            yield
        finally:
            for fd in (held.fd, held.parent):
                if fd is not None:
                    os.close(fd)
            held.fd = held.parent = held.others = None
            held.depth = 0

    def _open_dir(self, parent: int) -> int | None:
        """The store's directory opened by name in `parent`; None if it is not there. A link there is followed only
        when no one but root may change it (held_dir.who_may_change): in the gateway's user's directory it is refused."""
        name = self.directory.name
        try:
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            link = os.stat(name, dir_fd=parent, follow_symlinks=False)
            got = kind(parent, name)
            if not stat.S_ISLNK(link.st_mode):
                raise ConfigError(
                    [f"{self.directory}: not the secret store's directory, got {got}; {_ROOT_FIX}"]
                ) from None
            who = who_may_change(os.fstat(parent), link)
            if who is not None:
                fix = (
                    "if the link is yours, name the directory it leads to in the config instead; if not, find who put "
                    "it there, remove it and run the command again"
                )
                raise self._refused(self.directory, "not the secret store's directory", got, who, fix) from None
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)  # only root may change where it leads
        st = os.fstat(fd)
        # who besides root may put a name in it (a link, a hard link): then none is followed nor taken unchecked
        if st.st_uid != 0:
            self._held.others = f"uid {st.st_uid}"
        elif st.st_mode & 0o022:
            self._held.others = f"its group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        return fd

    def _root_dir(self) -> int | None:
        """Under root, the held store directory, made (by name in its parent) if missing; None for any other user."""
        held = self._held
        if os.geteuid() != 0 or not held.depth:
            return None
        if held.fd is None:
            if held.parent is None:
                self.directory.parent.mkdir(parents=True, exist_ok=True)  # its parents by path, as any user
                held.parent = os.open(self.directory.parent, _DIR_FLAGS)
            with contextlib.suppress(FileExistsError):  # made meanwhile, or a link: _open_dir decides
                os.mkdir(self.directory.name, dir_fd=held.parent)
            held.fd = self._open_dir(held.parent)
            if held.fd is None:
                raise FileNotFoundError(errno.ENOENT, "made but gone at once", str(self.directory))
        return held.fd

    def _refused(self, path: Path, what: str, got: str, who: str | None, fix: str) -> ConfigError:
        """A link or a hard link at `path` in a directory `who` (else `_Held.others`) may change: refused, logged."""
        error = ConfigError(
            [
                f"{path}: {what}, got {got}; root follows no link nor uses another file's name in {path.parent}, "
                f"which {who or self._held.others} may change, and nothing was read or written through it: {fix}"
            ]
        )
        _log.error("%s", error.errors[0])
        return error

    def _present(self, path: Path) -> bool:
        """`present`, looked at by name in the held directory under root."""
        held = self._held
        if os.geteuid() != 0 or not held.depth:
            return present(path)
        if held.fd is None:
            return False
        try:
            os.stat(path.name, dir_fd=held.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _open_held(self, path: Path, flags: int, what: str, fix: str) -> int:
        """Under root, `path`'s name opened in the held directory: through a link only when no one but root may put
        one there; a link, a hard link or anything but a regular file refused otherwise."""
        dir_fd = self._held.fd
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        strict = self._held.others is not None
        # O_NONBLOCK: a named pipe put in its place would hold root's run (a web request, a CLI command)
        flags |= os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if strict else 0)
        try:
            fd = os.open(path.name, flags, dir_fd=dir_fd)
        except OSError as exc:
            if not strict or exc.errno not in (errno.ELOOP, errno.ENXIO):
                exc.filename = str(path)
                raise
            raise self._refused(path, what, _got(dir_fd, path.name), None, fix) from None
        st = os.fstat(fd)
        if strict and (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1):
            os.close(fd)
            got = (
                f"a file with {st.st_nlink} names (a hard link to another file)"
                if stat.S_ISREG(st.st_mode)
                else KINDS.get(stat.S_IFMT(st.st_mode), "no regular file")
            )
            raise self._refused(path, what, got, None, fix)
        return fd

    def _create(self, dir_fd: int, name: str, data: bytes) -> None:
        """`create_whole` by name in the held directory, the file the directory owner's before it has its name."""
        tmp = f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            with new_file(dir_fd, tmp, where=self.directory / tmp, owner=os.fstat(dir_fd)) as f:
                f.write(data)
            with contextlib.suppress(FileExistsError):  # another process linked its own first: that one counts
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
        os.fsync(dir_fd)

    def _open_lock(self) -> int:
        dir_fd = self._root_dir()
        if dir_fd is not None:
            what = "not the store's lock file"
            try:
                return self._open_held(self.lock_path, os.O_RDWR, what, _ROOT_FIX)
            except FileNotFoundError:
                self._create(dir_fd, LOCK_FILE, b"")
                return self._open_held(self.lock_path, os.O_RDWR, what, _ROOT_FIX)
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(self.lock_path, os.O_RDWR)
        except FileNotFoundError:
            # linked into place already the gateway's, never replaced: a lock file another process made stays
            create_whole(self.lock_path, b"")
            return os.open(self.lock_path, os.O_RDWR)
        except PermissionError:
            refusal = not_permitted(self.lock_path, "writable")
            if refusal is None:
                raise
            raise refusal from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _fernet(self, create: bool) -> Fernet:
        from cryptography.fernet import Fernet  # here, not at the top: see the imports

        # a link to a key that is not there counts as a key: refused by name, never replaced nor written through
        if not self._present(self.key_path):
            if not create:
                raise ConfigError([f"no secret store key at {self.key_path}; run `edgegw secret set <name>` first"])
            if self._present(self.store_path):
                # a new key would never open the store, and would stand in the way of the right one; a link to a
                # store that is not there is named first, as reading it would
                os.close(self._open_store())
                raise ConfigError(
                    [
                        f"no secret store key at {self.key_path}, but {self.store_path} exists; put back the key "
                        "file that belongs to it (kept apart from backups), or move the store aside to start anew"
                    ]
                )
            # whole, and the gateway's before it has its name: a crash leaves no empty key, nor one root's
            dir_fd = self._root_dir()
            if dir_fd is not None:
                self._create(dir_fd, KEY_FILE, Fernet.generate_key())
            else:
                self.directory.mkdir(parents=True, exist_ok=True)
                create_whole(self.key_path, Fernet.generate_key())
        key = self._key_bytes()
        try:
            return Fernet(key)
        except ValueError:  # binascii.Error too: never shown, the file may hold a key of something else
            raise ConfigError(
                [
                    f"{self.key_path}: not a secret store key, got {len(key)} bytes "
                    f"(expected 32 url-safe base64-encoded bytes, 44 characters); {self._key_fix()}"
                ]
            ) from None

    def _key_fix(self, first: str = "") -> str:
        if self._present(self.store_path):
            return f"{first}put back the key file that belongs to {self.store_path} (kept apart from backups)"
        return "move it aside: a new one is made with the first secret set"

    def _key_bytes(self) -> bytes:
        """The key file's content (stripped), once it is known to be a regular file private to its owner."""
        fd = self._open_regular(self.key_path, "not a secret store key", lambda: self._key_fix("move it aside and "))
        try:
            make_private(fd, self.key_path, self.store_path)
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read().strip()
        finally:
            os.close(fd)

    def _read(self, fernet: Fernet) -> dict[str, object]:
        """The store's plaintext document: every way to open it (get, names, migrate) comes through here."""
        from cryptography.fernet import InvalidToken  # loaded already by _fernet

        fd = self._open_store()
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                token = f.read()
        finally:
            os.close(fd)
        if not _fernet_token(token):
            raise ConfigError(
                [
                    f"{self.store_path}: not a secret store, got {len(token)} bytes that are no Fernet token; "
                    "restore it from a backup (with the key file that belongs to it)"
                ]
            )
        try:
            plain = fernet.decrypt(token)
        except InvalidToken:
            if _partly_readable(self._key_bytes(), token):
                raise ConfigError(
                    [
                        f"{self.store_path}: damaged, got a store whose integrity check fails although "
                        f"{self.key_path} decrypts parts of it; restore {STORE_FILE} from a backup and keep the key "
                        "file, it belongs to the store"
                    ]
                ) from None
            raise ConfigError(
                [f"{self.store_path}: cannot be decrypted with {self.key_path}; the key file does not belong to it"]
            ) from None
        try:
            data = json.loads(plain)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # written with this box's key, but not by edgegw: nothing of it is shown, it holds secrets
            raise ConfigError([f"{self.store_path}: not a secret store, got a document that is no JSON object"])
        return data

    def _open_store(self) -> int:
        return self._open_regular(
            self.store_path,
            "not a secret store",
            lambda: f"move it aside and restore {STORE_FILE} from a backup (with the key file that belongs to it)",
        )

    def _open_regular(self, path: Path, what: str, fix: Callable[[], str]) -> int:
        """`open_regular`; under root by name in the held directory, checked as `_open_held` says."""
        dir_fd = self._root_dir()
        if dir_fd is None:
            return open_regular(path, what, fix)
        if self._held.others is None:
            # a link only root may put there (a key on a medium): followed and named as ever, but from the held
            # directory: by path, the directory's own name could be the gateway's user's link by now
            return open_regular(path, what, fix, dir_fd=dir_fd)
        return self._open_held(path, os.O_RDONLY, what, fix())

    def _load(self, fernet: Fernet) -> dict[str, str]:
        if not self._present(self.store_path):
            return {}
        return self._upgrade(self._read(fernet))

    def _upgrade(self, data: dict[str, object]) -> dict[str, str]:
        # Version 0 (the first release) is the bare map; from version 1 it sits in an envelope with
        # its version. A bare map never holds an int "version", so the two cannot be confused.
        version = data.get("version") if isinstance(data.get("version"), int) else 0
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigError(
                [
                    f"{self.store_path}: schema version newer than this edgegw knows ({SCHEMA_VERSION}), "
                    f"got version {version}; upgrade edgegw"
                ]
            )
        secrets = data if version == 0 else data.get("secrets")
        if not isinstance(secrets, dict):
            raise ConfigError(
                [f"{self.store_path}: no secrets map in a version {version} store, got {type(secrets).__name__}"]
            )
        return {str(k): str(v) for k, v in secrets.items()}

    def schema_version(self) -> int:
        """The version of the file as it is on disk (0 for the first release's bare map)."""
        with self._usable():
            if not self._present(self.store_path):
                return SCHEMA_VERSION
            data = self._read(self._fernet(create=False))
        version = data.get("version")
        return version if isinstance(version, int) else 0

    def migrate(self) -> bool:
        """Rewrite an older file in the current format (atomically: a failure leaves the old one); True if it did."""
        # without its key the store cannot be read at all: left for `get` to report when a secret is used
        with self._usable():
            if not self._present(self.store_path) or not self._present(self.key_path):
                return False
            before = self.schema_version()
            if before == SCHEMA_VERSION:
                return False
            with self._locked():
                fernet = self._fernet(create=False)
                self._write(fernet, self._load(fernet))
        _log.info("secret store %s migrated from schema version %d to %d", self.store_path, before, SCHEMA_VERSION)
        return True

    def get(self, name: str) -> str:
        with self._usable():
            data = self._load(self._fernet(create=False))
        if name not in data:
            raise ConfigError([f"secret:{name}: not in the secret store; set it with `edgegw secret set {name}`"])
        return data[name]

    def set(self, name: str, value: str) -> None:
        self.update(name, lambda _current: value)

    def update(self, name: str, change: Callable[[str | None], str | None]) -> str | None:
        """Replace the secret `name` by `change(its current value)` atomically; returns the value now stored.

        None stands for absent, as argument and as result (returning None deletes the secret). `change`
        runs under the store's lock, against the value on disk at that moment: no other process's
        change can fall between the read and the write, so a change made from a value read earlier
        (e.g. a key ring) can neither drop another writer's entry nor bring back one it removed.
        Durable when this returns; nothing is written when `change` returns the current value.
        `change` must be quick and must not use this store (the lock is not re-entrant).
        """
        check_name(name)
        with self._usable(), self._locked():
            fernet = self._fernet(create=True)
            data = self._load(fernet)
            current = data.get(name)
            new = change(current)
            if new == current:
                return current
            if new is None:
                del data[name]
            else:
                data[name] = new
            self._write(fernet, data)
        return new

    def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        """The secret `name`, first set to `make()` if absent; two processes starting together get one value.

        `make` runs only when the secret is absent, under the lock: a key made here is durable before
        this returns, and every caller gets the value that was stored, never one of its own that lost.
        """
        value = self.update(name, lambda current: make() if current is None else current)
        assert value is not None  # make() returns a str, and the current value is kept otherwise
        return value

    def _write(self, fernet: Fernet, data: dict[str, str]) -> None:
        """Under `_locked`: the new store through a file of its own (0600), renamed and made durable."""
        payload = fernet.encrypt(json.dumps({"version": SCHEMA_VERSION, "secrets": data}).encode())
        dir_fd = self._root_dir()
        if dir_fd is None:
            write_atomic(self.store_path, payload, 0o600, durable=True)
            return
        # the owner of the file it replaces (the link itself, never what it points to), else the directory's
        try:
            owner = os.stat(STORE_FILE, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            owner = os.fstat(dir_fd)
        tmp = f".{STORE_FILE}.{os.urandom(4).hex()}.tmp"
        try:
            with new_file(dir_fd, tmp, where=self.directory / tmp, owner=owner) as f:
                f.write(payload)
            os.replace(tmp, STORE_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)  # a name of its own is never reused
            raise
        os.fsync(dir_fd)

    def names(self) -> list[str]:
        with self._usable():
            if not self._present(self.key_path):
                return []
            return sorted(self._load(self._fernet(create=False)))


class _Held(threading.local):
    """Under root, per thread (a web server's store is shared): the store's parent and directory held open for one
    call (`depth` counts the calls nested in it), and who besides root may put a name in the directory (None: no
    one, links there are an admin's and followed)."""

    parent: int | None = None
    fd: int | None = None
    others: str | None = None
    depth = 0


def _got(dir_fd: int, name: str) -> str:
    """What has `name` in `dir_fd`, for a message: held_dir.kind, with a FIFO or a socket told from a file."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "nothing"
    return KINDS.get(stat.S_IFMT(st.st_mode)) or kind(dir_fd, name)


def _fernet_token(token: bytes) -> bool:
    """Whether `token` has a Fernet token's shape: version 0x80, time, IV, whole AES blocks, HMAC.

    Told apart before decrypting: any other file (a damaged copy, another tool's) fails the HMAC like a
    token under another key, and would be blamed on the key file.
    """
    try:
        raw = base64.urlsafe_b64decode(token)
    except ValueError:
        return False
    return len(raw) >= 73 and raw[0] == 0x80 and (len(raw) - 57) % 16 == 0


def _partly_readable(key: bytes, token: bytes) -> bool:
    """Whether `key` decrypts a whole block of `token` into printable ASCII, as the store's JSON is throughout.

    Called when the token's HMAC fails, to tell a damaged store from a key file of another store without
    any mark beside the token (existing stores keep their format). AES-CBC garbles only the block a damaged
    byte sits in and the one after it, so the right key still reads the rest; under another key every block
    is noise, printable by chance with odds of (95/256)^16, about 1 in 8 million per block. The last block
    holds the padding and is not looked at. Nothing decrypted here is used or shown.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    raw = base64.urlsafe_b64decode(token)
    # Fernet: version (1), timestamp (8), IV (16), ciphertext, HMAC (32); the key: signing half, encryption half
    iv, body = raw[9:25], raw[25:-32]
    decryptor = Cipher(algorithms.AES(base64.urlsafe_b64decode(key)[16:]), modes.CBC(iv)).decryptor()
    plain = decryptor.update(body) + decryptor.finalize()
    blocks = (plain[i : i + 16] for i in range(0, len(plain) - 16, 16))
    return any(all(0x20 <= byte <= 0x7E for byte in block) for block in blocks)


def resolve(ref: str, data_dir: Path | str) -> str:
    """The clear value of a `SecretRef`, for the moment it is used; registered with the redactor first."""
    m = _REF.match(ref)
    if m is None:
        raise ConfigError([f"secret reference {ref!r} is not of the form secret:<name> or env:<VARIABLE>"])
    kind, name = m.groups()
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise ConfigError([f"env:{name}: the environment variable is not set"])
    else:
        value = SecretStore(Path(data_dir)).get(name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # bytes that are not UTF-8, kept as lone surrogates by a surrogateescape stdin (a Shift_JIS token file
        # set before `edgegw secret set` refused them) or the environment: no header can carry them, and the
        # redactor cannot register them, so the message must not either (nor the encoder's, which quotes a byte)
        fix = (
            f"set it again from a UTF-8 file: iconv -f SHIFT_JIS -t UTF-8 <file> | edgegw secret set {name} --stdin"
            if kind == "secret"
            else "set the variable to UTF-8 text"
        )
        raise ConfigError([f"{kind}:{name}: not UTF-8 text, got a value that is not shown here; {fix}"]) from None
    redact.register(value)
    return value

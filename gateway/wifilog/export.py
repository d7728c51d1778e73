"""Inquiry exports: CSV for Excel (UTF-8 with BOM, JST times) and a signed manifest that proves the file.

The manifest names the file, its SHA-256 and row count, the query, who exported it, the inquiry's
reference number and when; it is signed with the gateway's Wi-Fi log key (gateway.wifilog.signing).
`verify_export` recomputes the hash and checks the signature against a trusted public key.

Both files hold personal data (MACs, user names, IPs; the manifest the searched terms): they are made 0600
whatever the umask, and never over a file already there (O_EXCL, a symbolic link included: an export run as root
into a shared directory must not write through a link planted there). `create_export_files` makes them empty
first, so that a caller can know the export can be written before it records it (the audit log), and
`write_export` fills them.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import stat
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.wifilog.sessions import Session
from gateway.wifilog.signing import Signer, verify_document
from gateway.wifilog.store import JST, Query, WifiLogError

__all__ = [
    "COLUMNS",
    "MANIFEST_TYPE",
    "ExportFileError",
    "ExportFiles",
    "create_export_files",
    "render_csv",
    "spreadsheet_cell",
    "verify_export",
    "write_export",
]

MANIFEST_TYPE = "edgegw.wifilog.export-manifest"
COLUMNS = (
    "start_jst",
    "stop_jst",
    "last_update_jst",
    "duration_s",
    "client_mac",
    "user_name",
    "framed_ip",
    "ap_mac",
    "ssid",
    "nas",
    "session_id",
    "input_octets",
    "output_octets",
    "terminate_cause",
    "source",
)


def _jst(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")


# What makes a spreadsheet read a cell as a formula (OWASP "CSV injection"): = + - @ first, also after blanks
# it trims, and a leading TAB, CR or LF, which some strip before looking. RADIUS User-Name, Acct-Session-Id and
# NAS-Identifier come from the network as they are.
FORMULA_START = ("=", "+", "-", "@")
CONTROL_START = ("\t", "\r", "\n")


def spreadsheet_cell(value: object) -> str:
    """`value` as a CSV cell no spreadsheet runs: one that could start a formula gets a leading `'`, which makes
    it text (shown without the quote). Every CSV the gateway writes goes through here."""
    text = "" if value is None else str(value)
    if text.startswith(CONTROL_START) or text.lstrip().startswith(FORMULA_START):
        return "'" + text
    return text


def render_csv(sessions: Sequence[Session]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for s in sessions:
        writer.writerow(
            [
                _jst(s.start),
                _jst(s.stop),
                _jst(s.last_update),
                spreadsheet_cell(s.duration_s),
                spreadsheet_cell(s.client_mac),
                spreadsheet_cell(s.user_name),
                spreadsheet_cell(s.framed_ip),
                spreadsheet_cell(s.ap_mac),
                spreadsheet_cell(s.ssid),
                spreadsheet_cell(s.nas),
                spreadsheet_cell(s.session_id),
                spreadsheet_cell(s.input_octets),
                spreadsheet_cell(s.output_octets),
                spreadsheet_cell(s.terminate_cause),
                spreadsheet_cell(s.source),
            ]
        )
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


class ExportFileError(WifiLogError):
    """An export's file cannot be made: one is there already (never replaced), or its directory refuses it."""

    code = "wifilog_export_file"


NOTHING_EXPORTED = "nothing was exported"


class ExportFiles:
    """The CSV and its manifest, made empty and 0600 by this process: `write` fills both, `discard` removes both.

    Both are made and removed by name in their directory as it was opened once (`dir_fd`), never through the path
    again, and removed only while the names still are these very files: under sudo the export runs in a child that
    became the gateway's account (gateway.wifilog.cli), and an --out reaching into a directory that account may
    change (a link in the path swapped meanwhile, a file put under the name) must not have root remove what the
    new path or name leads to.
    """

    def __init__(self, csv_path: Path, dir_fd: int, fds: tuple[int, int]) -> None:
        self.csv_path = csv_path
        self._dir_fd: int | None = dir_fd
        self._names = (csv_path.name, manifest_path(csv_path).name)
        self._fds: list[int] = list(fds)
        self._ids = [_identity(os.fstat(fd)) for fd in fds]
        self._removes = True

    def write(self, csv_data: bytes, manifest_data: bytes) -> None:
        """Fill and close both, synced: the command that says "exported" has them on disk."""
        for fd, data in zip(self._fds, (csv_data, manifest_data), strict=True):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        self._close()
        self.forget()

    def discard(self) -> None:
        """Remove both (a failure after they were made): the names are free again, no half export is left.
        After `leave_removal`, only closes them."""
        self._close()
        dir_fd = self._dir_fd
        if dir_fd is not None and self._removes:
            for name, made in zip(self._names, self._ids, strict=True):
                with contextlib.suppress(OSError):  # gone already, or the directory refuses: nothing else to do
                    if _identity(os.stat(name, dir_fd=dir_fd, follow_symlinks=False)) == made:
                        os.unlink(name, dir_fd=dir_fd)
        self.forget()

    def forget(self) -> None:
        """Done with them (written, or written by a child that succeeded): the directory let go."""
        self._close()
        self._let_go_of_directory()

    def leave_removal(self) -> None:
        """In a child that root forked and that became the gateway's account: the files are in the admin's
        directory, where it may remove nothing. Root, waiting for it, removes them if it fails."""
        self._removes = False
        self._let_go_of_directory()

    def release(self) -> None:
        """Close this process's descriptors of the files, left as they are: a child writes them (see
        leave_removal). The directory's stays, for `discard` or `forget`."""
        self._close()

    def _close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def _let_go_of_directory(self) -> None:
        dir_fd, self._dir_fd = self._dir_fd, None
        if dir_fd is not None:
            os.close(dir_fd)


def create_export_files(csv_path: Path, *, where: str = "") -> ExportFiles:
    """Make `csv_path` and `<csv>.manifest.json`, empty and 0600; ExportFileError, naming `where` (default: the
    path) and leaving nothing made, when either is there already or cannot be made."""
    where = where or str(csv_path)
    try:
        # O_PATH: making a file needs no read permission on its directory (a write-only drop box), and the child
        # that becomes the gateway's account must not be able to list a directory only root may read
        dir_fd = os.open(csv_path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _cannot(csv_path, where, "", exc) from None
    try:
        csv_fd = _create(csv_path, dir_fd, where, "")
        manifest = manifest_path(csv_path)
        try:
            manifest_fd = _create(manifest, dir_fd, where, f"its manifest {manifest} ")
        except BaseException:
            os.close(csv_fd)
            with contextlib.suppress(OSError):
                os.unlink(csv_path.name, dir_fd=dir_fd)
            raise
    except BaseException:
        os.close(dir_fd)
        raise
    return ExportFiles(csv_path, dir_fd, (csv_fd, manifest_fd))


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _cannot(path: Path, where: str, which: str, exc: OSError) -> ExportFileError:
    got = f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    return ExportFileError(
        f"{where}: {which}cannot be made, got {got}; name a file in a directory this user may write; "
        f"{NOTHING_EXPORTED}",
        path=str(path),
    )


def _create(path: Path, dir_fd: int, where: str, which: str) -> int:
    # O_EXCL fails on any name there, a link too (dangling or not), so no file is ever written through one
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path.name, flags, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        raise ExportFileError(
            f"{where}: {which}exists already, got {_found(path)}; an export never replaces a file: name a new one; "
            f"{NOTHING_EXPORTED}",
            path=str(path),
        ) from None
    except OSError as exc:
        raise _cannot(path, where, which, exc) from None


def _found(path: Path) -> str:
    try:
        st = path.lstat()
    except OSError:
        return "a file of the same name"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return f"a file of {st.st_size} bytes" if stat.S_ISREG(st.st_mode) else "a special file"


def write_export(
    sessions: Sequence[Session],
    query: Query,
    *,
    signer: Signer,
    reference: str,
    who: str,
    now: datetime,
    csv_path: Path,
    gateway_id: str,
    files: ExportFiles | None = None,
) -> dict[str, Any]:
    """Write the CSV and `<csv>.manifest.json` (into `files`, made by `create_export_files(csv_path)`, else made
    here); returns the signed manifest. A failure removes both."""
    files = create_export_files(csv_path) if files is None else files
    try:
        data = render_csv(sessions)
        manifest = signer.sign(
            {
                "type": MANIFEST_TYPE,
                "version": 1,
                "gateway_id": gateway_id,
                "file": csv_path.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "rows": len(sessions),
                "query": query.describe(),
                "reference": reference,
                "exported_by": who,
                "exported_at": now.astimezone(JST).isoformat(),
            }
        )
        text = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        files.write(data, text.encode("utf-8"))
    except BaseException:
        files.discard()
        raise
    return manifest


def manifest_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".manifest.json")


def verify_export(csv_path: Path, manifest: dict[str, Any], public_key: Ed25519PublicKey) -> list[str]:
    """Problems with an export (empty when the file is the one signed, unaltered)."""
    problems = verify_document(manifest, public_key)
    if manifest.get("type") != MANIFEST_TYPE:
        problems.append(f"type: not an export manifest, got {manifest.get('type')!r}")
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    if digest != manifest.get("sha256"):
        problems.append(f"{csv_path.name}: SHA-256 differs from the manifest (file altered), got {digest[:16]}…")
    return problems

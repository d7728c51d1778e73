"""`edgegw wifi search | export | verify-export | verify-certificate | certificates`: inquiries from the shell.

Every search and export names the inquiry's reference number and goes into the audit log (actor
`cli:<unix user>`, the reference, which terms were used, a keyed digest of the query, the row count);
the query terms themselves (a MAC, an e-mail address) stay out of the log and live in the signed
export manifest.

The digest (`query_hmac`) lets whoever holds the terms and the box show later which inquiry an entry
records. It is HMAC-SHA-256 under a key derived (HKDF, label `INQUIRY_KEY_INFO`) from the Wi-Fi log
signing key in `<data_dir>`'s secret store, because the terms have little entropy: an unkeyed hash of
an IP, a MAC or an e-mail address is reversed by trying them all, and the audit log is read by admins
who are not wifi-auditors. Entries written before it carry `query_sha256` (unkeyed) and stay as they
are: the log is append-only.

Run by root (sudo), search, export and certificates become the gateway's account before they open the log, the
secret store or the audit log (gateway.privileges); export's files, where the admin chose, are made by root first
(`_export_in_a_child`). The two checks (verify-*) read the admin's files and a public key, and stay who ran them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.cliopts import add_config_option
from gateway.errors import ConfigError, GatewayError
from gateway.secrets import SecretStore
from gateway.wifilog.export import (
    ExportFiles,
    create_export_files,
    manifest_path,
    render_csv,
    verify_export,
    write_export,
)
from gateway.wifilog.signing import SIGNING_SECRET, Signer, load_public_key, verify_document
from gateway.wifilog.store import JST, PUBLIC_KEY_FILE, STORE_DIR, Query, WifiLogMissing, WifiLogStore

__all__ = ["INQUIRY_KEY_INFO", "add_parser", "audit_detail", "inquiry_key", "query_hmac", "run"]

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped
# how deep a document to verify may nest: manifests and certificates hold two levels, this leaves room
MAX_DEPTH = 32
# HKDF's info: the signing key's seed yields this key for this use only (domain separation)
INQUIRY_KEY_INFO = b"edgegw wifilog inquiry digest v1"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("wifi", help="public Wi-Fi session logs: inquiries and proofs")
    sub = p.add_subparsers(dest="wifi_command", required=True)
    for name, text in (
        ("search", "find sessions (needs --reference)"),
        ("export", "signed CSV export (needs --reference)"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--reference", required=True, help="the inquiry's reference number (recorded in the audit log)")
        s.add_argument("--mac", help="client MAC, any spelling")
        s.add_argument("--ip", help="client IP address (with --from/--to: the moment of the inquiry)")
        s.add_argument("--user", help="user name (the registered e-mail address)")
        s.add_argument("--from", dest="time_from", help="ISO time; without a zone it is JST")
        s.add_argument("--to", dest="time_to", help="ISO time; without a zone it is JST")
        if name == "export":
            s.add_argument(
                "--out",
                type=Path,
                required=True,
                help="the CSV file to make, 0600 (manifest beside it); never one already there",
            )
    v = sub.add_parser("verify-export", help="check an export's SHA-256 and signature")
    v.add_argument("csv", type=Path)
    v.add_argument("--manifest", type=Path, default=None, help="default: <csv>.manifest.json")
    c = sub.add_parser("verify-certificate", help="check a data erasure certificate's signature")
    c.add_argument("certificate", type=Path)
    sub.add_parser("certificates", help="the erasure certificates issued, as JSON lines")
    for s in sub.choices.values():
        add_config_option(s)
        s.add_argument("--data-dir", type=Path, default=None, help="instead of [gateway] data_dir")
        s.add_argument("--state-dir", type=Path, default=None, help="the audit log's directory, instead of [web]")
        s.add_argument(
            "--public-key", type=Path, default=None, help=f"default: <data_dir>/{STORE_DIR}/{PUBLIC_KEY_FILE}"
        )
    return p


def _time(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise GatewayError(f"wifi {what}: not an ISO date and time, got {text!r}; e.g. 2026-12-04T21:30") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=JST)


def inquiry_key(secrets: SecretStore) -> bytes:
    """The box's key for `query_hmac`: HKDF-SHA-256 of the Wi-Fi log signing key, made on first use."""
    # derived, not stored: it lives and dies with the signing key that already proves exports, in the
    # secret store that the wifi pages and `edgegw wifi` open and the audit log's readers do not
    if SIGNING_SECRET not in secrets.names():
        Signer(secrets)  # as the gateway's Wi-Fi runner does at start
    seed = base64.b64decode(secrets.get(SIGNING_SECRET))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INQUIRY_KEY_INFO).derive(seed)


def query_hmac(query: Query, key: bytes) -> str:
    """HMAC-SHA-256 (hex) of the query's terms; the same terms under the same key give the same value."""
    terms = query.describe()
    if "user" in terms:
        terms["user"] = terms["user"].strip().casefold()  # the search ignores case, so the digest does too
    body = json.dumps(terms, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def audit_detail(query: Query, reference: str, rows: int, *, key: bytes) -> dict[str, Any]:
    """What the audit log keeps of an inquiry: never the MAC, IP or user name, nor an unkeyed hash of them."""
    return {
        "reference": reference,
        "terms": sorted(query.describe()),
        "query_hmac": query_hmac(query, key),
        "rows": rows,
    }


def _dirs(args: argparse.Namespace) -> tuple[Path, Path, str]:
    """The data directory, the audit log's directory and the gateway's id ("" when the command needs none)."""
    export = args.wifi_command == "export"
    if args.data_dir is not None and not export:
        return args.data_dir, args.state_dir or args.data_dir / "web", ""  # the web UI's default state directory
    from gateway.cliopts import config_path
    from gateway.config import load_config

    try:
        cfg = load_config(config_path(args.config))
    except ConfigError as exc:
        if args.data_dir is None:
            raise
        # --data-dir replaces [gateway] data_dir, not the configuration: the manifest says which box it comes from
        raise GatewayError(f"the manifest names the gateway ([gateway] id), got no configuration: {exc}") from None
    if args.data_dir is not None:
        return args.data_dir, args.state_dir or args.data_dir / "web", cfg.gateway.id
    data_dir = Path(cfg.gateway.data_dir)
    return data_dir, args.state_dir or cfg.web.state_path(data_dir), cfg.gateway.id


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    what = f"wifi {args.wifi_command}"
    return _answer(what, err, lambda: _run(args, what, out, err))


def _answer(what: str, err: TextIO, work: Callable[[], int]) -> int:
    """`work`'s exit code, or its error in one line and the code for it."""
    try:
        return work()
    except WifiLogMissing as exc:
        err.write(f"{what}: {exc}\n")
        return EXIT_FAILURE
    except (GatewayError, ConfigError, OSError, ValueError) as exc:
        err.write(f"{what}: {exc}\n")
        return EXIT_INVALID


def _run(args: argparse.Namespace, what: str, out: TextIO, err: TextIO) -> int:
    from gateway.accounts.cli import cli_actor
    from gateway.privileges import gateway_account

    data_dir, state_dir, gateway_id = _dirs(args)
    key_path = args.public_key or data_dir / STORE_DIR / PUBLIC_KEY_FILE
    # the two checks read the files the admin names (an export in their home, a certificate on a USB stick) and
    # a public key: they make nothing and stay who ran them
    if args.wifi_command == "verify-export":
        manifest = _read_document(args.manifest or manifest_path(args.csv), "an export manifest")
        return _verdict(what, str(args.csv), verify_export(args.csv, manifest, load_public_key(key_path)), out, err)
    if args.wifi_command == "verify-certificate":
        document = _read_document(args.certificate, "an erasure certificate")
        problems = verify_document(document, load_public_key(key_path))
        if document.get("type") != "edgegw.wifilog.erasure-certificate":
            problems.append(f"type: not an erasure certificate, got {document.get('type')!r}")
        return _verdict(what, str(args.certificate), problems, out, err)
    actor = cli_actor()  # before the switch: the audit log names who ran it (cli:root), not the account
    inquiry = _Inquiry(args=args, what=what, data_dir=data_dir, state_dir=state_dir, gateway_id=gateway_id, actor=actor)
    if args.wifi_command == "export" and gateway_account() is not None:
        # --out is the admin's choice (their home, a USB stick), where the gateway's account may not write: root
        # makes the files there, empty and 0600, before it becomes that account
        files = create_export_files(args.out, where=f"--out {args.out}")
        return _export_in_a_child(files, lambda: _answer(what, err, lambda: inquiry.run(out, err, files)))
    return inquiry.run(out, err, None)


@dataclass(frozen=True, kw_only=True)
class _Inquiry:
    """A search, an export or the certificates' list: what it needs, all of it known before root's switch."""

    args: argparse.Namespace
    what: str
    data_dir: Path
    state_dir: Path
    gateway_id: str
    actor: str

    def run(self, out: TextIO, err: TextIO, files: ExportFiles | None) -> int:
        """As the gateway's account (root switches here, gateway.privileges), open the log and answer."""
        from gateway.privileges import become_the_account, ownership_hint

        as_account = become_the_account(self.what)
        try:
            try:
                # a read: a box without a log gets told so, and nothing is made for it
                store = WifiLogStore(self.data_dir, must_exist=True)
                try:
                    if self.args.wifi_command == "certificates":
                        certificates = store.certificates()
                        out.writelines(json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n" for c in certificates)
                        return EXIT_OK
                    return _inquiry(self.args, store, self.state_dir, self.gateway_id, self.actor, files, out)
                finally:
                    store.close()
            finally:
                _hand_over(self.data_dir, self.state_dir)
        except OSError as exc:
            # as the gateway's account: a file left root's, a state directory where it may not write
            hint = ownership_hint(exc, self.data_dir, self.state_dir) if as_account else ""
            if not hint:
                raise
            err.write(f"{self.what}: {exc}{hint}\n")
            return EXIT_FAILURE


def _export_in_a_child(files: ExportFiles, work: Callable[[], int]) -> int:
    """`work` (the export, into `files`) run by a child that becomes the gateway's account; this process stays root
    and waits, and removes both files unless the child succeeded: its exit code.

    Why a child: the files are in the admin's directory, where the account may write nothing, and "no half export
    is left" (ExportFiles.discard) needs someone who may remove them there. Root does nothing but wait meanwhile;
    Ctrl-C reaches the child from the terminal, and SIGTERM or SIGHUP sent to root is passed on to it.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # nothing buffered is written twice, by both
    pid = os.fork()
    if pid == 0:
        code = EXIT_FAILURE
        try:
            files.leave_removal()  # root removes them: here, as the account, it could not
            code = work()
            sys.stdout.flush()
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BaseException:  # the child never returns into root's flow: a traceback, as main() would show
            code = EXIT_FAILURE
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):  # a reader gone: the code says it failed already
                sys.stderr.flush()
            os._exit(code)  # never main()'s exit: that would flush and clean up root's half of the fork again
    files.release()  # the child's to write and close

    def forward(signum: int, _frame: object) -> None:
        os.kill(pid, signum)

    before = {
        signum: signal.signal(signum, handler)
        for signum, handler in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, forward), (signal.SIGHUP, forward))
    }
    try:
        _, status = os.waitpid(pid, 0)  # retried after a signal handled (PEP 475)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    code = os.waitstatus_to_exitcode(status)
    if code != EXIT_OK:
        files.discard()  # failed, or killed: no half export is left
    else:
        files.forget()
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


def _hand_over(data_dir: Path, state_dir: Path) -> None:
    """Run as root (sudo), what this command made or rewrote in the audit log's directory (its database, head
    record, secret store) and in the log's (a -wal, -shm, the public key) goes to the gateway's user, as after
    `edgegw user`: a root inquiry must not leave files the gateway and its web UI can no longer open."""
    from gateway.accounts.cli import hand_over

    hand_over(state_dir)
    hand_over(data_dir / STORE_DIR)


def _read_document(path: Path, kind: str) -> dict[str, Any]:
    """A signed JSON document to verify, or GatewayError naming the file and what it holds instead.

    The file comes from anywhere (a mail, a USB stick): its text, its shape and its depth are checked
    before any field is read.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GatewayError(
            f"{path}: not {kind}, got byte 0x{data[exc.start]:02x} at offset {exc.start}, which is not UTF-8; "
            "give the file as the gateway wrote it",
            path=str(path),
        ) from None
    try:
        document = json.loads(text)
    except RecursionError:  # deeper than Python's stack
        raise GatewayError(_too_deep(path, kind), path=str(path)) from None
    except ValueError as exc:  # JSONDecodeError, or a number of more than 4,300 digits
        raise GatewayError(f"{path}: not {kind}, got text that does not read as JSON ({exc})", path=str(path)) from None
    if not isinstance(document, dict):
        raise GatewayError(f"{path}: not {kind}, got a JSON {_json_kind(document)}, not an object", path=str(path))
    if _deeper_than(document, MAX_DEPTH):  # the signature check encodes the document again, recursively
        raise GatewayError(_too_deep(path, kind), path=str(path))
    return document


def _too_deep(path: Path, kind: str) -> str:
    return f"{path}: not {kind}, got JSON nested more than {MAX_DEPTH} levels deep"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


def _deeper_than(document: dict[str, Any], limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels, found without recursion."""
    todo: list[tuple[object, int]] = [(document, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if level > limit:
            return True
        todo.extend((child, level + 1) for child in children)
    return False


def _verdict(what: str, name: str, problems: list[str], out: TextIO, err: TextIO) -> int:
    if not problems:
        out.write(f"{name}: OK, signature and content verified\n")
        return EXIT_OK
    err.write(f"{what} {name}: FAILED\n")
    err.writelines(f"  {p}\n" for p in problems)
    return EXIT_FAILURE


def _inquiry(
    args: argparse.Namespace,
    store: WifiLogStore,
    state_dir: Path,
    gateway_id: str,
    actor: str,
    files: ExportFiles | None,
    out: TextIO,
) -> int:
    """A search or an export (into `files` when root made them already, else made here), audited as `actor`."""
    from gateway.accounts.cli import clock

    reference = args.reference.strip()
    if not reference:
        raise GatewayError("wifi inquiry --reference: must name the inquiry, got an empty string")
    query = Query(
        mac=args.mac,
        ip=args.ip,
        user=args.user,
        time_from=_time(args.time_from, "--from"),
        time_to=_time(args.time_to, "--to"),
    )
    from gateway.audit.log import AuditLog

    key = inquiry_key(store.secrets)
    sessions = store.search(query)
    now = datetime.fromtimestamp(clock(), JST)
    export = args.wifi_command == "export"
    if export:
        _ = store.signer  # a box that cannot sign fails here, before anything is made or audited
        # made (empty, 0600) before the audit entry, so that an --out that cannot be written is refused unaudited;
        # filled only after it: a crash in between leaves an audited export with empty files, never an export
        # that the audit log does not show
        if files is None:
            files = create_export_files(args.out, where=f"--out {args.out}")
    try:
        # recorded before anything is disclosed: a failing audit log stops the inquiry
        AuditLog(state_dir).append(
            actor=actor,
            action="wifi.export" if export else "wifi.search",
            target=reference,
            detail=audit_detail(query, reference, len(sessions), key=key),
            at=now.timestamp(),
        )
    except BaseException:
        if files is not None:
            files.discard()
        raise
    if files is not None:
        manifest = write_export(
            sessions,
            query,
            signer=store.signer,
            reference=reference,
            who=actor,
            now=now,
            csv_path=args.out,
            gateway_id=gateway_id,
            files=files,
        )
        out.write(
            f"{args.out}: {len(sessions)} sessions, sha256 {manifest['sha256']}; manifest {manifest_path(args.out)}\n"
        )
    else:
        out.write(render_csv(sessions).decode("utf-8-sig"))
    return EXIT_OK

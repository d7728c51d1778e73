"""CLI of the fleet features: `edgegw config keygen|sign` (the platform side) and `edgegw commission` (on site)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from gateway.cliopts import (
    add_config_option,
    bounded_int,
    bounded_seconds,
    config_path,
    os_error_words,
    print_config_error,
)
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.fleet.commission import Check, Result, report_text, run_checks
from gateway.fleet.remote import public_key_b64, sign_bundle

__all__ = ["add_parsers", "run_commission", "run_config", "status_lines"]

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
# A box takes any serial above the last it accepted, starting from 0: serial 0 or -5 is refused by every box,
# and a slip like 10^23 would leave every later bundle needing a larger one. 2^53 - 1 is the largest integer
# the platform's JSON tools (JavaScript numbers) keep exact.
MAX_SERIAL = 2**53 - 1
SERIAL = bounded_int(1, MAX_SERIAL, why=" (a box accepts only serials above the last, from 1)")
MAX_COMMISSION_TIMEOUT_S = 600  # the probe's seconds go to the gateway as an integer; inf overflowed


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("config", help="signed remote configuration: make the platform's key, sign a bundle")
    csub = p.add_subparsers(dest="config_command", required=True)
    k = csub.add_parser("keygen", help="make an Ed25519 signing key (PEM, 0600); prints the public key to pin")
    k.add_argument("key", type=Path, help="where to write the private key")
    s = csub.add_parser("sign", help="sign a gateway configuration as a bundle for one box")
    s.add_argument("file", type=Path, help="the gateway.toml to send")
    s.add_argument("--key", type=Path, required=True, help="the PEM private key from `edgegw config keygen`")
    s.add_argument(
        "--serial",
        type=SERIAL,
        required=True,
        help=f"above every serial this box accepted before (1..{MAX_SERIAL})",
    )
    s.add_argument("--gateway", help="the box's gateway id (default: [gateway].id of the file)")
    s.add_argument("-o", "--output", type=Path, help="default: standard output")
    pk = csub.add_parser("public-key", help="print the public key (base64) of a private key, for [fleet.remote_config]")
    pk.add_argument("key", type=Path)
    p.set_defaults(func=run_config)

    p = sub.add_parser("commission", help="on-site check of this box: a pass/fail report (--json for the records)")
    add_config_option(p)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--timeout",
        type=bounded_seconds(1, MAX_COMMISSION_TIMEOUT_S),
        default=30.0,
        help=f"seconds to wait for the test reading, up to {MAX_COMMISSION_TIMEOUT_S} (default 30)",
    )
    p.add_argument("--test-mail-to", metavar="ADDRESS", help="also send a test e-mail through the [mail] server")
    p.set_defaults(func=run_commission)


def _load_key(path: Path) -> Ed25519PrivateKey:
    """The platform's signing key; ValueError naming the file when it is not an unencrypted Ed25519 PEM key."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise ValueError(
            f"{path}: passphrase-protected, got an encrypted private key; decrypt it into a file of its own "
            f"(openssl pkey -in {path} -out <new key file>, chmod 600 it) and give that file"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path}: not a PEM private key ({exc}); give the key `edgegw config keygen` wrote") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key, got {type(key).__name__}")
    return key


def run_config(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if args.config_command == "keygen":
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            fd = os.open(args.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            print(public_key_b64(key), file=out)
            return EXIT_OK
        key = _load_key(args.key)
        if args.config_command == "public-key":
            print(public_key_b64(key), file=out)
            return EXIT_OK
        text = args.file.read_text(encoding="utf-8")
        try:
            config = load_config(args.file)  # never sign what the box would refuse
        except ConfigError as exc:
            print_config_error(exc, err, what="config sign: nothing signed", source=str(args.file))
            return EXIT_CONFIG
        gateway = args.gateway or config.gateway.id
        bundle = sign_bundle(key, gateway=gateway, serial=args.serial, config=text, issued_at=datetime.now(UTC))
        if args.output is None:
            out.write(bundle.decode() + "\n")
        else:
            args.output.write_bytes(bundle)
        return EXIT_OK
    except FileExistsError as exc:
        print(
            f"config {args.config_command}: {exc.filename} exists, got an existing file; choose another path", file=err
        )
    except BrokenPipeError:
        raise  # the reader of the bundle went away: not a key or file problem (gateway.cli.main)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else ""
        print(
            f"config {args.config_command}: {where}: {os_error_words(exc)}"
            if where
            else f"config {args.config_command}: {os_error_words(exc)}",
            file=err,
        )
    except ValueError as exc:
        print(f"config {args.config_command}: {exc}", file=err)
    return EXIT_FAILURE


async def _ask(config: GatewayConfig, timeout_s: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    from gateway.control.client import ControlClient
    from gateway.control.protocol import ControlError

    try:
        async with ControlClient(config.gateway.control_path(), timeout_s=timeout_s + 5) as client:
            status = await client.call("status")
            try:
                probe = await client.call("fleet.probe", timeout_s=int(timeout_s))
            except ControlError:
                probe = None
            return status, probe
    except (ControlError, OSError):
        return None, None


async def _commission(args: argparse.Namespace, config: GatewayConfig) -> list[Check]:
    status, probe = await _ask(config, args.timeout)
    checks = await run_checks(config, status=status, probe=probe)
    if args.test_mail_to:
        checks.append(await _test_mail(config, args.test_mail_to))
    return checks


async def _test_mail(config: GatewayConfig, to: str) -> Check:
    from gateway.mail import Mail
    from gateway.mail.sender import send_now

    if config.mail is None:
        return Check(name="test e-mail", result=Result.FAIL, detail="test e-mail: no [mail] section")
    mail = Mail(
        to=(to,),
        subject=f"edgegw {config.gateway.id}: commissioning test / 設置試験",
        text="This is a test from the gateway's commissioning check.\nゲートウェイ設置試験のテストメールです。\n",
        purpose="commission",
    )
    try:
        await send_now(config.mail, config.gateway.data_dir, mail)
    except Exception as exc:  # SessionError, DeliveryError: what the technician must see
        return Check(name="test e-mail", result=Result.FAIL, detail=f"test e-mail: not sent, got {exc}")
    return Check(name="test e-mail", result=Result.PASS, detail="test e-mail: accepted by the mail server")


def run_commission(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        # on stderr, one line per problem: the standard output is the report (a JSON document with --json)
        print_config_error(exc, what="commission: the configuration is not valid")
        return EXIT_CONFIG
    checks = asyncio.run(_commission(args, config))
    failed = any(c.result is Result.FAIL for c in checks)
    if args.json:
        doc = {"gateway": config.gateway.id, "passed": not failed, "checks": [c.to_dict() for c in checks]}
        print(json.dumps(doc, ensure_ascii=False, indent=2), file=out)
    else:
        print(report_text(config, checks), file=out)
    return EXIT_FAILURE if failed else EXIT_OK


def status_lines(fleet: dict[str, Any]) -> list[str]:
    """What `edgegw status` adds for the fleet features."""
    lines = []
    safe = fleet.get("safe_mode") or {}
    if safe.get("active"):
        lines.append(f"SAFE MODE: {safe.get('reason', '')}")
    alarms = fleet.get("alarms") or []
    lines.append(f"alarms: {len(alarms)} active" if alarms else "alarms: none")
    lines.extend(f"  {a['severity']:<8} {a['kind']:<22} {a['detail']}" for a in alarms)
    availability = fleet.get("availability") or {}
    if availability:
        lines.append(
            f"availability {availability.get('day')}: up {availability.get('uptimePercent')} %, "
            f"delivering {availability.get('deliveringPercent')} %"
        )
    return lines

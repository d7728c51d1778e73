"""The UI's TLS material: the admin's certificate (`[web] tls_cert`/`tls_key`), else a self-signed one made once.

The self-signed certificate is ECDSA P-256, valid ten years, for the box's host name, `localhost` and its
addresses (the `listen` addresses, or the interfaces' when it listens on all), kept in the state directory
(key mode 0600). Browsers warn about it; the admin checks its SHA-256 fingerprint, logged at every start and
shown by `edgegw web fingerprint`, against the one the browser shows, once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import ConfigError
from gateway.storage.files import write_atomic
from gateway.web.config import WebConfig

log = logging.getLogger(__name__)

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
VALID_DAYS = 3650
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, kw_only=True)
class TlsMaterial:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, "AB:CD:…"
    self_signed: bool


def fingerprint(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _probe_address(family: socket.AddressFamily, target: str) -> str | None:
    """The source address the kernel picks toward `target` (a UDP connect sends nothing)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def local_addresses() -> list[str]:
    """The box's own addresses, best effort and without extra packages: its name's, and the routed ones."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        found.extend(str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None))
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        address = _probe_address(family, target)
        if address:
            found.append(address)
    return found


def subject_names(
    config: WebConfig, *, hostname: str | None = None, addresses: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) for the certificate: host name, localhost, loopback and the box's addresses."""
    host = hostname if hostname is not None else socket.gethostname()
    names = [n for n in dict.fromkeys([host, f"{host}.local" if host and "." not in host else "", "localhost"]) if n]
    listen = [a for a in config.listen if a not in WILDCARDS]
    candidates = list(listen) if listen else list(addresses if addresses is not None else local_addresses())
    ips: dict[str, None] = {"127.0.0.1": None, "::1": None}
    for candidate in candidates:
        try:
            ip = ipaddress.ip_address(candidate.split("%")[0])
        except ValueError:
            names.append(candidate)  # a listen entry given as a name
            continue
        if not ip.is_link_local:
            ips[str(ip)] = None
    return list(dict.fromkeys(names)), list(ips)


def make_self_signed(
    state_dir: Path,
    config: WebConfig,
    *,
    now: dt.datetime | None = None,
    hostname: str | None = None,
    addresses: Iterable[str] | None = None,
) -> TlsMaterial:
    """Writes a new key (0600) and certificate into `state_dir`, replacing none: call only when absent."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = subject_names(config, hostname=hostname, addresses=addresses)
    common = dns[0] if dns else "edgegw"
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common[:64]), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgegw")]
    )
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # a box whose clock is a little behind still accepts it
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    # Each file whole or not at all, the certificate last: a crash leaves no pair, and the next start
    # makes one (an empty pair from a crash was taken as present, and TLS failed at every start).
    write_atomic(key_path, key_pem, 0o600, durable=True)  # 0600 from its first byte
    write_atomic(cert_path, cert_pem, 0o600, durable=True)
    log.info("web: made a self-signed certificate for %s", ", ".join(dns + ips))
    return TlsMaterial(cert=cert_path, key=key_path, fingerprint=fingerprint(cert_pem), self_signed=True)


def _no_passphrase(key_path: Path) -> Callable[[], bytes]:
    """ssl's password callback: without one OpenSSL asks for the passphrase on the terminal (a start by hand
    waits there for good) or fails with "[Errno 22] Invalid argument" (under systemd)."""

    def refuse() -> bytes:
        raise ConfigError([_passphrase_protected(key_path)])

    return refuse


def _passphrase_protected(key_path: Path) -> str:
    return (
        f"web.tls_key: '{key_path}' is passphrase-protected, got an encrypted private key; give an unencrypted key: "
        f"openssl pkey -in {key_path} -out <new key file>, chmod 600 it and set tls_key to it"
    )


def _pem_labels(data: bytes) -> str:
    """What a file that is no PEM private key holds, for the message: its PEM blocks' labels, or none."""
    labels = list(dict.fromkeys(m.decode("ascii") for m in re.findall(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----", data)))
    if labels:
        return "PEM blocks " + ", ".join(labels)
    return f"{len(data)} bytes without a PEM block (a DER key converts with openssl pkey -inform DER)"


def _not_readable(field: str, path: Path) -> str:
    """The UI reads its certificate and key as the gateway's account, as its unit runs (`sudo edgegw web` too)."""
    from gateway.privileges import account_name

    who = account_name()
    return (
        f"web.{field}: '{path}' is not readable by the gateway's account ({who}), which the UI reads it as; "
        f"sudo chgrp {who} '{path}' && sudo chmod 0640 '{path}' (and its directories searchable by {who})"
    )


def _check_private_key(key_path: Path) -> None:
    """ConfigError unless `key_path` holds an unencrypted PEM private key, said before OpenSSL reads it."""
    try:
        data = key_path.read_bytes()
    except PermissionError:
        raise ConfigError([_not_readable("tls_key", key_path)]) from None
    except OSError as exc:
        raise ConfigError([f"web.tls_key: cannot read the private key, got '{key_path}' ({exc.strerror})"]) from None
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise ConfigError([_passphrase_protected(key_path)]) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            [
                f"web.tls_key: '{key_path}' is not a PEM private key, got {_pem_labels(data)}; give the "
                "certificate's private key in PEM (-----BEGIN PRIVATE KEY-----)"
            ]
        ) from None


def _pair_loads(cert_path: Path, key_path: Path) -> bool:
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert_path, key_path, password=_no_passphrase(key_path)
        )
    except (OSError, ssl.SSLError, ConfigError):
        return False
    return True


def material(config: WebConfig, state_dir: Path, *, create: bool = True) -> TlsMaterial:
    """The admin's certificate if configured, else the self-signed one (made now when `create` and absent)."""
    if config.tls_cert is not None or config.tls_key is not None:
        if config.tls_cert is None or config.tls_key is None:
            raise ConfigError(["web.tls_cert: tls_cert and tls_key go together, got only one of them"])
        try:
            pem = config.tls_cert.read_bytes()
            return TlsMaterial(
                cert=config.tls_cert, key=config.tls_key, fingerprint=fingerprint(pem), self_signed=False
            )
        except PermissionError:
            raise ConfigError([_not_readable("tls_cert", config.tls_cert)]) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                [f"web.tls_cert: cannot read a PEM certificate, got '{config.tls_cert}' ({exc})"]
            ) from None
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        if create and not _pair_loads(cert_path, key_path):
            # ours, self-signed, and broken (left empty by a crash of an older release): made again
            log.warning("web: the self-signed certificate in %s does not load; making a new one", state_dir)
            return make_self_signed(state_dir, config)
        return TlsMaterial(
            cert=cert_path, key=key_path, fingerprint=fingerprint(cert_path.read_bytes()), self_signed=True
        )
    if not create:
        raise FileNotFoundError(f"{cert_path}: no certificate yet, got none; `edgegw web` makes it at first start")
    return make_self_signed(state_dir, config)


def server_context(tls: TlsMaterial) -> ssl.SSLContext:
    """The UI's TLS context; ConfigError naming the file when the key or the certificate does not load."""
    _check_private_key(tls.key)  # OpenSSL's own words for these are "PEM lib" or a passphrase prompt
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert, tls.key, password=_no_passphrase(tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"web.tls_cert: cannot load the certificate and key, got '{tls.cert}' / '{tls.key}' ({exc})"]
        ) from None
    return context

"""`edgegw wifi verify-export | verify-certificate` on documents from elsewhere: one line naming the file, exit 2.

A JSON array or string ended in AttributeError, a deeply nested one in RecursionError, a file that is not
UTF-8 in a codec message without the file's name (review F9). Cases are data: name -> (bytes, what is said).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CASES: dict[str, tuple[bytes, str]] = {
    "array": (b"[1, 2]", "got a JSON array, not an object"),
    "string": (b'"just a string"', "got a JSON string, not an object"),
    "null": (b"null", "got a JSON null, not an object"),
    "deeper than python's stack": (
        b'{"signature": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "got JSON nested more than 32 levels deep",
    ),
    "deep enough to parse": (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "got JSON nested more than 32 levels deep"),
    "not utf-8": (
        b'\xff{"type": 1}',
        "got byte 0xff at offset 0, which is not UTF-8; give the file as the gateway wrote it",
    ),
    "not json": (
        b"type,records\n",
        "got text that does not read as JSON (Expecting value: line 1 column 1 (char 0))",
    ),
}


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "wifi", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    """A verifier's public key, present: the document is what is wrong."""
    path = tmp_path / "signing-public.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_certificate_names_the_file_and_what_it_holds(tmp_path: Path, public_key: Path, case: str) -> None:
    data, said = CASES[case]
    document = tmp_path / "certificate.json"
    document.write_bytes(data)
    run = edgegw("verify-certificate", "--data-dir", str(tmp_path), "--public-key", str(public_key), str(document))
    assert (run.returncode, run.stdout, run.stderr) == (
        2,
        "",
        f"wifi verify-certificate: {document}: not an erasure certificate, {said}\n",
    )


@pytest.mark.parametrize("case", ["array", "deeper than python's stack", "not utf-8"])
def test_verify_export_names_the_manifest_and_what_it_holds(tmp_path: Path, public_key: Path, case: str) -> None:
    data, said = CASES[case]
    csv = tmp_path / "inquiry.csv"
    csv.write_bytes(b"\xef\xbb\xbfstart,stop\n")
    manifest = tmp_path / "inquiry.csv.manifest.json"
    manifest.write_bytes(data)
    run = edgegw("verify-export", "--data-dir", str(tmp_path), "--public-key", str(public_key), str(csv))
    assert (run.returncode, run.stderr) == (
        2,
        f"wifi verify-export: {manifest}: not an export manifest, {said}\n",
    )

"""`edgegw check-config` opens the files every `tls` table names, as the gateway does at start, and warns.

It used to check only the tables' shape: a CA file that was never copied, a client key that does not
match its certificate or one still protected by a passphrase passed unsaid, and the technician learned
of it from an uplink or adapter that never came up. Warnings, not errors: the gateway starts with them
and only the adapter or uplink concerned stays down, retrying, while the rest keeps reading.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import parse_config
from gateway.tls import tls_tables
from tests.uplinks.test_tls_passphrase import encrypted
from tests.uplinks_mqtt.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTION = {
    "topic": "t/+",
    "entity_type": "Device",
    "entity_id": "{topic[1]}",
    "attributes": [{"path": "v", "name": "v"}],
}
PLATFORM_KEY = base64.b64encode(
    Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def doc(data_dir: Path, adapter_tls: dict[str, Any], uplink_tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw1", "data_dir": str(data_dir)},
        "adapters": [
            {"name": "river", "type": "mqtt", "host": "broker", "subscriptions": [SUBSCRIPTION], "tls": adapter_tls}
        ],
        "uplinks": [{"name": "pref", "type": "mqtt", "host": "broker", "apikey": "K", "tls": uplink_tls}],
        "mail": {"host": "smtp.example", "from_address": "gw@example.jp", "tls": {}},
        "fleet": {"remote_config": {"public_key": PLATFORM_KEY, "url": "https://p.example/b", "tls": {}}},
    }


def toml(value: Any) -> str:
    """Just enough TOML for these documents: inline tables and arrays."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(path: Path, document: dict[str, Any]) -> Path:
    lines = []
    for key, value in document.items():
        if isinstance(value, list):
            for item in value:
                lines += [f"[[{key}]]", *(f"{k} = {toml(v)}" for k, v in item.items())]
        else:
            lines += [f"[{key}]", *(f"{k} = {toml(v)}" for k, v in value.items())]
    path.write_text("\n".join(lines) + "\n")
    assert tomllib.loads(path.read_text()) == document  # the helper wrote what the test means
    return path


def check_config(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path), *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_every_tls_table_is_named_as_its_runtime_names_it(tmp_path: Path) -> None:
    config = parse_config(doc(tmp_path, {}, {}))
    # the `where` each family passes to client_context (adapters/mqtt, uplinks/mqtt, mail/sender, fleet/service)
    assert [where for where, _ in tls_tables(config)] == [
        "adapters.river",
        "uplinks.pref",
        "mail",
        "fleet.remote_config",
    ]


def test_missing_mismatched_and_passphrase_protected_files_are_each_named(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "never-copied-ca.pem"
    locked = encrypted(pki, tmp_path / "locked.key")
    document = doc(
        tmp_path / "data",
        {"ca_file": str(missing)},
        {"cert_file": str(pki.client_cert), "key_file": str(locked)},
    )
    document["mail"]["tls"] = {"cert_file": str(pki.client_cert), "key_file": str(pki.server_key)}
    path = write(tmp_path / "gateway.toml", document)
    run = check_config(path)
    # warnings: the gateway starts with them (check-config is the unit's ExecStartPre) and only these retry
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.endswith("OK — gateway gw1, 1 adapter(s), 1 uplink(s)\n")
    lines = run.stderr.splitlines()
    assert lines[0] == f"{path}: 3 warning(s): each of these stays down, retrying, until its file is fixed"
    assert lines[1] == (
        f"  adapters.river.tls.ca_file: cannot load a CA certificate, got '{missing}' "
        "([Errno 2] No such file or directory)"
    )
    assert lines[2].startswith(
        f"  uplinks.pref.tls.key_file: the private key is passphrase-protected, got an encrypted key in '{locked}'"
    )
    assert lines[3].startswith(
        f"  mail.tls.cert_file: cannot load the client certificate and key, got '{pki.client_cert}'"
    )
    assert len(lines) == 4


def test_readable_matching_files_pass_without_a_warning(pki: Pki, tmp_path: Path) -> None:
    document = doc(
        tmp_path / "data",
        {"ca_file": str(pki.ca_file)},
        {"ca_file": str(pki.ca_file), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)},
    )
    run = check_config(write(tmp_path / "gateway.toml", document))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.endswith("OK — gateway gw1, 1 adapter(s), 1 uplink(s)\n")


def test_offline_checks_the_file_alone(tmp_path: Path) -> None:
    """On a laptop the box's TLS files and data directory are not there: --offline checks the file only."""
    document = doc(Path("/proc/edgegw-cannot-be-made"), {"ca_file": "/etc/edgegw/tls/broker-ca.pem"}, {})
    path = write(tmp_path / "gateway.toml", document)
    on_the_box = check_config(path)
    assert on_the_box.returncode == 2
    assert "gateway.data_dir" in on_the_box.stderr
    run = check_config(path, "--offline")
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.endswith("OK — gateway gw1, 1 adapter(s), 1 uplink(s)\n")

"""The [mail] section's validation, the example config, and `edgegw mail test` against a loopback server."""

from __future__ import annotations

import asyncio
import sys
import tomllib
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config import parse_config
from gateway.configbase import format_validation_error
from gateway.errors import ConfigError
from gateway.mail import MailConfig, MailSecurity
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial

ROOT = Path(__file__).resolve().parents[2]


def doc(**mail: Any) -> dict[str, Any]:
    return {
        "gateway": {"id": "lib-001"},
        "adapters": [{"name": "s", "type": "simulated", "entity_type": "Locker"}],
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1026"}],
        **({"mail": mail} if mail else {}),
    }


def errors(**mail: Any) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc(**mail))
    return exc.value.errors


def test_no_mail_section_means_none() -> None:
    assert parse_config(doc()).mail is None


def test_a_mail_section_with_defaults() -> None:
    cfg = parse_config(doc(host="smtp.example.jp", from_address="gw@example.jp")).mail
    assert cfg is not None and cfg.security is MailSecurity.STARTTLS and cfg.effective_port == 587
    smtps = MailConfig(host="smtp.example.jp", from_address="gw@example.jp", security=MailSecurity.SMTPS)
    assert smtps.effective_port == 465


def test_a_password_in_clear_is_refused_without_echoing_it() -> None:
    found = errors(host="smtp.example.jp", from_address="gw@example.jp", username="u", password="hunter2-clear")
    assert len(found) == 1 and found[0].startswith("mail.password: must reference a secret")
    assert "hunter2-clear" not in found[0]


def test_plain_only_to_loopback() -> None:
    found = errors(host="smtp.example.jp", from_address="gw@example.jp", security="plain-loopback")
    assert found == [
        "mail: security \"plain-loopback\" is only for a relay on this box, got host 'smtp.example.jp'; "
        'use "starttls" or "smtps", or host = "127.0.0.1"'
    ]
    for host in ("127.0.0.1", "::1", "localhost"):
        MailConfig(host=host, from_address="gw@example.jp", security=MailSecurity.PLAIN_LOOPBACK)


def test_username_needs_password_and_unknown_keys_are_refused() -> None:
    found = errors(host="h", from_address="gw@example.jp", username="u", sender="x")
    assert any(line.startswith("mail.sender:") for line in found)
    with pytest.raises(ValidationError) as exc:
        MailConfig(host="h", from_address="gw@example.jp", username="u")
    [line] = format_validation_error(exc.value, MailConfig, "mail")
    assert line.startswith("mail: username and password go together")


@pytest.mark.parametrize(
    ("key", "value", "char"),
    [
        ("from_name", "町立図書館\u2028本館", "U+2028 at character 6"),
        ("from_name", "Library\r\nBcc: x@example.jp", "U+000D at character 8"),
        ("from_name", "tab\there", "U+0009 at character 4"),
        ("from_address", "gw@example.jp\x9f", "U+009F at character 14"),
        ("from_address", "g\x01w@example.jp", "U+0001 at character 2"),
    ],
)
def test_a_from_name_or_address_not_one_line_is_refused_by_the_config(key: str, value: str, char: str) -> None:
    # they go in the From header of every mail: the sender would otherwise keep every mail waiting
    fields = {"host": "h", "from_address": "gw@example.jp", key: value}
    assert any(f"{key} must be one line without control characters, got {char}" in line for line in errors(**fields))


def test_the_example_config_carries_the_sample_and_it_validates_uncommented() -> None:
    sample = (ROOT / "gateway/mail/sample.toml").read_text(encoding="utf-8")
    assert sample.strip("\n") in (ROOT / "config/gateway.example.toml").read_text(encoding="utf-8")
    uncommented = "\n".join(
        line[2:] for line in sample.splitlines() if line.startswith("# ") and ("=" in line or line.startswith("# ["))
    )
    parsed = tomllib.loads(uncommented)
    parsed["mail"]["tls"] = {}  # the sample's CA file does not exist here
    cfg = MailConfig.model_validate(parsed["mail"])
    assert cfg.from_name == "〇〇町立図書館"


async def run_cli(*args: str, config: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "mail",
        "test",
        *args,
        "--config",
        str(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, data_dir: Path, port: int, material: TlsMaterial) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""[gateway]
id = "lib-001"
data_dir = "{data_dir}"

[mail]
host = "127.0.0.1"
port = {port}
username = "gateway"
password = "secret:smtp_password"
from_address = "gateway@library.example.jp"
timeout_s = 5

[mail.tls]
ca_file = "{material.ca_file}"

[[adapters]]
name = "s"
type = "simulated"
entity_type = "Locker"

[[uplinks]]
name = "o"
type = "orion"
url = "http://127.0.0.1:1026"
""",
        encoding="utf-8",
    )
    return path


async def test_mail_test_sends_one_and_masks_the_address(
    smtp: SmtpServer, data_dir: Path, tmp_path: Path, tls_material: TlsMaterial
) -> None:
    config = write_config(tmp_path, data_dir, smtp.port, tls_material)
    code, out, err = await run_cli("--to", "tech@city.example.jp", config=config)
    assert (code, err) == (0, "")
    assert out == f"test mail to ***@city.example.jp accepted by 127.0.0.1:{smtp.port} (starttls)\n"
    [got] = smtp.received
    assert got.rcpt_to == ["tech@city.example.jp"] and got.tls
    msg = message_from_bytes(got.data, policy=default)
    assert msg["Subject"] == "edgegw テストメール / test mail (lib-001)"
    assert b"=?utf-8?b?" in got.data  # RFC 2047


async def test_mail_test_says_why_not(
    smtp: SmtpServer, data_dir: Path, tmp_path: Path, tls_material: TlsMaterial
) -> None:
    config = write_config(tmp_path, data_dir, smtp.port, tls_material)
    smtp.replies["RCPT"].append("550 5.1.1 <tech@city.example.jp>: User unknown")
    code, out, err = await run_cli("--to", "tech@city.example.jp", config=config)
    assert (code, out) == (1, "")
    assert err == (
        "mail test: the server refused permanently the mail to ***@city.example.jp, "
        "got 550 5.1.1 <***@city.example.jp>: User unknown\n"
    )
    code, _, err = await run_cli("--to", "not an address", config=config)
    assert (
        code == 2
        and err == "mail test: --to mail.to: not an e-mail address (local@domain), got a value not shown here\n"
    )


def test_the_status_line() -> None:
    from gateway.mail.cli import status_line

    d = {
        "server": "smtp.example.jp:587",
        "connected": False,
        "sent": 4,
        "deferred": 1,
        "last_error": "cannot connect to smtp.example.jp:587, got timed out",
        "queue": {"pending": 2, "failed": 1, "oldest_pending_at": None},
    }
    assert status_line(d) == (
        "mail: smtp.example.jp:587 unreachable pending 2  sent 4  deferred 1  failed 1\n"
        "  last error: cannot connect to smtp.example.jp:587, got timed out"
    )

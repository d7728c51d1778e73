"""Credentials over plain http to another host are warned of, not refused: `allow_insecure_http = true` silences it.

Review cfgfix, fault 2: an `http://` `oauth2.token_url` received `Authorization: Basic <client:secret>` and an
`http://` `url` the tokens, without a word. RFC 6749 §3.2 requires TLS at the token endpoint. Commit da21757 made
such configs errors, and a box upgraded with one (a closed-network Orion at http://orion.lan:1026 with
x_auth_token) stopped: the package starts the units only when check-config passes. Review cfgwarn: they load,
`edgegw check-config` warns (exit 0), and the uplink says it once at its start. A loopback host is not warned of
(the credential never leaves the box: a local IoT Agent, the tests' doubles).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.config import config_warnings, parse_config
from gateway.secrets import SecretStore
from gateway.uplinks.ngsi_ld import NgsiLdUplink
from gateway.uplinks.orion import OrionUplink

ROOT = Path(__file__).resolve().parents[2]
OAUTH2 = {"token_url": "https://idm.example.jp/oauth2/token", "client_id": "gw-001", "client_secret": "secret:idm"}
ADVICE = (
    "anyone on the network between can read and reuse them; use https://, or set allow_insecure_http = true if this "
    "network is closed"
)


def orion(**keys: Any) -> dict[str, Any]:
    return {"name": "orion", "type": "orion", "url": "https://orion.example.jp", **keys}


def warnings_of(*uplinks: dict[str, Any]) -> list[str]:
    return config_warnings(parse_config({"gateway": {"id": "gw-001"}, "uplinks": list(uplinks)}))


def url_warning(i: int, sent: str, host: str) -> str:
    return f'uplinks[{i}].url: credentials ({sent}) go over plain http to host "{host}": {ADVICE}'


def token_url_warning(i: int, host: str) -> str:
    return (
        f'uplinks[{i}].oauth2.token_url: the client secret and the access tokens go over plain http to host "{host}" '
        f"(RFC 6749 §3.2 requires TLS): {ADVICE}"
    )


def test_an_http_token_url_off_the_box_is_warned_of_naming_its_host() -> None:
    assert warnings_of(orion(oauth2={**OAUTH2, "token_url": "http://idm.example.jp:8080/oauth2/token"})) == [
        token_url_warning(0, "idm.example.jp")
    ]


def test_an_http_url_off_the_box_is_warned_of_when_credentials_go_with_it() -> None:
    assert warnings_of(
        orion(url="http://orion.example.jp:1026", x_auth_token="secret:orion_token"),
        {
            "name": "ld",
            "type": "ngsi-ld",
            "url": "http://192.0.2.10:1026",
            "headers": {"apikey": "secret:ld_key", "X-Gateway": "gw-001", "X-Tenant-Ref": "env:TENANT"},
        },
        orion(
            name="both",
            url="http://ORION.example.jp",
            oauth2={**OAUTH2, "token_url": "http://[2001:db8::5]/token"},
        ),
    ) == [
        url_warning(0, "x_auth_token", "orion.example.jp"),
        # a header from the secret store is a credential whatever its name; a header in clear is not
        url_warning(1, "header 'apikey', header 'X-Tenant-Ref'", "192.0.2.10"),
        url_warning(2, "the oauth2 access token", "orion.example.jp"),
        token_url_warning(2, "2001:db8::5"),
    ]


def test_an_http_url_without_credentials_is_not_warned_of() -> None:
    assert warnings_of(orion(url="http://orion.example.jp:1026", headers={"X-Gateway": "gw-001"})) == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LocalHost"],
)
def test_a_loopback_host_keeps_credentials_on_the_box_and_is_not_warned_of(host: str) -> None:
    assert (
        warnings_of(
            orion(
                url=f"http://{host}:1026",
                headers={"apikey": "secret:k"},
                oauth2={**OAUTH2, "token_url": f"http://{host}:3005/oauth2/token"},
            )
        )
        == []
    )


@pytest.mark.parametrize(
    "host",
    [
        "localhost.",  # glibc asks the site's DNS for the fully qualified name: any host may answer it
        "LOCALHOST.",
        "localhost.example.jp",
        "127.0.0.1.nip.io",
        "0.0.0.0",
        "10.0.0.1",
        "[::ffff:192.0.2.1]",
        "[fe80::1]",
    ],
)
def test_hosts_that_only_look_local_are_off_the_box(host: str) -> None:
    shown = host.strip("[]").lower()
    assert warnings_of(orion(url=f"http://{host}:1026", x_auth_token="secret:t")) == [
        url_warning(0, "x_auth_token", shown)
    ]


def test_the_opt_in_silences_the_warning_and_https_needs_none() -> None:
    assert (
        warnings_of(
            orion(
                url="http://orion.lab:1026",
                x_auth_token="secret:t",
                oauth2={**OAUTH2, "token_url": "http://idm.lab/token", "header": "authorization"},
                allow_insecure_http=True,
            ),
            orion(name="secure", x_auth_token="secret:t", oauth2=OAUTH2),
        )
        == []
    )


CLOSED_NETWORK = """\
[gateway]
id = "gw-001"
data_dir = "{data_dir}"

[[uplinks]]
name = "orion"
type = "orion"
url = "http://orion.lan:1026"
x_auth_token = "secret:orion_token"

[uplinks.oauth2]
token_url = "http://idm.lan:3005/oauth2/token"
client_id = "gw-001"
client_secret = "secret:idm"
header = "authorization"
"""


@pytest.mark.parametrize("options", [[], ["--offline"]], ids=["on-the-box", "offline"])
def test_check_config_passes_a_closed_network_orion_printing_the_warnings(tmp_path: Path, options: list[str]) -> None:
    # the package's postinst starts the units only when `edgegw check-config <file>` exits 0
    path = tmp_path / "gateway.toml"
    path.write_text(CLOSED_NETWORK.format(data_dir=tmp_path / "data"))
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path), *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{path}: OK — gateway gw-001, 0 adapter(s), 1 uplink(s)\n"
    assert run.stderr.splitlines() == [
        f"{path}: 2 warning(s): the gateway starts with them",
        f"  {url_warning(0, 'the oauth2 access token, x_auth_token', 'orion.lan')}",
        f"  {token_url_warning(0, 'idm.lan')}",
    ]


def test_check_config_says_nothing_more_with_the_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        CLOSED_NETWORK.format(data_dir=tmp_path / "data").replace(
            'x_auth_token = "secret:orion_token"\n', 'x_auth_token = "secret:orion_token"\nallow_insecure_http = true\n'
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path), "--offline"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (run.returncode, run.stderr) == (0, "")


def two_uplinks(allow: bool) -> list[dict[str, Any]]:
    return [
        orion(
            url="http://orion.lab:1026",
            headers={"X-Api-Key": "secret:orion_token"},
            oauth2={**OAUTH2, "token_url": "http://idm.lab:8080/token"},
            allow_insecure_http=allow,
        ),
        {
            "name": "ld",
            "type": "ngsi-ld",
            "url": "http://ld.lab:1026",
            "x_auth_token": "secret:orion_token",
            "allow_insecure_http": allow,
        },
    ]


async def started(tmp_path: Path, caplog: pytest.LogCaptureFixture, uplinks: list[dict[str, Any]]) -> None:
    store = SecretStore(tmp_path)
    store.set("orion_token", "tok-s3cr3t-orion")
    store.set("idm", "client-s3cr3t-idm")
    config = parse_config({"gateway": {"id": "gw-001"}, "uplinks": uplinks})
    context = AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))
    caplog.set_level(logging.DEBUG)
    for up in (OrionUplink(config.uplinks[0], context), NgsiLdUplink(config.uplinks[1], context)):
        await up.start()
        await up.close()
    assert not [r for r in caplog.records if "s3cr3t" in r.getMessage()]


def said(caplog: pytest.LogCaptureFixture, level: int) -> list[tuple[str, str]]:
    records = [r for r in caplog.records if r.levelno == level and "plain http" in r.getMessage()]
    return [(getattr(r, "component", ""), r.getMessage()) for r in records]


async def test_a_start_warns_once_naming_the_uplink_the_hosts_and_the_fix_never_the_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await started(tmp_path, caplog, two_uplinks(allow=False))
    assert [(r.component, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING] == [  # type: ignore[attr-defined]
        ("orion", f"credentials go over plain http to orion.lab, idm.lab: {ADVICE}"),
        ("ld", f"credentials go over plain http to ld.lab: {ADVICE}"),
    ]
    assert said(caplog, logging.INFO) == []


async def test_with_the_opt_in_a_start_says_it_at_info_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await started(tmp_path, caplog, two_uplinks(allow=True))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert said(caplog, logging.INFO) == [
        ("orion", "credentials go over plain http to orion.lab, idm.lab (allow_insecure_http = true)"),
        ("ld", "credentials go over plain http to ld.lab (allow_insecure_http = true)"),
    ]


async def test_nothing_is_said_where_nothing_goes_off_the_box_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(tmp_path).set("t", "tok")
    config = parse_config(
        {
            "gateway": {"id": "gw-001"},
            "uplinks": [
                orion(url="http://127.0.0.1:1026", x_auth_token="secret:t"),
                orion(name="tls", x_auth_token="secret:t"),
                orion(name="plain", url="http://orion.lab:1026"),
            ],
        }
    )
    caplog.set_level(logging.DEBUG)
    for section in config.uplinks:
        up = OrionUplink(section, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
        await up.start()
        await up.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()] == []

"""The kintone uplink's API token or password over plain http to another host is warned of, not refused.

Review cleartext3: commit 0bd38a6 warns of credentials going over plain http off the box for the Orion and NGSI-LD
uplinks; a kintone `url = "http://..."` still sent `X-Cybozu-API-Token` (or the login and password) with every
request without a word. kintone always authenticates, so any http:// url off the box is warned of (check-config
passes: a config valid before must not stop an upgraded box) unless the uplink sets allow_insecure_http = true.
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
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from tests.support.kintone_double import KintoneDouble
from tests.uplinks.kintone.conftest import visits_section

ROOT = Path(__file__).resolve().parents[3]
ADVICE = (
    "anyone on the network between can read and reuse them; use https://, or set allow_insecure_http = true if this "
    "network is closed"
)
TOKEN = "visits-token-abcdef0123456789"


def warnings_of(*uplinks: dict[str, Any]) -> list[str]:
    return config_warnings(parse_config({"gateway": {"id": "gw-001"}, "uplinks": list(uplinks)}))


def test_an_http_url_off_the_box_loads_and_is_warned_of_naming_the_credentials_and_the_host() -> None:
    assert warnings_of(
        visits_section("http://example.cybozu.com"),
        {
            **visits_section("http://10.0.0.5"),
            "name": "second",
            "api_token": [],
            "user": "gw",
            "password": "secret:pw",
            "basic_auth": {"user": "b", "password": "env:B"},
        },
    ) == [
        f'uplinks[0].url: credentials (api_token) go over plain http to host "example.cybozu.com": {ADVICE}',
        f'uplinks[1].url: credentials (password, basic_auth.password) go over plain http to host "10.0.0.5": {ADVICE}',
    ]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost", "https://x.cybozu.com"]
)
def test_loopback_and_https_are_not_warned_of(url: str) -> None:
    assert warnings_of(visits_section(url)) == []


def test_the_opt_in_silences_the_warning() -> None:
    assert warnings_of(visits_section("http://kintone.lab", allow_insecure_http=True)) == []


async def started(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture, **keys: Any
) -> list[logging.LogRecord]:
    SecretStore(tmp_path).set("visits_token", TOKEN)
    # Linux connects to 0.0.0.0 as to this host, so the double answers; the rule, rightly, counts it off the box
    off_box = kintone.url.replace("127.0.0.1", "0.0.0.0")
    cfg = KintoneConfig.model_validate(visits_section(off_box, **keys))
    up = KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    caplog.set_level(logging.DEBUG)
    await up.start()  # checks the app's form with the token: the request went, over plain http
    await up.close()
    [form, *_] = kintone.requests
    assert (form.headers["X-Cybozu-API-Token"], form.status) == (TOKEN, 200)
    assert TOKEN not in caplog.text
    return [r for r in caplog.records if r.levelno >= logging.INFO and "plain http" in r.getMessage()]


async def test_a_start_warns_once_naming_the_host_and_the_fix_never_the_token(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    said = await started(kintone, tmp_path, caplog)
    assert [(r.levelno, r.component, r.getMessage()) for r in said] == [  # type: ignore[attr-defined]
        (logging.WARNING, "visits", f"credentials go over plain http to 0.0.0.0: {ADVICE}")
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [said[0].getMessage()]


async def test_with_the_opt_in_a_start_says_it_once_at_info(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    said = await started(kintone, tmp_path, caplog, allow_insecure_http=True)
    assert [(r.levelno, r.component, r.getMessage()) for r in said] == [  # type: ignore[attr-defined]
        (logging.INFO, "visits", "credentials go over plain http to 0.0.0.0 (allow_insecure_http = true)")
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_nothing_is_said_on_loopback(
    kintone: KintoneDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(tmp_path).set("visits_token", TOKEN)
    cfg = KintoneConfig.model_validate(visits_section(kintone.url))
    up = KintoneUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    caplog.set_level(logging.DEBUG)
    await up.start()
    await up.close()
    assert kintone.requests
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or "plain http" in r.getMessage()
    ] == []


@pytest.mark.parametrize("options", [[], ["--offline"]], ids=["on-the-box", "offline"])
def test_check_config_passes_an_http_kintone_printing_the_warning(tmp_path: Path, options: list[str]) -> None:
    # the package's postinst starts the units only when `edgegw check-config <file>` exits 0
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nid = "gw-001"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "visits"\ntype = "kintone"\nurl = "http://kintone.lan"\napp = 7\n'
        'api_token = "secret:visits_token"\n\n'
        '[[uplinks.mappings]]\nentity_types = ["Visit"]\nmode = "add"\nfields = { visitors = "visitors" }\n'
    )
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
        f"{path}: 1 warning(s): the gateway starts with them",
        f'  uplinks[0].url: credentials (api_token) go over plain http to host "kintone.lan": {ADVICE}',
    ]

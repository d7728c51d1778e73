"""The HTTPS session to one kintone app: its URLs, its authentication headers, the daily count.

Authentication as kintone documents it (REST API common specification): `X-Cybozu-API-Token`
(several tokens comma-joined), or `X-Cybozu-Authorization` (base64 of `login:password`), plus
`Authorization: Basic …` where cybozu.com's Basic authentication is on, and a client certificate
(`tls.cert_file`) for secure access (`<subdomain>.s.cybozu.com`). Every secret, and every
encoding of it sent on the wire, is registered with the redactor before the first request. A
secret with a control character (a token file saved with CRLF keeps its CR) cannot be right and
would fail every request in the HTTP library, naming no setting: it is refused here, by key path.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from gateway import __version__, redact, secrets
from gateway.configbase import NOT_ONE_LINE
from gateway.errors import ConfigError
from gateway.uplinks.http.client import HttpResponse, make_session, send
from gateway.uplinks.kintone.config import KintoneConfig
from gateway.uplinks.kintone.daily import DailyCounter

_CONTROL_NAMES = {"\r": "a carriage return", "\n": "a line feed", "\t": "a tab"}


class UnusableSecret(ConfigError):
    """A secret that resolves to a value no request can carry; the message names the setting, never the value."""

    code = "secret_unusable"


def _resolve(ref: str, data_dir: str, where: str) -> str:
    """The clear value of `ref` (the setting at key path `where`); UnusableSecret if it holds a control character."""
    value = secrets.resolve(ref, data_dir)
    bad = NOT_ONE_LINE.search(value)
    if bad is None:
        return value
    char = bad.group()
    what = f"U+{ord(char):04X}"
    if char in _CONTROL_NAMES:
        what = f"{_CONTROL_NAMES[char]} ({what})"
    if NOT_ONE_LINE.sub("", value[bad.start() :]):
        what += f" at character {bad.start() + 1}"
    else:
        what += " at its end"
        if char == "\r":
            what += " (a file saved with Windows line endings?)"
    kind, _, name = ref.partition(":")
    if kind == "env":
        source, fix = f"the environment variable {name}", "set it again without it"
    else:
        source, fix = f'the secret "{name}"', f"store it again with `edgegw secret set {name} --stdin`"
    raise UnusableSecret([f"{where}: {source} must be one line without control characters, got {what}; {fix}"])


def _b64(text: str) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    redact.register(encoded)
    return encoded


def auth_headers(cfg: KintoneConfig, data_dir: str) -> dict[str, str]:
    """The authentication headers, secrets resolved (ConfigError naming a missing one, UnusableSecret a bad one)."""
    at = f"uplinks.{cfg.name}"
    headers: dict[str, str] = {}
    if cfg.api_token:
        several = len(cfg.api_token) > 1
        tokens = [
            _resolve(ref, data_dir, f"{at}.api_token" + (f"[{i}]" if several else ""))
            for i, ref in enumerate(cfg.api_token)
        ]
        headers["X-Cybozu-API-Token"] = ",".join(tokens)
    if cfg.user and cfg.password:
        password = _resolve(cfg.password, data_dir, f"{at}.password")
        headers["X-Cybozu-Authorization"] = _b64(f"{cfg.user}:{password}")
    if cfg.basic_auth is not None:
        password = _resolve(cfg.basic_auth.password, data_dir, f"{at}.basic_auth.password")
        headers["Authorization"] = "Basic " + _b64(f"{cfg.basic_auth.user}:{password}")
    return headers


class KintoneSession:
    """One pooled session; every request counted against the day's limit before it is sent."""

    def __init__(self, cfg: KintoneConfig, *, gateway_id: str, data_dir: str, counter: DailyCounter) -> None:
        self.cfg = cfg
        self.counter = counter
        root = f"/k/guest/{cfg.guest_space_id}/v1" if cfg.guest_space_id else "/k/v1"
        self.base = cfg.url + root
        self._headers = {"User-Agent": f"edgegw/{__version__} ({gateway_id})"}
        self._headers.update(auth_headers(cfg, data_dir))
        self._session: aiohttp.ClientSession | None = make_session(
            tls=cfg.tls, timeout_s=cfg.timeout_s, where=f"uplinks.{cfg.name}"
        )

    def url(self, resource: str) -> str:
        return f"{self.base}/{resource}"

    async def request(self, method: str, resource: str, body: bytes | None = None) -> HttpResponse:
        """One request; UplinkTransient for transport failures (the count includes it: kintone may have seen it)."""
        assert self._session is not None, "request() after close()"
        headers: dict[str, Any] = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.counter.count()
        return await send(self._session, method, self.url(resource), body=body, headers=headers, where=self.cfg.name)

    async def close(self) -> None:
        self.counter.save()
        if self._session is not None:
            await self._session.close()
            self._session = None

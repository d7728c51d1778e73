"""The HTTPS session to one kintone app: its URLs, its authentication headers, the daily count.

Authentication as kintone documents it (REST API common specification): `X-Cybozu-API-Token`
(several tokens comma-joined), or `X-Cybozu-Authorization` (base64 of `login:password`), plus
`Authorization: Basic …` where cybozu.com's Basic authentication is on, and a client certificate
(`tls.cert_file`) for secure access (`<subdomain>.s.cybozu.com`). Every secret, and every
encoding of it sent on the wire, is registered with the redactor before the first request.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from gateway import __version__, redact, secrets
from gateway.uplinks.http.client import HttpResponse, make_session, send
from gateway.uplinks.kintone.config import KintoneConfig
from gateway.uplinks.kintone.daily import DailyCounter


def _b64(text: str) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    redact.register(encoded)
    return encoded


def auth_headers(cfg: KintoneConfig, data_dir: str) -> dict[str, str]:
    """The authentication headers, secrets resolved (ConfigError naming a missing one)."""
    headers: dict[str, str] = {}
    if cfg.api_token:
        headers["X-Cybozu-API-Token"] = ",".join(secrets.resolve(ref, data_dir) for ref in cfg.api_token)
    if cfg.user and cfg.password:
        headers["X-Cybozu-Authorization"] = _b64(f"{cfg.user}:{secrets.resolve(cfg.password, data_dir)}")
    if cfg.basic_auth is not None:
        password = secrets.resolve(cfg.basic_auth.password, data_dir)
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

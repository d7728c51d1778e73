"""A loopback HTTP peer that answers every request as the test scripted it: what stands in front of a
broker or an identity server when `url` is wrong (a load balancer's redirect, a login page, a captive
portal). The Orion double only answers as Orion does; this is everything else. Each request is kept."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


class ScriptedPeer:
    """`async with ScriptedPeer(302, location=...) as peer:`; `peer.url`, `peer.seen`."""

    def __init__(
        self,
        status: int = 200,
        *,
        body: str = "",
        content_type: str = "text/html",
        location: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.content_type = content_type
        self.location = location
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ScriptedPeer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            Seen(method=request.method, path=request.path_qs, headers=CIMultiDict(request.headers), body=body)
        )
        headers = {**self.headers, **({"Location": self.location} if self.location is not None else {})}
        if self.status == 204:
            return web.Response(status=204, headers=headers)
        return web.Response(status=self.status, text=self.body, content_type=self.content_type, headers=headers)

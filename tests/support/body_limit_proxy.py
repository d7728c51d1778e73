"""A reverse proxy with a request body limit in front of the Orion double, answering 413 as nginx does.

nginx (`client_max_body_size`, 1 MiB by default) refuses a larger body from its Content-Length,
before reading it, with an HTML page: a broker's JSON error body never arrives. Everything else is
passed to the double and its answer relayed unchanged.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

# nginx's error page for 413, as it sends it
NGINX_413 = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class BodyLimitProxy:
    """`async with BodyLimitProxy(upstream_url, max_body) as proxy:` then send to `proxy.url`."""

    def __init__(self, upstream: str, max_body: int) -> None:
        self.upstream = upstream
        self.max_body = max_body
        self.refused: list[int] = []  # Content-Length of every request refused with 413
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BodyLimitProxy:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _relay(self, request: web.Request) -> web.Response:
        length = request.content_length or 0
        if length > self.max_body:
            self.refused.append(length)
            return web.Response(status=413, body=NGINX_413, content_type="text/html", headers={"Connection": "close"})
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            return web.Response(
                status=upstream.status,
                body=payload,
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")} if payload else None,
            )

"""The web UI's and the kiosk's listening sockets, bound before anything is served.

aiohttp's TCPSite serves each address as soon as it binds it, so with two `[web] listen` addresses (or one host
name to resolve) a request could be answered while the next address was still being bound. Started by root, that
request ran as root (gateway.privileges drops root once every port is bound). Binding every socket first, here,
and serving them only afterwards (web.SockSite) leaves no such moment. The sockets are bound as asyncio's
create_server binds them for TCPSite, so `listen` means what it meant.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

__all__ = ["bind"]


def bind(addresses: Iterable[str], port: int) -> list[socket.socket]:
    """Sockets bound, not yet listening, on every address each of `addresses` resolves to ("": every interface),
    SO_REUSEADDR, an IPv6 socket IPv6 only (asyncio's own choices); the OSError naming the address that could not
    be bound, every socket closed then."""
    bound: list[socket.socket] = []
    try:
        for address in addresses:
            infos = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, where in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                bound.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(where)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"error while attempting to bind on address {where!r}: {exc.strerror}"
                    ) from None
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound

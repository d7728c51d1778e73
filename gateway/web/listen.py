"""The web UI's and the kiosk's listening sockets, bound before anything is served.

aiohttp's TCPSite serves each address as soon as it binds it. Started by root, the servers bind their ports first,
here, then become the gateway's user (gateway.privileges) and only then serve these sockets (web.SockSite): no
request is ever answered as root. A connection that comes meanwhile waits in the kernel's queue. The sockets are
bound as asyncio's create_server binds them for TCPSite, so `listen` means what it meant, and each listens at once,
so that two addresses resolving to the same one are refused naming it, as before.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

__all__ = ["bind"]

BACKLOG = 128  # aiohttp's own for its sites


def bind(addresses: Iterable[str], port: int) -> list[socket.socket]:
    """Sockets bound and listening, not yet served, on every address each of `addresses` resolves to ("": every
    interface), SO_REUSEADDR, an IPv6 socket IPv6 only (asyncio's own choices); the OSError naming the address
    that could not be bound, every socket closed then."""
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
                    # SO_REUSEADDR lets a second socket bind an address another has bound but not yet listens on
                    sock.listen(BACKLOG)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"error while attempting to bind on address {where!r}: {exc.strerror}"
                    ) from None
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound

"""The UI's sockets are bound before anything is served (gateway/web/listen.py), as asyncio binds them for TCPSite."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from gateway.web.listen import bind
from tests.web.test_cli import free_port


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_bound_sockets_queue_connections_until_a_site_serves_them() -> None:
    port = free_port()
    (sock,) = bind(["127.0.0.1"], port)
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            client.settimeout(0.3)
            with pytest.raises(TimeoutError):  # queued by the kernel: nothing answers before a site serves it
                client.recv(1)
            queued, _ = sock.accept()  # what a site does once the process is the gateway's user
            queued.close()
    finally:
        sock.close()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 here")
def test_every_interface_is_both_families_each_on_its_own_socket() -> None:
    """ "" (every interface) resolves to 0.0.0.0 and ::, the IPv6 socket IPv6 only, as asyncio's create_server does."""
    port = free_port()
    try:
        sockets = bind([""], port)
    except OSError as exc:  # a box without IPv6 configured
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
        pytest.skip(f"IPv6 not configured: {exc}")
    try:
        families = {s.family: s for s in sockets}
        assert set(families) == {socket.AF_INET, socket.AF_INET6}
        assert families[socket.AF_INET].getsockname() == ("0.0.0.0", port)
        assert families[socket.AF_INET6].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_two_addresses_resolving_to_one_are_refused_naming_it() -> None:
    port = free_port()
    with pytest.raises(OSError, match=rf"error while attempting to bind on address \('127\.0\.0\.1', {port}\)"):
        bind(["127.0.0.1", "127.0.0.1"], port)


def test_an_address_in_use_is_named_and_nothing_stays_bound() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        before = open_descriptors()
        with pytest.raises(
            OSError, match=rf"error while attempting to bind on address \('127\.0\.0\.1', {port}\)"
        ) as info:
            bind(["127.0.0.2", "127.0.0.1"], port)
        assert info.value.errno == errno.EADDRINUSE
        assert open_descriptors() == before  # 127.0.0.2's socket, bound first, closed again

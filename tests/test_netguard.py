"""Tests for the test-wide network guard (support.netguard, installed by conftest.py).

Loopback and Unix sockets keep working; a connect or send to any other
address is refused before the kernel sees it, for plain sockets, asyncio and
aiohttp alike.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from support.netguard import NetGuard, NetworkGuardError

# 192.0.2.0/24 and 2001:db8::/32 are documentation ranges; 10/8 is private.
PUBLIC = ["192.0.2.1", "10.0.0.1", "0.0.0.0", "8.8.8.8"]
PUBLIC6 = ["2001:db8::1", "::ffff:192.0.2.1", "::"]


def _echo_once(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.recv(16).upper())


def test_loopback_connect_works() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        t = threading.Thread(target=_echo_once, args=(server,))
        t.start()
        with socket.create_connection(server.getsockname(), timeout=10) as c:
            c.sendall(b"ping")
            assert c.recv(16) == b"PING"
        t.join(10)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.45.6.7", "localhost"])
def test_loopback_names_and_whole_127_range_allowed(host: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1" if host == "localhost" else host, 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.socket() as c:
            c.settimeout(10)
            assert c.connect_ex((host, port)) == 0


def test_ipv6_loopback_allowed() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"::1 unavailable: {exc}")
    with server:
        server.listen(1)
        with socket.socket(socket.AF_INET6) as c:
            c.settimeout(10)
            c.connect(server.getsockname())


def test_unix_socket_works(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        t = threading.Thread(target=_echo_once, args=(server,))
        t.start()
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(path)
            c.sendall(b"unix")
            assert c.recv(16) == b"UNIX"
        t.join(10)


@pytest.mark.parametrize("host", PUBLIC)
@pytest.mark.parametrize("method", ["connect", "connect_ex"])
def test_public_ipv4_refused_before_the_kernel_sees_it(
    host: str, method: str, netguard: NetGuard
) -> None:
    with socket.socket() as c:
        c.setblocking(False)  # a real connect would return at once with EINPROGRESS
        with pytest.raises(NetworkGuardError, match=re.escape(host)):
            getattr(c, method)((host, 80))
        # A real connect binds an ephemeral local port before the SYN goes
        # out; the socket still being unbound proves the kernel never saw it.
        assert c.getsockname() == ("0.0.0.0", 0)
    assert netguard.take() == [repr((host, 80))]


@pytest.mark.parametrize("host", PUBLIC6)
def test_public_ipv6_refused(host: str, netguard: NetGuard) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    with socket.socket(socket.AF_INET6) as c:
        c.setblocking(False)
        with pytest.raises(NetworkGuardError, match="refused connection"):
            c.connect((host, 80, 0, 0))
        assert c.getsockname()[1] == 0
    assert len(netguard.take()) == 1


def test_host_name_refused_without_resolving(netguard: NetGuard) -> None:
    with (
        socket.socket() as c,
        pytest.raises(NetworkGuardError, match=re.escape("proxy.golang.org")),
    ):
        c.connect(("proxy.golang.org", 443))
    assert netguard.take() == [repr(("proxy.golang.org", 443))]


def test_udp_sendto_public_refused_loopback_allowed(netguard: NetGuard) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            with pytest.raises(NetworkGuardError, match=re.escape("192.0.2.1")):
                tx.sendto(b"x", ("192.0.2.1", 53))
            with pytest.raises(NetworkGuardError, match=re.escape("192.0.2.1")):
                tx.sendto(b"x", 0, ("192.0.2.1", 53))
            assert tx.getsockname() == ("0.0.0.0", 0)  # nothing was sent
            tx.sendto(b"ok", rx.getsockname())
            assert rx.recv(16) == b"ok"
    assert len(netguard.take()) == 2


def test_asyncio_open_connection_public_refused(netguard: NetGuard) -> None:
    async def main() -> None:
        with pytest.raises(NetworkGuardError, match=re.escape("192.0.2.1")):
            await asyncio.open_connection("192.0.2.1", 80)

    asyncio.run(main())
    assert netguard.take() == [repr(("192.0.2.1", 80))]


def test_aiohttp_loopback_works_and_public_ip_fails_with_guard_error(
    netguard: NetGuard,
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    assert await resp.text() == "hello"
                for url in ("http://192.0.2.1/", "https://10.0.0.1:8443/x"):
                    with pytest.raises(NetworkGuardError, match="refused connection"):
                        async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)):
                            pass
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert [a.split(",")[0] for a in netguard.take()] == ["('192.0.2.1'", "('10.0.0.1'"]

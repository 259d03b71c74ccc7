"""test_sumdb_transport checks HttpSumdbTransport failover across routes over loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import pytest

from gomirror.errors import Gone, NotFound, UpstreamError
from gomirror.sumdb.transport import HttpSumdbTransport
from support.sumdb_server import TestSumdb

T = TypeVar("T")
H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run(
    routes: list[str], fn: Callable[[HttpSumdbTransport], Awaitable[T]], max_body: int = 1 << 20
) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await fn(HttpSumdbTransport(routes, session, timeout=5, max_body=max_body))

    return asyncio.run(main())


def _db() -> TestSumdb:
    db = TestSumdb()
    db.add("example.com/a", "v1.0.0", H1, H1)
    return db


def test_fails_over_and_remembers_the_good_route() -> None:
    with _db() as db:

        async def twice(t: HttpSumdbTransport) -> tuple[bytes, bytes]:
            return await t.fetch("latest"), await t.fetch("/latest")

        first, second = run([dead_url(), db.url], twice)
        assert first == second == db.signed()
        assert db.requests == ["/latest", "/latest"]


def test_server_errors_fail_over() -> None:
    with _db() as bad, _db() as good:
        bad.set_override("/latest", b"oops", status=503)
        assert run([bad.url, good.url], lambda t: t.fetch("latest")) == good.signed()
        assert bad.requests == good.requests == ["/latest"]


def test_not_found_on_one_route_tries_the_others() -> None:
    with _db() as lagging, _db() as good:
        lagging.set_override("/tile/8/0/000.p/1", b"no", status=404)
        data = run([lagging.url, good.url], lambda t: t.fetch("tile/8/0/000.p/1"))
        assert len(data) == 32


def test_not_found_everywhere_is_not_found() -> None:
    with _db() as a, _db() as b:
        with pytest.raises(NotFound):
            run([a.url, b.url], lambda t: t.fetch("lookup/example.com/zzz@v1.0.0"))
        a.set_override("/x", b"", status=410)
        b.set_override("/x", b"", status=410)
        with pytest.raises(Gone):
            run([a.url, b.url], lambda t: t.fetch("x"))
        b.set_override("/x", b"", status=500)
        with pytest.raises(NotFound):
            run([a.url, b.url], lambda t: t.fetch("x"))


def test_every_route_failing_is_upstream_error() -> None:
    with _db() as db:
        db.set_override("/latest", b"", status=500)
        with pytest.raises(UpstreamError, match="every checksum database route failed"):
            run([dead_url(), db.url], lambda t: t.fetch("latest"))


def test_oversized_body_is_rejected() -> None:
    with _db() as db:
        db.set_override("/latest", b"x" * 2000)
        with pytest.raises(UpstreamError, match="larger than 1000 bytes"):
            run([db.url], lambda t: t.fetch("latest"), max_body=1000)


def test_needs_a_route() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            HttpSumdbTransport([], session)

    with pytest.raises(ValueError):
        asyncio.run(main())

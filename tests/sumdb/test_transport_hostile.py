"""test_transport_hostile: a checksum-database route is held to the mirrors' rules.

Each test runs a hostile route (a small aiohttp app on 127.0.0.1) in front of
an honest one (a ``TestSumdb``) and checks that ``HttpSumdbTransport`` refuses
what a mirror would be refused (redirects the policy does not allow, any
``Content-Encoding``, oversized declared bodies, drips, deadlines), and that
the refusal only fails that route: the honest route answers next.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gomirror.errors import UpstreamError, UpstreamTimeout
from gomirror.sumdb.routes import Route, SumdbUnavailable
from gomirror.sumdb.transport import HttpSumdbTransport, SumdbRoute
from gomirror.upstream.transfer import TransferLimits
from support.sumdb_server import TestSumdb

H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _db() -> TestSumdb:
    db = TestSumdb()
    db.add("example.com/a", "v1.0.0", H1, H1)
    return db


class Hostile:
    """A route whose every answer comes from ``handler``; records what it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, dict(request.headers)))
        return await self.handler(request)

    async def __aenter__(self) -> Hostile:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class MapResolver(AbstractResolver):
    """Resolves every name to 127.0.0.1, so a 'public' host name can be served on loopback."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def public_dns(host: str, port: int) -> Sequence[str]:
    """What the redirect policy believes: public.test is a public address, the rest loopback."""
    return ["93.184.216.34"] if host == "public.test" else ["127.0.0.1"]


def run(fn: Callable[[aiohttp.ClientSession], Awaitable[Any]], resolver: bool = False) -> Any:
    async def main() -> Any:
        connector = aiohttp.TCPConnector(resolver=MapResolver()) if resolver else None
        async with aiohttp.ClientSession(connector=connector) as session:
            return await fn(session)

    return asyncio.run(main())


def transport(
    session: aiohttp.ClientSession, routes: Sequence[str | SumdbRoute], **kw: Any
) -> HttpSumdbTransport:
    kw.setdefault("timeout", 5)
    return HttpSumdbTransport(routes, session, **kw)


async def fetch_from(t: HttpSumdbTransport, index: int, path: str = "latest") -> bytes:
    return await t.fetch_from(Route(index, t.route_names[index]), path)


def redirect_to(target: Callable[[web.Request], str], status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": target(request)})

    return handler


# --------------------------------------------------------------------------- redirects


def test_a_redirect_within_the_policy_is_followed() -> None:
    with _db() as db:

        async def main(session: aiohttp.ClientSession) -> bytes:
            async with Hostile(redirect_to(lambda r: db.url + r.path)) as h:
                return await fetch_from(transport(session, [h.url]), 0)

        assert run(main) == db.signed()


def test_endless_redirects_fail_the_route_and_the_next_one_answers() -> None:
    with _db() as db:

        async def main(session: aiohttp.ClientSession) -> tuple[bytes, int]:
            async with Hostile(redirect_to(lambda r: r.path + "x")) as h:
                body = await transport(session, [h.url, db.url]).fetch("latest")
                return body, len(h.seen)

        body, asked = run(main)
        assert body == db.signed()
        assert asked == 4  # the first request and MAX_HOPS (3) redirects, then refused


def test_no_redirects_when_the_mode_is_none() -> None:
    with _db() as db:

        async def main(session: aiohttp.ClientSession) -> None:
            async with Hostile(redirect_to(lambda r: db.url + r.path)) as h:
                t = transport(session, [h.url], follow_redirects="none")
                await fetch_from(t, 0)

        with pytest.raises(UpstreamError, match="redirects are not followed"):
            run(main)
        assert db.requests == []


def test_same_host_mode_refuses_another_port() -> None:
    with _db() as db:

        async def main(session: aiohttp.ClientSession) -> None:
            async with Hostile(redirect_to(lambda r: db.url + r.path)) as h:
                await fetch_from(transport(session, [h.url], follow_redirects="same-host"), 0)

        with pytest.raises(UpstreamError, match="another host"):
            run(main)
        assert db.requests == []


def test_a_public_route_may_not_redirect_to_an_internal_address() -> None:
    with _db() as db:

        async def main(session: aiohttp.ClientSession) -> None:
            async with Hostile(redirect_to(lambda r: db.url + r.path)) as h:
                route = f"http://public.test:{h.port}"
                await fetch_from(transport(session, [route], resolve=public_dns), 0)

        with pytest.raises(UpstreamError, match="internal address"):
            run(main, resolver=True)
        assert db.requests == []  # refused before it was asked


def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    with _db() as db:
        seen: list[str | None] = []

        async def main(session: aiohttp.ClientSession) -> bytes:
            async def other(request: web.Request) -> web.StreamResponse:
                seen.append(request.headers.get("Authorization"))
                return web.Response(body=db.signed())

            async with (
                Hostile(other) as target,
                Hostile(redirect_to(lambda r: target.url + r.path)) as h,
            ):
                route = f"http://user:s3cret@127.0.0.1:{h.port}"
                body = await fetch_from(transport(session, [route]), 0)
                assert h.seen[0][1].get("Authorization", "").startswith("Basic ")
                return body

        assert run(main) == db.signed()
        assert seen == [None]


# --------------------------------------------------------------------------- encodings, sizes


def test_a_gzip_encoded_answer_is_refused_and_never_decoded() -> None:
    with _db() as db:

        async def bomb(request: web.Request) -> web.StreamResponse:
            body = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in a few KiB
            return web.Response(body=body, headers={"Content-Encoding": "gzip"})

        async def main(session: aiohttp.ClientSession) -> tuple[bytes, str]:
            async with Hostile(bomb) as h:
                t = transport(session, [h.url, db.url])
                body = await t.fetch("latest")
                return body, h.seen[0][1].get("Accept-Encoding", "")

        body, asked = run(main)
        assert body == db.signed()
        assert asked == "identity"


def test_a_gzip_answer_alone_is_a_clear_route_failure() -> None:
    async def encoded(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(b"x"), headers={"Content-Encoding": "gzip"})

    async def main(session: aiohttp.ClientSession) -> None:
        async with Hostile(encoded) as h:
            await transport(session, [h.url]).fetch("latest")

    with pytest.raises(SumdbUnavailable, match="Content-Encoding 'gzip'"):
        run(main)


def test_a_declared_oversized_body_is_refused_before_it_is_read() -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(1 << 30)})
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b"x" * 1024)
        return resp

    async def main(session: aiohttp.ClientSession) -> None:
        async with Hostile(huge) as h:
            await fetch_from(transport(session, [h.url], max_body=1 << 20), 0)

    with pytest.raises(UpstreamError, match="declared"):
        run(main)


# --------------------------------------------------------------------------- drips, deadlines


def dripper(interval: float, stop: asyncio.Event | None = None) -> Handler:
    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        try:
            for _ in range(10_000):
                await resp.write(b"x")
                await asyncio.sleep(interval)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    return drip


def test_a_dripping_route_is_timed_out_by_the_minimum_rate() -> None:
    with _db() as db:

        async def main(session: aiohttp.ClientSession) -> tuple[bytes, float]:
            async with Hostile(dripper(0.05)) as h:
                t = transport(
                    session,
                    [h.url, db.url],
                    timeout=30,
                    limits=TransferLimits(min_rate=1000, rate_grace=0.5),
                )
                started = time.monotonic()
                body = await t.fetch("latest")
                return body, time.monotonic() - started

        body, seconds = run(main)
        assert body == db.signed()
        assert seconds < 5, f"a 20 bytes/s route held the fetch for {seconds:.1f}s"


def test_a_dripping_route_alone_is_a_timeout() -> None:
    async def main(session: aiohttp.ClientSession) -> None:
        async with Hostile(dripper(0.05)) as h:
            t = transport(session, [h.url], limits=TransferLimits(min_rate=1000, rate_grace=0.5))
            await fetch_from(t, 0)

    with pytest.raises(UpstreamTimeout, match="too slow"):
        run(main)


def test_the_deadline_bounds_a_route_without_a_minimum_rate() -> None:
    async def main(session: aiohttp.ClientSession) -> float:
        async with Hostile(dripper(0.05)) as h:
            t = transport(session, [h.url], timeout=1.0, limits=TransferLimits(min_rate=0))
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout, match="deadline"):
                await fetch_from(t, 0)
            return time.monotonic() - started

    assert run(main) < 3


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http://h:99999/"])
def test_a_redirect_to_an_unsupported_url_is_a_route_failure(location: str) -> None:
    async def main(session: aiohttp.ClientSession) -> None:
        async with Hostile(redirect_to(lambda r: location)) as h:
            await fetch_from(transport(session, [h.url]), 0)

    with pytest.raises(UpstreamError, match=r"redirect to an (unsupported|invalid) URL"):
        run(main)

"""server.http against the real tree (build + serve, a loopback simulator as the mirror).

Covers the operator endpoints (/healthz, /readyz, /metrics, the status page and
its JSON), the cache-result metric, query strings being ignored, over-long path
elements, the connection limit, and that the Host header is never echoed.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gomirror import app
from support.appconfig import quiet_config
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/http/mod", "v1.0.0"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n"})
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="mirror") as s:
        yield s


@asynccontextmanager
async def server(tmp: Path, upstream: str, **more: Any) -> AsyncIterator[str]:
    cfg = quiet_config(tmp / "cache", upstream, **more)
    async with app.build(cfg) as parts, app.serve(parts) as port:
        yield f"http://127.0.0.1:{port}"


async def get(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, dict(r.headers), await r.read()


def test_readyz_healthz_and_status(tmp_path: Path, sim: UpstreamSimulator) -> None:
    async def main() -> None:
        async with server(tmp_path, sim.url) as base:
            assert (await get(base + "/healthz"))[0] == 200
            status, _, body = await get(base + "/readyz")
            assert status == 200 and body.startswith(b"ready\n")
            assert (await get(f"{base}/{M}/@v/{V}.info"))[0] == 200
            status, headers, body = await get(base + "/-/status.json")
            assert status == 200 and headers["Cache-Control"] == "no-store"
            snap = json.loads(body)
            assert [m["name"] for m in snap["mirrors"]] == [sim.url]
            assert snap["mirrors"][0]["state"] == "healthy"
            assert snap["cache"]["misses"] >= 1
            status, headers, body = await get(base + "/")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "default-src" in headers["Content-Security-Policy"]
            assert sim.url.encode() in body

    asyncio.run(main())


def test_readyz_says_why_when_every_mirror_is_down(tmp_path: Path) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connections are refused

    async def main() -> None:
        async with server(tmp_path, f"http://127.0.0.1:{port}", down_after="1") as base:
            assert (await get(f"{base}/{M}/@v/{V}.mod"))[0] == 502
            status, _, body = await get(base + "/readyz")
            assert status == 503
            assert b"not ready" in body and b"every mirror is down" in body

    asyncio.run(main())


def test_metrics_count_cache_results(tmp_path: Path, sim: UpstreamSimulator) -> None:
    async def main() -> None:
        async with server(tmp_path, sim.url) as base:
            for _ in range(3):
                assert (await get(f"{base}/{M}/@v/{V}.mod"))[0] == 200
            _, _, body = await get(base + "/metrics")
            text = body.decode()
            assert 'gomirror_cache_total{endpoint="mod",result="miss"} 1.0' in text
            assert 'gomirror_cache_total{endpoint="mod",result="hit"} 2.0' in text
            assert f'gomirror_upstream_up{{upstream="{sim.url}"}} 1.0' in text
            assert f'gomirror_upstream_state{{state="healthy",upstream="{sim.url}"}} 1.0' in text
            assert "_created" not in text

    asyncio.run(main())


def test_query_strings_are_ignored_and_long_elements_are_not_found(
    tmp_path: Path, sim: UpstreamSimulator
) -> None:
    async def main() -> None:
        async with server(tmp_path, sim.url) as base:
            status, _, body = await get(f"{base}/{M}/@v/{V}.mod?x=" + "a" * 4000)
            assert status == 200 and body.startswith(b"module ")
            assert (await get(f"{base}/{M}/@v/list"))[0] == 200  # parent is cached now
            status, headers, body = await get(f"{base}/{M}/{'x' * 300}/@v/list")
            assert status == 404 and b"longer than 255 bytes" in body
            assert headers["Content-Type"].startswith("text/plain")

    asyncio.run(main())


def test_host_header_is_not_echoed(tmp_path: Path, sim: UpstreamSimulator) -> None:
    async def main() -> None:
        async with server(tmp_path, sim.url) as base:
            host, port = base.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"GET / HTTP/1.1\r\nHost: \xff\xfeevil<script>\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            data = await reader.read()
            writer.close()
            head = data.split(b"\r\n", 1)[0]
            assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 4"), head
            assert b"evil" not in data

    asyncio.run(main())


def test_connections_past_the_limit_get_a_503(tmp_path: Path, sim: UpstreamSimulator) -> None:
    async def main() -> None:
        async with server(tmp_path, sim.url, max_connections="2") as base:
            host, port = base.removeprefix("http://").split(":")
            held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
            for r, w in held:  # one answered request each proves the server holds them
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                await w.drain()
                assert (await r.readline()).startswith(b"HTTP/1.1 200")
            reader, writer = await asyncio.open_connection(host, int(port))
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data
            writer.close()
            for _, w in held:
                w.close()
            # A slot frees up once the held connections are gone.
            for _ in range(100):
                try:
                    status, _, _ = await get(base + "/healthz")
                except aiohttp.ServerDisconnectedError:
                    await asyncio.sleep(0.01)
                    continue
                if status == 200:
                    break
            assert status == 200

    asyncio.run(main())


def test_idle_connections_are_closed_after_idle_timeout(
    tmp_path: Path, sim: UpstreamSimulator
) -> None:
    async def main() -> None:
        async with server(tmp_path, sim.url, idle_timeout="0.3") as base:
            host, port = base.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /healthz HTTP/1.1\r\nHo")  # a request that never completes
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed it
            assert b"ok" not in data
            writer.close()

    asyncio.run(main())

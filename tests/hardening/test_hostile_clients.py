"""test_hostile_clients points hostile clients at a real ``gomirror serve``: bad bytes, floods, slow-loris.

One subprocess server (so its memory, file descriptors and log are its own)
runs with ``GOMIRROR_IDLE_TIMEOUT=2`` and ``GOMIRROR_MAX_CONNECTIONS=200`` over a
simulator mirror and a test checksum database; its module's list, ``.info``
and ``.mod`` are cached first. The tests check that:

- a non-UTF-8 (or otherwise hostile) ``Host`` header gets a 200 or a 4xx,
  never a 5xx, and its value is never echoed back;
- 5,000 requests with unique 8 KB query strings (module files, ``/sumdb/``,
  not-found paths, ``/healthz``) leave the server's RSS bounded;
- malformed request lines get a 4xx (never a 5xx) and cost at most one
  ``info`` log line each, rate-limited, with no traceback and nothing at
  ``error`` level;
- 300 slow-loris connections dribbling header bytes: while under the limit a
  legitimate request answers at once; past it every new connection gets an
  immediate ``503`` with ``Retry-After``; after ``idle_timeout`` the dribblers
  are closed although they keep sending, and legitimate requests succeed;
- a path element over 255 bytes on a cached parent, or a path longer than
  ``PATH_MAX`` made of legal elements, is a 404, not a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from hardening.kit import (
    MAX_ERROR_BODY,
    Figures,
    get_request,
    mount_sumdb,
    raw_request,
    vm_kib,
    wait_until,
)
from support.corpus import Corpus
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

M, V = "example.com/hostile/clients", "v1.0.0"
DB = "localhost.localdev/sumdb"
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 200
RSS_GROWTH_LIMIT_KIB = 24 << 10  # 5,000 x 8 KB kept anywhere would be about 40 MB
LOG_BURST = 5  # logs.RateLimitFilter: 5 lines of one kind per 10 s
LOG_PERIOD = 10.0


@dataclass
class World:
    corpus: Corpus
    sim: UpstreamSimulator
    server: GomirrorProcess

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def log_size(self) -> int:
        return self.server.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.server.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log_through(self, offset: int, marker: str) -> str:
        """The log from offset on, once the access line of a GET /healthz?<marker> is in it."""
        r = raw_request(self.server.port, get_request(f"/healthz?{marker}".encode()))
        assert r.status == 200, r
        # The log is written by another process: wait for the marker's access line.
        wait_until(
            lambda: f"?{marker}" in self.log_since(offset), 10, "the server's log to catch up"
        )
        return self.log_since(offset)


def no_errors_logged(text: str) -> None:
    """No traceback and nothing at error level or above in a stretch of the server's log."""
    lines = text.splitlines()
    errors = [ln for ln in lines if re.match(r"\S+ (error|critical) ", ln)]
    assert not errors, f"{len(errors)} error lines, e.g.:\n" + "\n".join(errors[:5])
    assert "Traceback" not in text, text[text.index("Traceback") - 300 :][:2000]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    corpus = Corpus()
    corpus.add_module(M, V, {"c.go": b"package clients\n"})

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)
    tmp = tmp_path_factory.mktemp("hostile-clients")
    with UpstreamSimulator(corpus, name="mirror") as sim:
        spec = mount_sumdb(sim, db)
        env = {
            "GOMIRROR_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
            "GOMIRROR_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        }
        with GomirrorProcess(tmp, upstream=sim.url, sumdb=spec, env=env) as server:
            for path in (f"/{M}/@v/list", f"/{M}/@v/{V}.info", f"/{M}/@v/{V}.mod"):
                status, _, body = server.get(path)
                assert status == 200, (path, body)
            yield World(corpus, sim, server)


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


# --------------------------------------------------------------------------- Host header

HOSTILE_HOSTS = [
    b"\xff\xfeevil",
    b"\xc3(evil",
    b"evil\x01ctl",
    b"<script>evil</script>",
    b"e" * 4000 + b"evil",
    b"evil\x7f",
]


def test_hostile_host_headers_are_answered_and_never_echoed(world: World) -> None:
    problems = []
    for path in (b"/", b"/-/status", b"/healthz", f"/{M}/@v/list".encode(), b"/nothing/here"):
        for host in HOSTILE_HOSTS:
            r = raw_request(world.server.port, get_request(path, host=host), timeout=10)
            what = f"GET {path!r} Host: {host[:30]!r}"
            if not (r.status == 200 or 400 <= r.status < 500):
                problems.append(f"{what}: status {r.status}")
            if b"evil" in r.raw:
                problems.append(f"{what}: the Host value is echoed: {r.body[:120]!r}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- memory


def test_unique_query_strings_keep_memory_bounded(world: World, figures: Figures) -> None:
    base = world.server.url
    kinds = [
        f"/{M}/@v/{V}.mod",
        f"/{M}/@v/list",
        f"/sumdb/{DB}/latest",
        f"/sumdb/{DB}/lookup/{M}@{V}",
        "/example.com/not/there/@v/list",
        "/healthz",
    ]

    async def flood(n: int, tag: str) -> dict[int, int]:
        statuses: dict[int, int] = {}
        connector = aiohttp.TCPConnector(limit=8)
        async with aiohttp.ClientSession(connector=connector) as session:
            sem = asyncio.Semaphore(8)

            async def one(i: int) -> None:
                query = f"?{tag}{i}=" + f"{i:08d}" * 1000  # about 8 KB, unique
                async with sem, session.get(base + kinds[i % len(kinds)] + query) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

            await asyncio.gather(*(one(i) for i in range(n)))
        return statuses

    asyncio.run(flood(300, "warm"))  # let lazily made things (pools, caches of real paths) settle
    before = vm_kib(world.pid)
    started = time.monotonic()
    statuses = asyncio.run(flood(5000, "q"))
    seconds = time.monotonic() - started
    after = vm_kib(world.pid)
    peak = vm_kib(world.pid, "VmHWM")
    figures.put("query-string flood: requests", 5000)
    figures.put("query-string flood: RSS before KiB", before)
    figures.put("query-string flood: RSS after KiB", after)
    figures.put("server memory peak (VmHWM) KiB", peak)
    figures.put("query-string flood: seconds", round(seconds, 1))
    figures.add("requests fuzzed", 5300)
    assert not [s for s in statuses if s >= 500], statuses
    assert after - before < RSS_GROWTH_LIMIT_KIB, (
        f"RSS grew by {(after - before) >> 10} MiB over 5,000 unique 8 KB query strings "
        f"({before >> 10} -> {after >> 10} MiB)"
    )


# --------------------------------------------------------------------------- malformed requests

MALFORMED = [
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(40),  # TLS on the HTTP port
    b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(100)) + b"\r\n",
    b"\xff\xfe\xfd\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
]


def test_malformed_requests_get_4xx_and_a_rate_limited_info_line(world: World) -> None:
    offset = world.log_size()
    started = time.monotonic()
    problems: dict[bytes, str] = {}
    sent = 0
    for _ in range(25):
        for data in MALFORMED:
            r = raw_request(world.server.port, data, timeout=10)
            sent += 1
            ok = 400 <= r.status < 500 or (data == MALFORMED[-1] and r.status == 200)
            if not ok:
                problems[data] = f"{data[:40]!r}: status {r.status}: {r.body[:100]!r}"
            elif r.status >= 400 and len(r.body) > MAX_ERROR_BODY:
                problems[data] = f"{data[:40]!r}: a {len(r.body)}-byte error body"
    elapsed = time.monotonic() - started
    text = world.log_through(offset, "malformed-done")
    no_errors_logged(text)
    bad = [ln for ln in text.splitlines() if " bad client request" in ln]
    allowed = LOG_BURST * (int(elapsed // LOG_PERIOD) + 2)
    assert len(bad) <= min(sent, allowed), (
        f"{len(bad)} 'bad client request' lines for {sent} requests"
    )
    for ln in bad:
        assert re.match(r"\S+ info ", ln), ln
    assert not problems, "\n".join(problems.values())


# --------------------------------------------------------------------------- slow-loris


def test_slow_loris_cannot_starve_legitimate_clients(world: World, figures: Figures) -> None:
    host, port = "127.0.0.1", world.server.port
    offset = world.log_size()

    async def legit() -> tuple[int, float, str]:
        # A blocking socket, as the go command reads: the kernel hands over an answer that
        # arrived before a reset, where asyncio's read() would raise and drop it.
        started = time.monotonic()
        r = await asyncio.to_thread(raw_request, port, get_request(b"/healthz"), 5.0)
        return r.status, time.monotonic() - started, r.raw.decode("latin-1")

    @dataclass
    class Conn:
        writer: asyncio.StreamWriter
        opened: float
        first: asyncio.Task[bytes]  # the first bytes the server sends (b"": it closed)

    async def first_bytes(reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.read(200)
        except ConnectionResetError:
            return b"(reset)"

    async def main() -> None:
        stop = asyncio.Event()
        conns: list[Conn] = []

        async def dribble(c: Conn) -> None:
            header = b"X-Slow: " + b"a" * 4000
            for i in range(len(header)):
                # The attack's own pace (one byte every 0.2 s), not a synchronisation.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                if stop.is_set() or c.first.done() or c.writer.is_closing():
                    return  # the server answered or closed: writing on would only draw a reset
                try:
                    c.writer.write(header[i : i + 1])
                    await c.writer.drain()
                except (ConnectionError, OSError):
                    return

        async def open_batch(n: int) -> list[Conn]:
            batch = []
            for _ in range(n):
                reader, writer = await asyncio.open_connection(host, port)
                c = Conn(writer, time.monotonic(), asyncio.create_task(first_bytes(reader)))
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                await writer.drain()
                batch.append(c)
                tasks.append(asyncio.create_task(dribble(c)))
            conns.extend(batch)
            return batch

        tasks: list[asyncio.Task[None]] = []
        t0 = time.monotonic()
        await open_batch(150)
        status, seconds, _ = await legit()
        assert status == 200 and seconds < 1.0, f"under the limit: {status} after {seconds:.2f}s"

        second = await open_batch(150)
        opened = time.monotonic() - t0
        # Connections past the limit are answered at once and closed.
        await asyncio.wait([c.first for c in second], timeout=1.0)
        answers = [c.first.result() for c in second if c.first.done()]
        refused = sum(
            1 for a in answers if a.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in a
        )
        resets = sum(1 for a in answers if a == b"(reset)")
        figures.put("slow-loris: connections past the limit answered 503", refused)
        figures.put("slow-loris: connections past the limit reset unanswered", resets)
        if opened < IDLE_TIMEOUT * 0.75:  # none of the first batch timed out yet
            assert refused + resets == 300 - MAX_CONNECTIONS, f"{refused} 503s, {resets} resets"
        assert resets == 0, (
            f"{resets} of {refused + resets} refused connections lost their 503 (reset)"
        )
        status, seconds, text = await legit()
        assert status in (200, 503) and seconds < 1.0, (
            f"at the limit: {status} {text[:80]!r} after {seconds:.2f}s"
        )
        if status == 503:
            assert "Retry-After: 1" in text
        fds = open_fds(world.pid)
        figures.put("slow-loris: server fds at the limit", fds)
        assert fds <= MAX_CONNECTIONS + 64, f"{fds} open file descriptors"

        # Every held dribbler is closed by the server after idle_timeout, though it keeps sending.
        held = [c for c in conns if c not in second or not c.first.done()]
        deadline = max(c.opened for c in held) + IDLE_TIMEOUT + 3
        await asyncio.wait([c.first for c in held], timeout=max(0.0, deadline - time.monotonic()))
        still_open = sum(1 for c in held if not c.first.done())
        assert still_open == 0, f"{still_open} dribbling connections outlived idle_timeout + 3 s"
        status, seconds, _ = await legit()
        assert status == 200 and seconds < 1.0, f"after the attack: {status} after {seconds:.2f}s"
        stop.set()
        for c in conns:
            c.writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    # Refusing connections past the limit must not cost a traceback (or an error line) each.
    no_errors_logged(world.log_through(offset, "slow-loris-done"))


# --------------------------------------------------------------------------- long paths


def test_over_long_elements_and_paths_are_not_found(world: World) -> None:
    long = "x" * 300
    legal = "/".join(["e" * 250] * 20)  # every element fits a file name, the whole exceeds PATH_MAX
    paths = [
        f"/{M}/{long}/@v/list",
        f"/{M}/@v/{long}.info",
        f"/{M}/@v/v1.0.0-{long}.info",
        f"/{M}/@v/v1.0.0-{long}.mod",
        f"/{M}/{long}/@latest",
        f"/sumdb/{DB}/lookup/{M}/{long}@{V}",
        f"/example.com/{legal}/@v/list",
        f"/example.com/{legal}/@v/{V}.info",
        f"/{M}/{'/'.join(['e' * 250] * 16)}/@latest",
    ]
    problems = []
    for path in paths:
        r = raw_request(world.server.port, get_request(path.encode()), timeout=30)
        if r.status != 404:
            problems.append(f"{path[:60]}... ({len(path)} bytes): {r.status} {r.body[:120]!r}")
    assert not problems, "\n".join(problems)
    assert raw_request(world.server.port, get_request(f"/{M}/@v/{V}.mod".encode())).status == 200

"""Tests for upstream.proxy against a hostile mirror: drips, deadlines, content encodings, redirects.

Every mirror is real: an ``UpstreamSimulator`` on loopback (its throttle,
latency, header and body faults play the hostile mirror) or a small aiohttp
app started by the test on the test's own loop. Loop lag is measured by an
in-process aiohttp app on the SAME loop as the ``HttpUpstream``: while the
hostile answer is processed, a client keeps asking it for ``/healthz`` and
the slowest answer must stay under 50 ms. Redirect targets named by host
name are resolved by test doubles: one for aiohttp's connector (every
``*.test`` name is 127.0.0.1, so nothing leaves loopback) and one for the
redirect check (which says what the name "really" is on the internet).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import socket
import time
import zlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gomirror.errors import (
    GomirrorError,
    InvalidContent,
    UpstreamRejected,
    UpstreamTimeout,
)
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.monitor.observed import ObservedUpstream
from gomirror.storage.disk import DiskStorage
from gomirror.upstream import proxy
from gomirror.upstream.health import Health, HealthSettings
from gomirror.upstream.proxy import HttpUpstream
from gomirror.upstream.redirects import RedirectPolicy, is_internal
from gomirror.upstream.transfer import RateGuard, TransferLimits
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/hostile/mod", "v1.0.0"
BASE = f"/{M}/@v/{V}"
T = TypeVar("T")
LAG_LIMIT = 0.05


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    blob = random.Random(12).randbytes(120_000)  # incompressible: the zip is ~120 KB
    c.add_module(M, V, {"a.go": b"package mod\n", "data.bin": blob})
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="hostile") as s:
        yield s


@pytest.fixture
def other(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="other") as s:
        yield s


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """gzip of 600 MiB of zeros (about 600 KB): more than Go's 500 MiB zip limit once decoded."""
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [c.compress(zeros) for _ in range(600)]
    parts.append(c.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def small_bomb() -> bytes:
    """gzip of 64 MiB of spaces: four times the 16 MiB cap on small files."""
    return gzip.compress(b" " * (64 << 20), compresslevel=6)


def upstream(
    url: str,
    session: aiohttp.ClientSession,
    *,
    limits: TransferLimits | None = None,
    read_timeout: float = 5.0,
    **kw: Any,
) -> HttpUpstream:
    return HttpUpstream(
        url,
        session,
        connect_timeout=2,
        read_timeout=read_timeout,
        limits=limits or TransferLimits(),
        **kw,
    )


async def fetch(up: HttpUpstream, op: str, dst: Path | None = None) -> bytes:
    if op == "zip":
        assert dst is not None
        await up.zip(M, V, dst)
        return await asyncio.to_thread(dst.read_bytes)
    if op == "info":
        return (await up.info(M, V)).body
    if op == "mod":
        return (await up.mod(M, V)).body
    raise AssertionError(op)


# --- loop lag probe ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def app_on_this_loop(app: web.Application) -> AsyncIterator[str]:
    """Serve app on 127.0.0.1 from the running loop; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def worst_lag_while(work: Awaitable[T]) -> tuple[T | BaseException, float]:
    """Run work; meanwhile ask a same-loop /healthz over loopback; the slowest answer (s)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    async with app_on_this_loop(app) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as r:  # warm the connection first
            await r.read()
        task = asyncio.ensure_future(work)
        worst = 0.0
        pings = 0
        while not task.done() or pings < 5:
            started = time.perf_counter()
            async with session.get(url + "/healthz") as r:
                assert await r.text() == "ok"
            worst = max(worst, time.perf_counter() - started)
            pings += 1
            await asyncio.sleep(0.005)
        try:
            return task.result(), worst
        except GomirrorError as e:
            return e, worst


# --- drip, rate, deadline ------------------------------------------------------------------


def test_rate_guard_measures_over_a_sliding_window() -> None:
    now = [0.0]
    guard = RateGuard(1000, 2.0, clock=lambda: now[0])
    now[0] = 1.0
    assert guard.too_slow(10) is None  # in the grace period, however slow
    now[0] = 2.0
    assert guard.too_slow(5000) is None  # 2500 B/s over the first window
    now[0] = 4.0
    assert guard.too_slow(5100) is not None  # 100 bytes in the last 2 s
    fresh = RateGuard(1000, 2.0, clock=lambda: now[0])
    for t in range(5, 40):
        now[0] = float(t)
        assert fresh.too_slow((t - 4) * 1500) is None  # steady 1500 B/s: never too slow


@pytest.mark.parametrize("op", ["info", "zip"])
def test_a_dripping_mirror_times_out_on_the_minimum_rate(
    sim: UpstreamSimulator, tmp_path: Path, op: str
) -> None:
    """200, then one byte per second: read_timeout never fires; the rate check must."""
    sim.add_fault(f"*.{op}", bandwidth=1)
    limits = TransferLimits(min_rate=1000, rate_grace=0.5, small_deadline=60, zip_deadline=60)

    async def main() -> float:
        async with aiohttp.ClientSession() as session:
            up = upstream(sim.url, session, limits=limits, read_timeout=5)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout, match="too slow"):
                await fetch(up, op, tmp_path / "dl.zip")
            return time.monotonic() - started

    assert run(main()) < 4.0


def test_the_deadline_bounds_a_steady_transfer_above_the_minimum_rate(
    sim: UpstreamSimulator, tmp_path: Path
) -> None:
    sim.add_fault("*.zip", bandwidth=20_000)  # the ~120 KB zip would take ~6 s
    limits = TransferLimits(min_rate=1000, rate_grace=0.2, zip_deadline=1.0)

    async def main() -> float:
        async with aiohttp.ClientSession() as session:
            up = upstream(sim.url, session, limits=limits)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout, match="deadline"):
                await fetch(up, "zip", tmp_path / "dl.zip")
            return time.monotonic() - started

    assert 0.9 < run(main()) < 3.0


def test_the_deadline_covers_the_wait_for_headers(sim: UpstreamSimulator) -> None:
    sim.add_fault("*.info", latency=10)
    limits = TransferLimits(small_deadline=0.5)

    async def main() -> float:
        async with aiohttp.ClientSession() as session:
            up = upstream(sim.url, session, limits=limits, read_timeout=30)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout, match="deadline"):
                await fetch(up, "info")
            return time.monotonic() - started

    assert run(main()) < 3.0


def test_a_slow_but_steady_download_above_the_minimum_succeeds(
    sim: UpstreamSimulator, corpus: Corpus, tmp_path: Path
) -> None:
    sim.add_fault("*.zip", bandwidth=300_000)
    limits = TransferLimits(min_rate=10_000, rate_grace=0.1, zip_deadline=30)

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            return await fetch(upstream(sim.url, session, limits=limits), "zip", tmp_path / "z")

    assert run(main()) == corpus[M, V].zip


def test_a_drip_parks_the_mirror_like_any_timeout(sim: UpstreamSimulator, tmp_path: Path) -> None:
    sim.add_fault("*.info", bandwidth=1)
    limits = TransferLimits(min_rate=1000, rate_grace=0.3)
    health = Health(sim.url, HealthSettings(down_after=3))

    async def main() -> None:
        metrics = Metrics()
        storage = DiskStorage(tmp_path / "store", fsync=False)
        try:
            async with aiohttp.ClientSession() as session:
                observed = ObservedUpstream(
                    upstream(sim.url, session, limits=limits),
                    health,
                    metrics,
                    EventRecorder(storage, metrics),
                )
                with pytest.raises(UpstreamTimeout):
                    await observed.info(M, V)
        finally:
            await storage.close()

    run(main())
    assert health.down
    assert "too slow" in (health.last_error or "")


# --- content encodings ---------------------------------------------------------------------


def test_asks_for_the_identity_encoding(sim: UpstreamSimulator, tmp_path: Path) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            up = upstream(sim.url, session)
            await fetch(up, "info")
            await fetch(up, "zip", tmp_path / "z")

    run(main())
    assert [r.headers.get("Accept-Encoding") for r in sim.requests] == ["identity", "identity"]


def test_a_gzip_encoded_zip_is_refused_without_stalling_the_loop(
    sim: UpstreamSimulator, zip_bomb: bytes, tmp_path: Path
) -> None:
    sim.add_fault("*.zip", replace_body=zip_bomb, headers={"Content-Encoding": "gzip"})

    async def main() -> tuple[object, float, float]:
        async with aiohttp.ClientSession(auto_decompress=True) as session:
            up = upstream(sim.url, session)
            started = time.monotonic()
            result, lag = await worst_lag_while(fetch(up, "zip", tmp_path / "z"))
            return result, lag, time.monotonic() - started

    result, lag, took = run(main())
    assert isinstance(result, InvalidContent), result
    assert "Content-Encoding" in str(result)
    assert lag < LAG_LIMIT, f"event loop stalled {lag * 1000:.0f} ms"
    assert took < 2.0


def test_a_gzip_bomb_small_file_is_cut_at_the_cap_without_stalling_the_loop(
    sim: UpstreamSimulator, small_bomb: bytes
) -> None:
    sim.add_fault("*.mod", replace_body=small_bomb, headers={"Content-Encoding": "gzip"})

    async def main() -> tuple[object, float]:
        async with aiohttp.ClientSession(auto_decompress=True) as session:
            return await worst_lag_while(fetch(upstream(sim.url, session), "mod"))

    result, lag = run(main())
    assert isinstance(result, InvalidContent), result
    assert "too large" in str(result)
    assert lag < LAG_LIMIT, f"event loop stalled {lag * 1000:.0f} ms"


def test_a_gzip_encoded_small_file_is_decoded(sim: UpstreamSimulator, corpus: Corpus) -> None:
    info = corpus[M, V].info
    sim.add_fault("*.info", replace_body=gzip.compress(info), headers={"Content-Encoding": "gzip"})

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            return await fetch(upstream(sim.url, session), "info")

    assert run(main()) == info


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
def test_an_unknown_content_encoding_is_invalid_content(
    sim: UpstreamSimulator, encoding: str
) -> None:
    sim.add_fault("*.info", headers={"Content-Encoding": encoding})

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(InvalidContent, match="Content-Encoding"):
                await fetch(upstream(sim.url, session), "info")

    run(main())


def test_decode_handles_deflate_both_ways_multi_member_gzip_and_garbage() -> None:
    body = b"module example.com/x\n" * 100
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw.compress(body) + raw.flush()
    assert proxy._decode(zlib.compress(body), "deflate", 1 << 20, "u") == body
    assert proxy._decode(raw_deflate, "deflate", 1 << 20, "u") == body
    two = gzip.compress(body[:1000]) + gzip.compress(body[1000:])
    assert proxy._decode(two, "gzip", 1 << 20, "u") == body
    with pytest.raises(InvalidContent, match="too large"):
        proxy._decode(gzip.compress(body), "gzip", len(body) - 1, "u")
    assert proxy._decode(gzip.compress(body), "gzip", len(body), "u") == body
    for junk in (b"not gzip at all", gzip.compress(body)[:-10], b"\x1f\x8b" + b"\x00" * 50):
        with pytest.raises(InvalidContent, match="invalid gzip"):
            proxy._decode(junk, "gzip", 1 << 20, "u")


# --- redirects: the address check ----------------------------------------------------------


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_internal_addresses_are_recognised(addr: str) -> None:
    import ipaddress

    assert is_internal(ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_not_internal(addr: str) -> None:
    import ipaddress

    assert not is_internal(ipaddress.ip_address(addr))


def fake_dns(table: Mapping[str, Sequence[str]]) -> Callable[[str, int], Awaitable[Sequence[str]]]:
    """A redirect-check resolver answering from table; unknown names do not resolve."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


DNS = {
    "mirror.example": ["8.8.8.8"],
    "cdn.example": ["1.1.1.1", "2606:4700:4700::1111"],
    "intranet.example": ["10.0.0.5"],
    "mixed.example": ["1.1.1.1", "127.0.0.1"],
    "corp-mirror.example": ["10.1.1.1"],
}


def refusal(base: str, current: str, target: str, hop: int = 1, mode: str = "safe") -> str | None:
    from yarl import URL

    policy = RedirectPolicy(URL(base), mode, fake_dns(DNS))
    return run(policy.refusal(URL(current), URL(target), hop))


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://cdn.example/x.zip", "https to insecure http"),
        ("https://10.0.0.1/x.zip", "internal address"),
        ("https://127.0.0.1:6379/", "internal address"),
        ("https://[::1]/", "internal address"),
        ("https://169.254.169.254/latest/meta-data/", "internal address"),
        ("https://intranet.example/x", "internal address"),
        ("https://mixed.example/x", "internal address"),
        ("https://nowhere.example/x", "does not resolve"),
        ("ftp://cdn.example/x", "unsupported"),
        ("file:///etc/passwd", "unsupported"),
    ],
)
def test_safe_mode_refuses(target: str, why: str) -> None:
    got = refusal("https://mirror.example", "https://mirror.example/m/@v/v1.zip", target)
    assert got is not None and why in got


def test_safe_mode_allows_public_hosts_upgrades_and_internal_targets_of_internal_mirrors() -> None:
    here = "https://mirror.example/m/@v/v1.zip"
    assert refusal("https://mirror.example", here, "https://cdn.example/x.zip") is None
    assert (
        refusal("http://mirror.example", "http://mirror.example/a", "https://cdn.example/") is None
    )
    assert refusal("http://mirror.example", "http://mirror.example/a", "http://1.1.1.1/") is None
    corp = "http://corp-mirror.example"
    assert refusal(corp, corp + "/a", "http://intranet.example/a") is None
    assert refusal("http://10.2.3.4", "http://10.2.3.4/a", "http://127.0.0.1:9/a") is None
    # Still never https -> http, whoever the mirror is.
    assert refusal("https://10.2.3.4", "https://10.2.3.4/a", "http://10.2.3.4/a") is not None


def test_hops_are_bounded_and_modes_narrow_what_is_followed() -> None:
    base, here = "https://mirror.example", "https://mirror.example/a"
    assert refusal(base, here, "https://cdn.example/", hop=3) is None
    got = refusal(base, here, "https://cdn.example/", hop=4)
    assert got is not None and "more than 3 redirects" in got
    assert refusal(base, here, "https://mirror.example/b", mode="same-host") is None
    got = refusal(base, here, "https://cdn.example/", mode="same-host")
    assert got is not None and "same-host" in got
    assert refusal(base, here, "https://mirror.example:8443/b", mode="same-host") is not None
    got = refusal(base, here, "https://mirror.example/b", mode="none")
    assert got is not None and "none" in got
    with pytest.raises(ValueError):
        RedirectPolicy(__import__("yarl").URL(base), "anywhere")


# --- redirects: integration ----------------------------------------------------------------


class LoopbackNames(AbstractResolver):
    """aiohttp connector resolver: every ``*.test`` name is 127.0.0.1 (nothing leaves loopback)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not host.endswith(".test"):
            raise OSError(f"test resolver: unknown host {host}")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


def named_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackNames()))


def test_a_loopback_mirror_may_redirect_to_another_loopback_port(
    sim: UpstreamSimulator, other: UpstreamSimulator, corpus: Corpus, tmp_path: Path
) -> None:
    """The mirror itself is on loopback, so an internal target is allowed."""
    sim.fail("*.zip", 302, headers={"Location": other.url + BASE + ".zip"})

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            return await fetch(upstream(sim.url, session), "zip", tmp_path / "z")

    assert run(main()) == corpus[M, V].zip
    assert other.count("*.zip") == 1


def test_a_public_mirror_may_not_redirect_to_loopback_or_internal_names(
    sim: UpstreamSimulator, other: UpstreamSimulator, tmp_path: Path
) -> None:
    """A mirror configured by a public name: loopback and internal targets are refused unasked."""
    dns = fake_dns({"mirror.test": ["8.8.8.8"], "intranet.test": ["10.9.8.7"]})
    targets = [
        f"http://127.0.0.1:{other.port}{BASE}.zip",
        f"http://intranet.test:{other.port}{BASE}.zip",
        f"http://localhost.:{other.port}{BASE}.zip",
    ]

    async def main() -> list[str]:
        out = []
        async with named_session() as session:
            up = upstream(f"http://mirror.test:{sim.port}", session, resolve=dns)
            for target in targets:
                rule = sim.fail("*.zip", 302, headers={"Location": target})
                with pytest.raises(UpstreamRejected) as info:
                    await fetch(up, "zip", tmp_path / "z")
                out.append(str(info.value))
                sim.remove_fault(rule)
        return out

    messages = run(main())
    assert all("redirect to" in m for m in messages), messages
    assert "internal address" in messages[0] and "internal address" in messages[1]
    assert other.count() == 0  # refused before any request was made


def test_a_public_mirror_may_redirect_to_a_public_name(
    sim: UpstreamSimulator, other: UpstreamSimulator, corpus: Corpus, tmp_path: Path
) -> None:
    dns = fake_dns({"mirror.test": ["8.8.8.8"], "cdn.test": ["1.1.1.1"]})
    sim.fail("*.zip", 302, headers={"Location": f"http://cdn.test:{other.port}{BASE}.zip"})

    async def main() -> bytes:
        async with named_session() as session:
            up = upstream(f"http://mirror.test:{sim.port}", session, resolve=dns)
            return await fetch(up, "zip", tmp_path / "z")

    assert run(main()) == corpus[M, V].zip
    assert other.count("*.zip") == 1


def redirect_app(hops: int, final: bytes) -> web.Application:
    """/r/<n> redirects to /r/<n-1> (relative Location); /r/0 answers final."""

    async def handler(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=final)
        raise web.HTTPFound(f"/r/{n - 1}")

    async def start(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(f"/r/{hops - 1}")

    app = web.Application()
    app.router.add_get("/r/{n}", handler)
    app.router.add_get("/{tail:.*}", start)
    return app


@pytest.mark.parametrize(("hops", "ok"), [(1, True), (3, True), (4, False), (20, False)])
def test_at_most_three_redirects_are_followed(hops: int, ok: bool) -> None:
    info = b'{"Version":"v1.0.0"}'

    async def main() -> None:
        async with (
            app_on_this_loop(redirect_app(hops, info)) as url,
            aiohttp.ClientSession() as session,
        ):
            up = upstream(url, session)
            if ok:
                assert await fetch(up, "info") == info
            else:
                with pytest.raises(UpstreamRejected, match="more than 3 redirects"):
                    await fetch(up, "info")

    run(main())


def test_follow_redirects_none_refuses_every_redirect(
    sim: UpstreamSimulator, other: UpstreamSimulator
) -> None:
    sim.fail("*.info", 301, headers={"Location": other.url + BASE + ".info"})

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            up = upstream(sim.url, session, follow_redirects="none")
            with pytest.raises(UpstreamRejected, match="not followed"):
                await fetch(up, "info")

    run(main())
    assert other.count() == 0


def test_credentials_do_not_follow_a_redirect_to_another_origin(
    sim: UpstreamSimulator, other: UpstreamSimulator, corpus: Corpus
) -> None:
    sim.fail("*.info", 302, headers={"Location": other.url + BASE + ".info"})

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            url = f"http://user:s3cret@127.0.0.1:{sim.port}"
            return await fetch(upstream(url, session), "info")

    assert run(main()) == corpus[M, V].info
    assert "Authorization" in sim.requests[0].headers
    assert "Authorization" not in other.requests[0].headers

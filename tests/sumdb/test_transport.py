"""test_sumdb_transport checks HttpSumdbTransport failover across routes over loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiohttp
import pytest

from gomirror.errors import Gone, NotFound
from gomirror.server.responses import error_answer
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.routes import SumdbUnavailable
from gomirror.sumdb.transport import HttpSumdbTransport, SumdbRoute, database_routes
from support.sumdb_server import MemoryStore, TestSumdb

T = TypeVar("T")
H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run(
    routes: Sequence[str | SumdbRoute],
    fn: Callable[[HttpSumdbTransport], Awaitable[T]],
    max_body: int = 1 << 20,
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


def test_every_route_failing_is_unavailable_naming_each_route() -> None:
    dead = dead_url()
    with _db() as db:
        db.set_override("/latest", b"", status=500)
        with pytest.raises(SumdbUnavailable) as exc:
            run([dead, db.url], lambda t: t.fetch("latest"))
        lines = str(exc.value).split("\n")
        assert lines[0] == "checksum database unavailable: none of its 2 routes works (latest)"
        assert lines[1].startswith(f"  {dead}: connection failed")
        assert lines[2] == f"  {db.url}: latest: status 500"
        assert lines[3].startswith("fix: ") and 'sumdb = "off"' in lines[3]
        assert not isinstance(exc.value, NotFound)


def test_oversized_body_is_rejected() -> None:
    with _db() as db:
        db.set_override("/latest", b"x" * 2000)
        with pytest.raises(SumdbUnavailable, match="larger than 1000 bytes"):
            run([db.url], lambda t: t.fetch("latest"), max_body=1000)


def test_needs_a_route() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            HttpSumdbTransport([], session)

    with pytest.raises(ValueError):
        asyncio.run(main())


def test_database_routes_probe_mirrors_but_not_the_database() -> None:
    assert database_routes("sum.golang.org", "https://sum.golang.google.cn", ["https://m"]) == [
        SumdbRoute("https://sum.golang.google.cn")
    ]
    assert database_routes("sum.golang.org", None, ["https://goproxy.cn/", "http://b/x"]) == [
        SumdbRoute("https://goproxy.cn/sumdb/sum.golang.org", probe=True),
        SumdbRoute("http://b/x/sumdb/sum.golang.org", probe=True),
        SumdbRoute("https://sum.golang.org"),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_mirror_route_counts_only_after_supported_and_the_verdict_is_cached() -> None:
    clock = Clock()
    with _db() as mirror:
        mirror.set_override("/supported", b"")

        async def main() -> list[bytes]:
            async with aiohttp.ClientSession() as session:
                t = HttpSumdbTransport(
                    [SumdbRoute(mirror.url, probe=True)], session, supported_ttl=60, clock=clock
                )
                got = [await t.fetch("latest"), await t.fetch("tile/8/0/000.p/1")]
                clock.now += 61
                got.append(await t.fetch("latest"))
                return got

        first, tile, again = asyncio.run(main())
        assert first == again == mirror.signed() and len(tile) == 32
        assert mirror.requests == [
            "/supported",
            "/latest",
            "/tile/8/0/000.p/1",
            "/supported",  # the verdict expired
            "/latest",
        ]


def test_mirror_without_the_database_is_unavailable_not_no_record() -> None:
    """Defect 11: a mirror answering 404 under /sumdb/ must not mean "no record"."""
    dead = dead_url()
    with _db() as mirror:  # has the record, but its /supported answers 404

        async def main() -> list[BaseException]:
            async with aiohttp.ClientSession() as session:
                t = HttpSumdbTransport(
                    [SumdbRoute(mirror.url, probe=True), SumdbRoute(dead)], session, name="db"
                )
                errors: list[BaseException] = []
                for _ in range(2):
                    try:
                        await t.fetch("lookup/example.com/a@v1.0.0")
                    except Exception as e:
                        errors.append(e)
                return errors

        errors = asyncio.run(main())
        assert len(errors) == 2
        for e in errors:
            assert isinstance(e, SumdbUnavailable) and not isinstance(e, NotFound)
            text = str(e)
            assert text.startswith("checksum database db unavailable: none of its 2 routes works")
            assert f"{mirror.url}: does not proxy this checksum database (supported: 404)" in text
            assert f"{dead}: connection failed" in text
            assert "goproxy.cn" in text and 'sumdb = "off"' in text
        assert mirror.requests == ["/supported"]  # probed once, never asked for the lookup


def test_not_found_from_a_supported_mirror_is_not_found() -> None:
    with _db() as mirror:
        mirror.set_override("/supported", b"")
        with pytest.raises(NotFound):
            run(
                [SumdbRoute(mirror.url, probe=True)],
                lambda t: t.fetch("lookup/example.com/zzz@v1.0.0"),
            )


def _strings(record: logging.LogRecord) -> str:
    return " ".join(str(v) for v in record.__dict__.values())


def test_credentials_in_routes_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-token"
    dead = dead_url().replace("http://", f"http://user:{secret}@")
    caplog.set_level(logging.DEBUG)
    with _db() as db, _db() as mirror:
        db.set_override("/latest", b"", status=503)
        mirror.set_override("/supported", b"", status=500)
        with_creds = db.url.replace("http://", f"http://me:{secret}@")
        mirror_creds = mirror.url.replace("http://", f"http://me:{secret}@")

        async def main() -> tuple[list[str], BaseException]:
            async with aiohttp.ClientSession() as session:
                t = HttpSumdbTransport(
                    [dead, with_creds, SumdbRoute(mirror_creds, probe=True)], session
                )
                try:
                    await t.fetch("latest")
                except Exception as e:
                    return t.route_names, e
                raise AssertionError("every route fails")

        names, err = asyncio.run(main())
    assert names == [dead.replace(f"user:{secret}@", ""), db.url, mirror.url]
    assert isinstance(err, SumdbUnavailable)
    assert secret not in str(err) and db.url in str(err)
    assert caplog.records, "failures are logged"
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in _strings(record)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        self.seen.append((db, route, what, detail))


def test_passthrough_answers_and_events_never_show_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Defect 4: userinfo of a sumdb URL stays out of 502 bodies, logs and events."""
    secret = "pa55-w0rd"
    caplog.set_level(logging.DEBUG)
    events = Events()
    with _db() as evil:
        note = evil.signed()
        evil.set_override("/latest", note.replace(b"tree\n", b"tree\n1", 1))  # signature breaks
        evil.set_override("/lookup/example.com/a@v1.0.0", b"", status=503)
        evil.set_override("/tile/8/0/000.p/1", b"", status=503)
        creds = evil.url.replace("http://", f"http://u:{secret}@")
        dead = dead_url().replace("http://", f"http://u:{secret}@")

        async def main() -> list[BaseException]:
            async with aiohttp.ClientSession() as session:
                transport = HttpSumdbTransport([creds, SumdbRoute(dead, probe=True)], session)
                client = SumdbClient(evil.verifier_key, transport, MemoryStore(), events=events)
                p = SumdbPassThrough([client])
                errors: list[BaseException] = []
                for path in ("latest", "lookup/example.com/a@v1.0.0", "tile/8/0/000.p/1"):
                    try:
                        await p.handle_path(f"{evil.name}/{path}")
                    except Exception as e:
                        errors.append(e)
                return errors

        errors = asyncio.run(main())
    assert len(errors) == 3
    for e in errors:
        body = error_answer(e).body.decode()
        assert error_answer(e).status == 502
        assert secret not in str(e) and secret not in body
        assert evil.url in str(e)
    assert events.seen and all(secret not in " ".join(ev) for ev in events.seen)
    assert events.seen[0][1] == evil.url
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in _strings(record)

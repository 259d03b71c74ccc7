"""server.fastpath against the real tree: the same bytes as aiohttp, handovers, limits, bookkeeping.

Two servers share one cache: one with ``fast_path`` off (the reference: every
answer from aiohttp) and one with it on. Raw HTTP/1.1 over loopback sockets
compares them byte for byte (status line, every header in order, body; only
the ``Date`` value may differ), for each kind of answer, GET and HEAD. Then:
a miss on a keep-alive connection is handed to aiohttp and the connection
keeps working; pipelined requests are answered in order across a handover;
malformed input is aiohttp's 400; a purged file is never served from memory;
a zip larger than the socket buffers goes out by direct ``sendfile`` to a slow
reader, a replaced zip is never sent from a kept descriptor, and a transport the
protocol cannot ``sendfile`` to uses ``loop.sendfile``; idle connections are
closed and the connection limit holds; metrics, the
access log and the popularity count see fast-path answers; and the real go
command downloads a graph through a warm server with the fast path on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gomirror import app
from gomirror.config import load_config
from gomirror.server import fastpath
from gomirror.server.fastpath import FastPath
from gomirror.storage.lastuse import UseRecorder
from support.corpus import Corpus
from support.gorunner import GoRunner
from support.simulator import UpstreamSimulator

M, V = "example.com/fast/Mod", "v1.2.0"  # an upper-case letter: the path is case-escaped
EM = "example.com/fast/!mod"
OTHER = "example.com/fast/other"
BIG = "example.com/fast/big"  # a zip larger than the socket buffers: sent in several rounds
BIG_ZIP = f"/{BIG}/@v/v1.0.0.zip"
DATE = re.compile(rb"^Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n", "big.bin": random.Random(7).randbytes(300_000)})
    c.add_module(M, "v1.1.0", {"a.go": b"package mod\n"})
    c.add_module(OTHER, "v1.0.0", {"o.go": b"package other\n"})
    c.add_module(BIG, "v1.0.0", {"big.bin": random.Random(8).randbytes(6 << 20)})
    c.synthetic_graph(8, prefix="example.com/fastgraph", go_version="1.16", seed=3)
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="mirror") as s:
        yield s


@dataclass
class Served:
    port: int
    parts: app.Parts
    fast: FastPath | None


@asynccontextmanager
async def serving(
    tmp: Path, upstream: str, monkeypatch: pytest.MonkeyPatch, **more: Any
) -> AsyncIterator[Served]:
    made: list[FastPath] = []
    real = app.fast_path

    def capture(parts: app.Parts) -> FastPath:
        made.append(real(parts))
        return made[-1]

    monkeypatch.setattr(app, "fast_path", capture)
    overrides: dict[str, Any] = {
        "cache_dir": str(tmp / "cache"),
        "upstream": upstream,
        "sumdb": "off",
        "listen": "127.0.0.1:0",
        "access_log": "false",
        "monitor": "false",
        **more,
    }
    cfg = load_config(env={}, overrides=overrides)
    async with app.build(cfg) as parts, app.serve(parts) as port:
        yield Served(port, parts, made[-1] if made else None)


@dataclass
class Raw:
    head: list[bytes]  # status line, then header lines, as sent
    body: bytes

    @property
    def status(self) -> int:
        return int(self.head[0].split()[1])

    def header(self, name: str) -> str:
        for line in self.head[1:]:
            k, _, v = line.partition(b": ")
            if k.decode().lower() == name.lower():
                return v.decode()
        raise KeyError(name)

    def comparable(self) -> list[bytes]:
        """The head with the Date value checked and blanked (it is the only header allowed to differ)."""
        out = []
        for line in self.head:
            if line.startswith(b"Date: "):
                assert DATE.match(line), line
                line = b"Date: -"
            out.append(line)
        return out


class Conn:
    """One keep-alive client connection speaking raw HTTP/1.1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, *, head_only: bool = False) -> Raw:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = raw[:-4].split(b"\r\n")
        resp = Raw(lines, b"")
        if not head_only:
            resp.body = await asyncio.wait_for(
                self.reader.readexactly(int(resp.header("Content-Length"))), 10
            )
        return resp

    async def ask(self, path: str, method: str = "GET", extra: bytes = b"") -> Raw:
        await self.send(request(path, method, extra))
        return await self.read(head_only=method == "HEAD")

    async def closed_by_server(self, within: float) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), within) == b""
        except (TimeoutError, ConnectionResetError):
            return False

    def close(self) -> None:
        self.writer.close()


def request(path: str, method: str = "GET", extra: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + extra + b"\r\n"


PATHS = {
    "info": f"/{EM}/@v/{V}.info",
    "mod": f"/{EM}/@v/{V}.mod",
    "zip": f"/{EM}/@v/{V}.zip",
    "small-zip": f"/{EM}/@v/v1.1.0.zip",  # sent with its head in one write, not sendfile
    "list": f"/{EM}/@v/list",
    "latest": f"/{EM}/@latest",
}


async def warm_answers(port: int, method: str) -> dict[str, Raw]:
    conn = await Conn.open(port)
    try:
        return {kind: await conn.ask(path, method) for kind, path in PATHS.items()}
    finally:
        conn.close()


def test_fast_answers_are_byte_identical_to_aiohttp(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch, fast_path="false") as ref:
            assert ref.fast is None
            await warm_answers(ref.port, "GET")  # fills the cache
            want = {m: await warm_answers(ref.port, m) for m in ("GET", "HEAD")}
        async with serving(tmp_path, "off", monkeypatch) as srv:
            assert srv.fast is not None
            await warm_answers(srv.port, "GET")  # aiohttp answers, the fast path learns
            assert len(srv.fast.table) == len(PATHS)
            before = srv.fast.answered
            got = {m: await warm_answers(srv.port, m) for m in ("GET", "HEAD")}
            assert srv.fast.answered - before == 2 * len(PATHS)
        for method in ("GET", "HEAD"):
            for kind in PATHS:
                a, b = want[method][kind], got[method][kind]
                assert a.header("X-Gomirror-Cache") == "hit"
                if kind in ("list", "latest"):
                    # max-age counts down with the file's age; both computed the same way
                    ca, cb = a.header("Cache-Control"), b.header("Cache-Control")
                    assert re.fullmatch(r"public, max-age=\d+", cb), cb
                    assert abs(int(ca.split("=")[1]) - int(cb.split("=")[1])) <= 2
                    a.head = [ln for ln in a.head if not ln.startswith(b"Cache-Control")]
                    b.head = [ln for ln in b.head if not ln.startswith(b"Cache-Control")]
                assert a.comparable() == b.comparable(), (method, kind)
                assert a.body == b.body, (method, kind)
        assert len(got["GET"]["zip"].body) > 300_000
        assert got["HEAD"]["zip"].body == b""

    asyncio.run(main())


def test_miss_on_a_keepalive_connection_is_handed_over_and_the_connection_keeps_working(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            assert srv.fast is not None
            await warm_answers(srv.port, "GET")
            conn = await Conn.open(srv.port)
            first = await conn.ask(PATHS["mod"])  # fast path
            assert srv.fast.handed_over == 1  # only the warming connection so far
            miss = await conn.ask(f"/{EM}/@v/v1.1.0.info")  # not hot: handover
            assert srv.fast.handed_over == 2
            assert miss.status == 200 and b'"v1.1.0"' in miss.body
            assert miss.header("X-Gomirror-Cache") == "miss"
            # aiohttp answered and is idle again: the fast path answers the next hot request.
            before = srv.fast.answered
            again = await conn.ask(PATHS["mod"])
            assert again.comparable() == first.comparable() and again.body == first.body
            z = await conn.ask(PATHS["zip"])
            assert z.status == 200 and len(z.body) == int(z.header("Content-Length"))
            assert srv.fast.answered - before == 2
            health = await conn.ask("/healthz")
            assert health.status == 200 and health.body == b"ok\n"
            assert (await conn.ask(PATHS["info"])).status == 200
            assert srv.fast.answered - before == 3
            # A request with a body cannot be framed by the fast path: aiohttp's for good.
            await conn.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
            assert (await conn.read()).body == b"ok\n"
            assert (await conn.ask(PATHS["info"])).status == 200
            assert (await conn.ask(PATHS["zip"])).body == z.body
            assert srv.fast.answered - before == 3
            conn.close()

    asyncio.run(main())


def test_pipelined_requests_are_answered_in_order_across_a_handover(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            assert srv.fast is not None
            want = await warm_answers(srv.port, "GET")
            order = ["info", "zip", "mod", "zip", "list", "info"]
            conn = await Conn.open(srv.port)
            before = srv.fast.answered
            # Everything in one write, a HEAD and a miss in the middle.
            data = b"".join(request(PATHS[k]) for k in order[:3])
            data += request(PATHS["mod"], "HEAD") + request("/healthz")
            data += b"".join(request(PATHS[k]) for k in order[3:])
            await conn.send(data)
            got = [await conn.read() for _ in order[:3]]
            head = await conn.read(head_only=True)
            health = await conn.read()
            got += [await conn.read() for _ in order[3:]]
            assert [r.body for r in got] == [want[k].body for k in order]
            assert all(r.status == 200 for r in got)
            assert head.status == 200 and head.header("Content-Length") == str(
                len(want["mod"].body)
            )
            assert health.body == b"ok\n"
            # The four before the miss came from the fast path; aiohttp answered the miss
            # and what arrived with it (the fast path may take over again once it is idle).
            assert srv.fast.answered - before >= 4
            conn.close()

    asyncio.run(main())


def test_unusual_and_malformed_requests_go_to_aiohttp(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            fast = srv.fast
            assert fast is not None
            await warm_answers(srv.port, "GET")
            zip_path = PATHS["zip"]
            size = int((await warm_answers(srv.port, "HEAD"))["zip"].header("Content-Length"))
            cases: list[tuple[bytes, int]] = [
                (request(zip_path, extra=b"Range: bytes=0-9\r\n"), 206),
                (request(PATHS["mod"], extra=b"If-None-Match: *\r\n"), 200),
                (request(zip_path, extra=b"no colon here\r\n"), 400),
                (request(PATHS["mod"], extra=b"Transfer-Encoding: chunked\r\n") + b"zz\r\n", 400),
                (f"GET {PATHS['mod']} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".encode(), 400),
                (f"GET {PATHS['mod']} HTTP/9.9\r\nHost: a\r\n\r\n".encode(), 400),
                (f"GET {PATHS['mod']}\x01 HTTP/1.1\r\nHost: a\r\n\r\n".encode(), 400),
            ]
            for data, status in cases:
                before = fast.answered
                conn = await Conn.open(srv.port)
                # A hot request first, so the odd one arrives on a fast-path connection.
                assert (await conn.ask(PATHS["info"])).status == 200
                await conn.send(data)
                got = await conn.read()
                assert got.status == status, (data, got.head, got.body)
                assert fast.answered - before == 1, data
                if status == 206:
                    assert got.header("Content-Range") == f"bytes 0-9/{size}"
                if status == 400:
                    assert len(got.body) < 200
                conn.close()

    asyncio.run(main())


def test_a_purged_file_is_not_served_from_memory(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small immutable files are re-checked every RECHECK_SECONDS; 0 makes that every answer.
    monkeypatch.setattr(fastpath, "RECHECK_SECONDS", 0.0)

    async def main() -> None:
        async with serving(tmp_path, "off", monkeypatch) as srv:
            assert srv.fast is not None
            conn = await Conn.open(srv.port)
            assert (await conn.ask(PATHS["mod"])).status == 404  # upstream off, nothing cached
            conn.close()
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            assert srv.fast is not None
            await warm_answers(srv.port, "GET")
            cache = tmp_path / "cache"
            for kind in ("mod", "zip"):
                (cache / PATHS[kind].lstrip("/")).unlink()
            conn = await Conn.open(srv.port)
            before = srv.fast.answered
            for kind in ("mod", "zip"):
                got = await conn.ask(PATHS[kind])
                assert got.status == 200 and got.header("X-Gomirror-Cache") == "miss", kind
            assert srv.fast.answered == before
            # Learnt again from that answer; a HEAD checks the file as a GET does.
            assert PATHS["zip"].encode() in srv.fast.table
            (cache / PATHS["zip"].lstrip("/")).unlink()
            got = await conn.ask(PATHS["zip"], "HEAD")
            assert got.status == 200 and got.header("X-Gomirror-Cache") == "miss"
            assert srv.fast.answered == before
            conn.close()

    asyncio.run(main())


def test_a_large_zip_to_a_slow_reader_is_sent_whole_and_then_the_next_answer(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            fast = srv.fast
            assert fast is not None
            await warm_answers(srv.port, "GET")
            want = (await warm_answers(srv.port, "GET"))["mod"]  # a hit, as the fast path sends it
            conn = await Conn.open(srv.port)
            first = await conn.ask(BIG_ZIP)  # aiohttp answers; the fast path learns
            assert first.header("X-Gomirror-Cache") == "miss"
            waits, sends = fast.writer_waits, fast.direct_sends
            # Pipelined: the zip, then a small answer that must come after all its bytes.
            await conn.send(request(BIG_ZIP) + request(PATHS["mod"]))
            deadline = time.monotonic() + 10
            while fast.writer_waits == waits:  # nothing read yet: the socket fills up
                assert time.monotonic() < deadline, "the send never waited for the socket"
                await asyncio.sleep(0.01)
            # More requests than the fast path buffers while a send is under way.
            more = 200
            await conn.send(request(PATHS["mod"]) * more)
            got = await conn.read()
            assert got.status == 200 and got.header("X-Gomirror-Cache") == "hit"
            assert got.body == first.body and len(got.body) > 6 << 20
            for _ in range(1 + more):
                nxt = await conn.read()
                assert nxt.comparable() == want.comparable() and nxt.body == want.body
            assert fast.direct_sends == sends + 1
            conn.close()

    asyncio.run(main())


def test_a_replaced_zip_is_not_sent_from_a_kept_descriptor(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            fast = srv.fast
            assert fast is not None
            old = (await warm_answers(srv.port, "GET"))["zip"].body
            conn = await Conn.open(srv.port)
            assert (await conn.ask(PATHS["zip"])).body == old  # from a kept descriptor now
            assert len(fast.files) >= 1
            file = tmp_path / "cache" / PATHS["zip"].lstrip("/")
            st = file.stat()
            new = bytes(b ^ 0xFF for b in old)  # same size, and the same mtime below
            tmp = file.with_name("replacement.tmp")
            tmp.write_bytes(new)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            tmp.replace(file)
            answered = fast.answered
            got = await conn.ask(PATHS["zip"])
            assert fast.answered == answered  # not answered here: the inode changed
            assert got.body != old
            if got.status == 200:
                assert got.body == new
            conn.close()

    asyncio.run(main())


def test_a_purged_zip_does_not_stay_open(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "SWEEP_SECONDS", 0.05)

    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            fast = srv.fast
            assert fast is not None
            await warm_answers(srv.port, "GET")
            await warm_answers(srv.port, "GET")  # both zips from kept descriptors
            assert len(fast.files) == 2
            (tmp_path / "cache" / PATHS["zip"].lstrip("/")).unlink()
            deadline = time.monotonic() + 5
            while len(fast.files) != 1:  # closed by the sweep, with no request for it
                assert time.monotonic() < deadline, "the purged zip's descriptor stayed open"
                await asyncio.sleep(0.01)

    asyncio.run(main())


def test_zips_use_loop_sendfile_where_the_protocol_cannot_sendfile(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "direct_socket", lambda transport, loop: (-1, False))

    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            fast = srv.fast
            assert fast is not None
            want = await warm_answers(srv.port, "GET")
            answered = fast.answered
            got = await warm_answers(srv.port, "GET")
            assert fast.answered - answered == len(PATHS)
            assert fast.direct_sends == 0
            for kind in PATHS:
                assert got[kind].header("X-Gomirror-Cache") == "hit", kind
                a = [ln for ln in want[kind].comparable() if not ln.startswith(b"X-Gomirror-Cache")]
                b = [ln for ln in got[kind].comparable() if not ln.startswith(b"X-Gomirror-Cache")]
                if kind in ("list", "latest"):  # max-age counts down
                    a = [ln for ln in a if not ln.startswith(b"Cache-Control")]
                    b = [ln for ln in b if not ln.startswith(b"Cache-Control")]
                assert a == b, kind
                assert got[kind].body == want[kind].body, kind

    asyncio.run(main())


def test_idle_and_dribbling_connections_are_closed_and_the_limit_holds(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        more = {"idle_timeout": "0.5", "max_connections": "4"}
        async with serving(tmp_path, sim.url, monkeypatch, **more) as srv:
            assert srv.fast is not None
            await warm_answers(srv.port, "GET")
            idle = await Conn.open(srv.port)
            answered = await Conn.open(srv.port)
            assert (await answered.ask(PATHS["info"])).status == 200
            dribbler = await Conn.open(srv.port)
            await dribbler.send(request(PATHS["info"])[:-2])  # head never completed
            shared = await Conn.open(srv.port)  # aiohttp answered a miss here: it counts there
            assert (await shared.ask("/healthz")).status == 200
            assert (await shared.ask(PATHS["info"])).status == 200
            # Four connections are open (three owned by the fast path): the fifth is refused.
            refused = await Conn.open(srv.port)
            busy = await refused.read()
            assert busy.status == 503 and busy.header("Retry-After") == "1"
            started = time.monotonic()
            for c in (idle, answered, dribbler, shared):
                assert await c.closed_by_server(3.0)
            assert time.monotonic() - started < 3.0
            ok = await Conn.open(srv.port)
            assert (await ok.ask(PATHS["info"])).status == 200
            for c in (idle, answered, dribbler, shared, refused, ok):
                c.close()

    asyncio.run(main())


def test_metrics_access_log_and_popularity_count_fast_answers(
    tmp_path: Path,
    sim: UpstreamSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def count(text: str, endpoint: str) -> float:
        m = re.search(
            rf'^gomirror_requests_total{{endpoint="{endpoint}",status="200"}} (\S+)$', text, re.M
        )
        return float(m.group(1)) if m else 0.0

    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch, access_log="true") as srv:
            assert srv.fast is not None
            await warm_answers(srv.port, "GET")
            conn = await Conn.open(srv.port)
            for _ in range(7):
                assert (await conn.ask(PATHS["mod"])).status == 200
            assert srv.fast.answered == 7
            conn.close()
            deadline = time.monotonic() + 5
            async with aiohttp.ClientSession() as s:
                while True:
                    async with s.get(f"http://127.0.0.1:{srv.port}/metrics") as r:
                        text = await r.text()
                    if count(text, "mod") >= 8 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)  # polling /metrics until the batch is flushed
            assert count(text, "mod") == 8, text
            assert re.search(r'^gomirror_cache_total{endpoint="mod",result="hit"} 7.0$', text, re.M)
            assert re.search(
                r'^gomirror_request_duration_seconds_count{endpoint="mod"} 8.0$', text, re.M
            ), text
            assert srv.parts.popularity.top(1) == [M]
        lines = [r for r in caplog.records if r.name == "gomirror.access"]
        fast_lines = [r for r in lines if getattr(r, "path", "") == PATHS["mod"]]
        assert len(fast_lines) == 8
        assert all(getattr(r, "status", 0) == 200 for r in fast_lines)

    caplog.set_level(logging.INFO, logger="gomirror.access")
    asyncio.run(main())


def test_fast_answers_count_as_uses_for_cache_gc(
    tmp_path: Path, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version served only from the hot table is still in use: gc's last-use record hears of it."""
    touched: list[str] = []
    real_touch = UseRecorder.touch

    def spy(self: UseRecorder, key: str) -> None:
        touched.append(key)
        real_touch(self, key)

    monkeypatch.setattr(UseRecorder, "touch", spy)

    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            assert srv.fast is not None
            await warm_answers(srv.port, "GET")
            touched.clear()
            conn = await Conn.open(srv.port)
            for kind in ("mod", "zip", "info"):
                assert (await conn.ask(PATHS[kind])).status == 200
            conn.close()
            assert srv.fast.answered == 3
            assert {f"{EM}/@v/{V}.mod", f"{EM}/@v/{V}.zip", f"{EM}/@v/{V}.info"} <= set(touched)

    asyncio.run(main())


def test_go_command_downloads_a_graph_through_a_warm_fast_path(
    tmp_path: Path, corpus: Corpus, sim: UpstreamSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = "example.com/fastgraph/m000"

    async def main() -> None:
        async with serving(tmp_path, sim.url, monkeypatch) as srv:
            assert srv.fast is not None
            url = f"http://127.0.0.1:{srv.port}"
            results = []
            for n in range(2):  # cold, then warm: the second go command is served from memory
                go = GoRunner(tmp_path / f"go{n}", url)
                app_dir = tmp_path / f"app{n}"
                go.init_module(app_dir, "example.com/app", "1.16", {root: "v1.0.0"})
                before = srv.fast.answered
                out = await asyncio.to_thread(go.mod_download_json, "all", cwd=app_dir)
                results.append((out, srv.fast.answered - before))
            (cold, _), (warm, fast_answers) = results
            assert len(warm) == len(cold) == 8
            assert not [m for m in warm if m.get("Error")]
            assert {m["Sum"] for m in warm} == {m["Sum"] for m in cold}
            for m in warm:
                mv = corpus.get(m["Path"], m["Version"])
                assert mv is not None and m["Sum"] == mv.h1
            assert fast_answers >= 16  # the .mod and .zip of every module, at least

    asyncio.run(main())

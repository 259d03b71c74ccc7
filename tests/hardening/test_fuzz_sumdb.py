"""test_fuzz_sumdb fuzzes the checksum-database side: hostile routes, and client paths under /sumdb/.

A route is a small aiohttp server (``HostileRoute``) answering from an honest
twin of the log (a ``TestSumdb``: 310 records, so full and partial tiles at
two levels), except for the one path hypothesis picked (``latest``, a lookup,
a hash or data tile, full or partial), which it answers with a fault: random
bytes, the honest body flipped, cut, padded or spliced, another path's honest
body, a note or record edited, an error status, a ``Content-Encoding`` the
client did not ask for, a redirect nowhere, or a body past the size cap. An
honest ``TestSumdb`` is the second route.

Invariants, over real HTTP through ``HttpSumdbTransport`` and the verifying
client (``SumdbClient`` + ``SumdbPassThrough``), a fresh cache each example:

- with ``hostile, honest``: the answer is always the honest bytes; when the
  fault changed anything, the honest route was asked (the hostile one was
  abandoned); every rejection event names the hostile route; the cache holds
  only honest bytes;
- with the hostile route alone: the honest bytes, or a domain error the HTTP
  layer maps to 404/410/502/504 (never a 500), naming the route, first line
  short; nothing bad cached; and once the route turns honest, the same
  cache answers the honest bytes (nothing was poisoned).

Through the real server (``app.build`` + ``serve``, the hostile route as its
database): fuzzed client paths under ``/sumdb/`` (lookups, tiles, names,
escapes, junk, query strings) are never a 5xx, error bodies are short
``text/plain`` that do not echo a long element, a 200 is the database's own
answer; and a faulty route answer is a 502 (or the honest bytes), never
served or cached, with the honest answer as soon as the route recovers.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gomirror.answers import Answer
from gomirror.errors import GomirrorError, NotFound
from gomirror.server.responses import error_answer
from gomirror.sumdb.client import SumdbClient, latest_key
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.transport import HttpSumdbTransport
from hardening.kit import (
    HYPOTHESIS_WARNING,
    MAX_ERROR_BODY,
    Figures,
    InProcessGomirror,
    config,
    get_request,
    raw_request,
)
from support.sumdb_server import BackgroundServer, MemoryStore, TestSumdb
from support.vectors import group

pytestmark = pytest.mark.filterwarnings(HYPOTHESIS_WARNING)

SUMDB = group("sumdb")
NAME = SUMDB["name"]
H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
OTHER = "h1:" + "A" * 43 + "="
MODULES = 300
KEY = TestSumdb().verifier_key  # every TestSumdb() here signs with the same test key
MAX_BODY = 256 << 10  # the transport's cap in these tests (production: 4 MiB)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def honest_log() -> TestSumdb:
    db = TestSumdb()
    for r in SUMDB["records"]:
        db.add_record(r["module"], r["version"], r["text"].encode())
    for i in range(MODULES):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    return db


def targets(size: int) -> list[str]:
    full, width = divmod(size, 256)
    assert full == 1 and width > 0  # the paths below exist for a 257..511-record log
    return [
        "latest",
        "tile/8/0/000",
        f"tile/8/0/001.p/{width}",
        "tile/8/1/000.p/1",
        "tile/8/data/000",
        f"tile/8/data/001.p/{width}",
    ]


@dataclass(frozen=True)
class Fault:
    """One answer of the hostile route: status, body, headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain; charset=utf-8"),)

    def same_as(self, good: bytes) -> bool:
        plain = all(k.lower() != "content-encoding" for k, _ in self.headers)
        return self.status == 200 and self.body == good and plain


class HostileRoute:
    """Answers like its honest twin, except ``fault`` for ``fault_path`` (see the docstring)."""

    def __init__(self, twin: TestSumdb) -> None:
        self.twin = twin
        self._lock = threading.Lock()
        self._fault: tuple[str, Fault] | None = None
        self.asked: list[str] = []
        self._server = BackgroundServer(self._app)

    def set_fault(self, path: str | None, fault: Fault | None = None) -> None:
        with self._lock:
            self._fault = None if path is None or fault is None else ("/" + path, fault)
            self.asked.clear()

    async def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            self.asked.append(path)
            fault = self._fault
        if fault is not None and fault[0] == path:
            f = fault[1]
            return web.Response(status=f.status, body=f.body, headers=dict(f.headers))
        a = self.twin.answer(path)
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    def __enter__(self) -> HostileRoute:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return self._server.url


class Events:
    """A RouteEvents that remembers the routes it was told about."""

    def __init__(self) -> None:
        self.routes: list[str] = []

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        self.routes.append(route)


@dataclass
class World:
    honest: TestSumdb
    hostile: HostileRoute
    paths: list[str]
    server: InProcessGomirror
    lookups: Iterator[int] = field(default_factory=itertools.count)

    def good(self, path: str) -> bytes:
        a = self.honest.answer("/" + path)
        assert a.status == 200, (path, a)
        return a.body


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    honest = honest_log()
    twin = honest_log()
    assert twin.signed() == honest.signed()  # one log, one key: two routes to it
    with honest, HostileRoute(twin) as hostile:
        cfg = config(
            tmp_path_factory.mktemp("fuzz-sumdb") / "cache",
            "off",
            sumdb=f"{honest.verifier_key} {hostile.url}",
        )
        with InProcessGomirror(cfg) as server:
            yield World(honest, hostile, targets(honest.size), server)


# --------------------------------------------------------------------------- faults

NOTE_SEP = b"\n\n"


def _flip(good: bytes, at: int, mask: int) -> bytes:
    if not good:
        return bytes([mask])
    at %= len(good)
    return good[:at] + bytes([good[at] ^ mask]) + good[at + 1 :]


def _note_edit(good: bytes, how: str) -> bytes:
    head, sep, sigs = good.rpartition(NOTE_SEP)
    if not sep:
        return good + b"x"
    if how == "drop-signatures":
        return head + sep
    if how == "bad-signature":
        line = sigs.split(b"\n", 1)[0]
        name, _, sig = line.rpartition(b" ")
        return head + sep + name + b" " + sig[::-1] + b"\n"
    if how == "crlf":
        return good.replace(b"\n", b"\r\n")
    if how == "bigger-tree":
        lines = head.split(b"\n")
        for i, ln in enumerate(lines):
            if ln.isdigit():
                lines[i] = str(int(ln) + 1).encode()
        return b"\n".join(lines) + sep + sigs
    return good


def _record_edit(good: bytes, how: str) -> bytes:
    if how == "other-hash":
        return good.replace(H1.encode(), OTHER.encode(), 1)
    if how == "record-id":
        first, _, rest = good.partition(b"\n")
        return (str(int(first) + 1).encode() if first.isdigit() else first + b"0") + b"\n" + rest
    if how == "extra-line":
        first, _, rest = good.partition(b"\n")
        return first + b"\nexample.com/evil v1.0.0 " + OTHER.encode() + b"\n" + rest
    return good


@dataclass(frozen=True)
class Mutation:
    kind: str
    a: int = 0
    b: int = 1
    data: bytes = b""
    how: str = ""

    def apply(self, good: bytes, others: list[bytes]) -> Fault:
        k = self.kind
        if k == "flip":
            return Fault(200, _flip(good, self.a, self.b))
        if k == "cut":
            return Fault(200, good[: self.a % max(1, len(good))])
        if k == "pad":
            return Fault(200, good + self.data)
        if k == "splice":
            at = self.a % max(1, len(good))
            return Fault(200, good[:at] + self.data + good[at:])
        if k == "random":
            return Fault(200, self.data)
        if k == "swap":
            return Fault(200, others[self.a % len(others)])
        if k == "note":
            return Fault(200, _note_edit(good, self.how))
        if k == "record":
            return Fault(200, _record_edit(good, self.how))
        if k == "status":
            return Fault(self.a, self.data)
        if k == "redirect":
            return Fault(302, b"", (("Location", self.how),))
        if k == "encoded":
            body = gzip.compress(good) if self.how == "gzip" else good
            return Fault(200, body, (("Content-Encoding", self.how),))
        if k == "huge":
            return Fault(200, good + b"\0" * (MAX_BODY + self.a))
        raise AssertionError(k)


mutations = st.one_of(
    st.builds(Mutation, st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.builds(Mutation, st.just("cut"), st.integers(0, 1 << 20)),
    st.builds(Mutation, st.just("pad"), data=st.binary(min_size=1, max_size=64)),
    st.builds(
        Mutation,
        st.just("splice"),
        st.integers(0, 1 << 20),
        data=st.binary(min_size=1, max_size=32),
    ),
    st.builds(Mutation, st.just("random"), data=st.binary(max_size=4096)),
    st.builds(Mutation, st.just("swap"), st.integers(0, 100)),
    st.builds(
        Mutation,
        st.just("note"),
        how=st.sampled_from(["drop-signatures", "bad-signature", "crlf", "bigger-tree"]),
    ),
    st.builds(
        Mutation, st.just("record"), how=st.sampled_from(["other-hash", "record-id", "extra-line"])
    ),
    st.builds(
        Mutation,
        st.just("status"),
        st.sampled_from([400, 403, 404, 410, 429, 500, 502, 503]),
        data=st.binary(max_size=64),
    ),
    st.builds(
        Mutation,
        st.just("redirect"),
        how=st.sampled_from(["", "latest", "http://127.0.0.1:1/x", "file:///etc/passwd", "//"]),
    ),
    st.builds(Mutation, st.just("encoded"), how=st.sampled_from(["gzip", "deflate", "br", "x"])),
    st.builds(Mutation, st.just("huge"), st.integers(1, 1024)),
)


def pick_target(world: World, index: int) -> str:
    """A tile or latest path, or a lookup of one of the log's modules."""
    if index < len(world.paths):
        return world.paths[index]
    return f"lookup/example.com/m{index % MODULES}@v1.0.0"


def others(world: World, target: str) -> list[bytes]:
    return [world.good(p) for p in [*world.paths, "lookup/example.com/m7@v1.0.0"] if p != target]


async def pass_through(
    routes: list[str], store: MemoryStore, events: Events, path: str
) -> tuple[SumdbPassThrough, Answer | GomirrorError]:
    async with aiohttp.ClientSession() as session:
        transport = HttpSumdbTransport(routes, session, name=NAME, timeout=10, max_body=MAX_BODY)
        client = SumdbClient(KEY, transport, store, events=events)
        p = SumdbPassThrough([client])
        try:
            return p, await p.handle_path(f"{NAME}/{path}")
        except GomirrorError as e:
            return p, e


def cache_is_honest(world: World, store: MemoryStore) -> None:
    prefix = f"sumdb/{NAME}/"
    for key, data in store.data.items():
        if key == latest_key(NAME):
            assert data == world.honest.signed(), f"{key}: a non-honest head was kept"
            continue
        assert key.startswith(prefix), key
        assert data == world.good(key.removeprefix(prefix)), f"{key}: bad bytes cached"


# --------------------------------------------------------------------------- tests


@FUZZ
@given(index=st.integers(0, 40), mutation=mutations)
def test_a_hostile_route_is_abandoned_for_the_honest_one(
    world: World, figures: Figures, index: int, mutation: Mutation
) -> None:
    target = pick_target(world, index)
    good = world.good(target)
    fault = mutation.apply(good, others(world, target))
    world.hostile.set_fault(target, fault)
    world.honest.clear_requests()
    store, events = MemoryStore(), Events()
    _, got = asyncio.run(pass_through([world.hostile.url, world.honest.url], store, events, target))
    world.hostile.set_fault(None)
    assert isinstance(got, Answer), f"{target} with {mutation}: {type(got).__name__}: {got}"
    assert got.body == good, f"{target} with {mutation}: a non-honest answer was served"
    if not fault.same_as(good):
        assert "/" + target in world.honest.requests, "the hostile route was believed"
    assert set(events.routes) <= {world.hostile.url}, events.routes
    cache_is_honest(world, store)
    figures.add("cases: hostile sumdb route answers")
    figures.add("requests fuzzed")


@FUZZ
@given(index=st.integers(0, 40), mutation=mutations)
def test_a_hostile_only_route_is_a_clear_error_and_poisons_nothing(
    world: World, figures: Figures, index: int, mutation: Mutation
) -> None:
    target = pick_target(world, index)
    good = world.good(target)
    fault = mutation.apply(good, others(world, target))
    world.hostile.set_fault(target, fault)
    store, events = MemoryStore(), Events()
    try:
        _, got = asyncio.run(pass_through([world.hostile.url], store, events, target))
    finally:
        world.hostile.set_fault(None)
    if isinstance(got, Answer):
        assert got.body == good, f"{target} with {mutation}: a non-honest answer was served"
    else:
        status = error_answer(got).status
        assert status in (404, 410, 502, 504), f"{target} with {mutation}: {status}: {got}"
        first = str(got).split("\n", 1)[0]
        assert first and len(first) <= 400, first
        if not isinstance(got, NotFound):  # "not found: m@v" needs no route named
            assert world.hostile.url in str(got), f"the error does not name the route: {got}"
    cache_is_honest(world, store)
    # The route turns honest: the same cache must not stand in the way.
    _, again = asyncio.run(pass_through([world.hostile.url], store, Events(), target))
    assert isinstance(again, Answer) and again.body == good, f"poisoned by {mutation}: {again}"
    cache_is_honest(world, store)
    figures.add("cases: hostile sumdb route answers")
    figures.add("requests fuzzed", 2)


# --- through the real server ----------------------------------------------------------------


def check_answer(world: World, path: bytes, status: int, body: bytes, ctype: str) -> None:
    assert status != 0, f"no answer to {path[:200]!r}"
    assert status < 500, f"{status} for client path {path[:300]!r}: {body[:300]!r}"
    if status >= 400:
        assert ctype.startswith("text/plain"), (path[:200], ctype)
        assert len(body) <= MAX_ERROR_BODY, (path[:200], len(body))
        for element in path.split(b"/"):
            if len(element) > 300:
                assert element not in body, f"echoed a {len(element)}-byte element"
    assert not world.server.errors, world.server.errors


def plain(path: bytes) -> str | None:
    """The database path a request path names, when it is plainly one."""
    text = path.decode("utf-8", "replace").split("?", 1)[0]
    prefix = f"/sumdb/{NAME}/"
    text = unquote(text)
    if not text.startswith(prefix):
        return None
    return text[len(prefix) :]


tile_elements = st.one_of(
    st.sampled_from(["8", "0", "1", "2", "data", "000", "001", "x001", "000.p", "001.p", "-1"]),
    st.integers(-5, 1 << 40).map(str),
    st.from_regex(r"[0-9x.p/]{1,12}", fullmatch=True),
    st.text(max_size=8),
)
lookup_targets = st.one_of(
    st.integers(0, MODULES + 20).map(lambda i: f"example.com/m{i}@v1.0.0"),
    st.text(max_size=30),
    st.from_regex(r"[a-z.!/]{1,30}@v[0-9.]{1,8}", fullmatch=True),
    st.integers(256, 2000).map(lambda n: "example.com/" + "a" * n + "@v1.0.0"),
    st.sampled_from(["@", "@v1.0.0", "example.com/m1@", "example.com/m1", "..@v1.0.0"]),
)


@st.composite
def sumdb_paths(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["lookup", "tile", "latest", "other", "name"]))
    if kind == "lookup":
        rest = "lookup/" + draw(lookup_targets)
    elif kind == "tile":
        rest = "tile/" + "/".join(draw(st.lists(tile_elements, min_size=0, max_size=6)))
    elif kind == "latest":
        rest = "latest" + draw(st.sampled_from(["", "/", "/x", ".json", "%00"]))
    else:
        rest = draw(st.text(max_size=40))
    name = (
        NAME if kind != "name" else draw(st.sampled_from(["sum.golang.org", "x", "", NAME + "x"]))
    )
    path = f"/sumdb/{name}/{rest}"
    if draw(st.booleans()):
        path = quote(path, safe="/%!~@")
    path += draw(st.one_of(st.just(""), st.text(max_size=20).map(lambda s: "?" + s)))
    return path.encode("utf-8", "surrogatepass")


@FUZZ
@given(path=sumdb_paths())
def test_fuzzed_sumdb_client_paths_never_fail_the_server(
    world: World, figures: Figures, path: bytes
) -> None:
    r = raw_request(world.server.port, get_request(path))
    check_answer(world, path, r.status, r.body, r.header("Content-Type"))
    wanted = plain(path)
    if r.status == 200 and wanted is not None and wanted != "supported":
        answer = world.honest.answer("/" + wanted)
        assert answer.status == 200 and r.body == answer.body, f"{path!r}: not the log's answer"
    figures.add("cases: sumdb client paths")
    figures.add("requests fuzzed")


@FUZZ
@given(index=st.integers(0, 60), mutation=mutations)
def test_a_hostile_route_behind_the_server_is_a_502_never_served(
    world: World, figures: Figures, index: int, mutation: Mutation
) -> None:
    target = pick_target(world, index)
    good = world.good(target)
    fault = mutation.apply(good, others(world, target))
    path = f"/sumdb/{NAME}/{target}".encode()
    world.hostile.set_fault(target, fault)
    try:
        r = raw_request(world.server.port, get_request(path))
    finally:
        world.hostile.set_fault(None)
    check_fault_answer(world, path, r.status, r.body, r.header("Content-Type"), good)
    again = raw_request(world.server.port, get_request(path))
    assert again.status == 200 and again.body == good, f"after {mutation}: {again.status}"
    figures.add("cases: hostile sumdb route answers (server)")
    figures.add("requests fuzzed", 2)


def check_fault_answer(
    world: World, path: bytes, status: int, body: bytes, ctype: str, good: bytes
) -> None:
    assert status != 0 and status != 500 and status < 600, (path, status, body[:200])
    if status == 200:
        assert body == good, f"{path!r}: a non-honest answer was served"
        return
    assert status in (404, 410, 502, 504), (path, status, body[:200])
    assert ctype.startswith("text/plain") and len(body) <= MAX_ERROR_BODY, (ctype, len(body))
    assert not world.server.errors, world.server.errors

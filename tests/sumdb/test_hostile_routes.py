"""test_sumdb_hostile_routes: a route that serves bad sumdb content is caught before caching.

Two in-process routes serve the same log (two ``TestSumdb`` with the same key and
records): route ``evil`` (preferred, asked first) flips a byte in one answer,
route ``honest`` does not. The pass-through and the verifying client must
reject evil's content, report the route, fail over to honest, and cache only
honest bytes; a cached entry corrupted later is dropped and fetched again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gomirror.answers import Answer
from gomirror.errors import GomirrorError, NotFound, SumdbError
from gomirror.sumdb.client import SumdbClient, latest_key
from gomirror.sumdb.events import NoRouteEvents
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.routes import Route, SumdbUnavailable, fetch_verified
from support.sumdb_server import DirectTransport, MemoryStore, TestSumdb, go_sum_record
from support.vectors import group

SUMDB = group("sumdb")
NAME = SUMDB["name"]
H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
OTHER = "h1:" + "A" * 43 + "="


class Events:
    """A RouteEvents that remembers every rejection."""

    def __init__(self) -> None:
        self.rejected: list[tuple[str, str, str, str]] = []

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        self.rejected.append((db, route, what, detail))


class Routes:
    """A RoutedTransport over in-process test databases, the first one preferred."""

    def __init__(self, **dbs: TestSumdb) -> None:
        self.dbs = list(dbs.values())
        self.routes = [Route(i, name) for i, name in enumerate(dbs)]
        self.preferred = 0

    def order(self) -> list[Route]:
        first = self.routes[self.preferred]
        return [first] + [r for r in self.routes if r != first]

    async def fetch_from(self, route: Route, path: str) -> bytes:
        return await DirectTransport(self.dbs[route.index]).fetch(path)

    def succeeded(self, route: Route) -> None:
        self.preferred = route.index

    async def fetch(self, path: str) -> bytes:
        async def accept(body: bytes) -> bytes:
            return body

        return await fetch_verified(self, NAME, path, accept, NoRouteEvents())


def _db(n: int = 300) -> TestSumdb:
    db = TestSumdb()
    for r in SUMDB["records"]:
        db.add_record(r["module"], r["version"], r["text"].encode())
    for i in range(n):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    return db


def _flip(data: bytes, at: int = 40) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


class World:
    def __init__(self) -> None:
        self.evil, self.honest = _db(), _db()
        assert self.evil.signed() == self.honest.signed()  # the same log, the same key
        self.routes = Routes(evil=self.evil, honest=self.honest)
        self.store = MemoryStore()
        self.events = Events()

    def client(self) -> SumdbClient:
        return SumdbClient(self.honest.verifier_key, self.routes, self.store, events=self.events)

    def passthrough(self, **kw: Any) -> SumdbPassThrough:
        return SumdbPassThrough([self.client()], **kw)

    def corrupt(self, path: str) -> None:
        good = self.honest.answer("/" + path)
        assert good.status == 200
        self.evil.set_override("/" + path, _flip(good.body), content_type=good.content_type)

    def good(self, path: str) -> bytes:
        return self.honest.answer("/" + path).body


def get(p: SumdbPassThrough, path: str) -> Answer:
    return asyncio.run(p.handle_path(f"{NAME}/{path}"))


@pytest.mark.parametrize("bad", ["tile/8/0/000", "tile/8/1/000.p/1", "tile/8/0/001.p/54"])
def test_flipped_hash_tile_is_rejected_and_the_honest_route_serves(bad: str) -> None:
    w = World()
    w.corrupt(bad)
    p = w.passthrough()
    r = get(p, "tile/8/0/000")
    assert r.body == w.good("tile/8/0/000")
    assert [(db, route) for db, route, _, _ in w.events.rejected] == [(NAME, "evil")]
    assert bad in w.events.rejected[0][2]
    assert "downloaded inconsistent tile" in w.events.rejected[0][3]
    for key, data in w.store.data.items():
        if key.startswith(f"sumdb/{NAME}/tile/"):
            assert data == w.good(key.removeprefix(f"sumdb/{NAME}/")), key
    assert w.store.data[f"sumdb/{NAME}/{bad}"] == w.good(bad)
    # Served again from the cache, by this pass-through and after a restart.
    w.evil.clear_requests()
    w.honest.clear_requests()
    for again in (get(p, "tile/8/0/000"), get(w.passthrough(), "tile/8/0/000")):
        assert (again.body, again.cache) == (w.good("tile/8/0/000"), "hit")
    assert w.evil.requests == []


def test_lookup_of_a_record_in_a_flipped_tile_is_verified_through_the_honest_route() -> None:
    w = World()
    w.corrupt("tile/8/0/000")
    r = get(w.passthrough(), "lookup/example.com/m0@v1.0.0")
    assert r.body == w.good("lookup/example.com/m0@v1.0.0")
    assert w.store.data[f"sumdb/{NAME}/tile/8/0/000"] == w.good("tile/8/0/000")
    assert [e[1] for e in w.events.rejected] == ["evil"]


def test_flipped_data_tile_is_rejected() -> None:
    w = World()
    w.corrupt("tile/8/data/000")
    r = get(w.passthrough(), "tile/8/data/000")
    assert r.body == w.good("tile/8/data/000")
    assert w.store.data[f"sumdb/{NAME}/tile/8/data/000"] == r.body
    assert [(e[1], e[2]) for e in w.events.rejected] == [("evil", "tile/8/data/000")]
    partial = get(w.passthrough(), "tile/8/data/000.p/7")
    assert partial.body == w.good("tile/8/data/000.p/7")


def test_forged_record_under_a_valid_note_is_rejected() -> None:
    w = World()
    path = "lookup/example.com/m5@v1.0.0"
    good = w.good(path)
    forged = good.replace(H1.encode(), OTHER.encode(), 1)
    assert forged != good and forged.endswith(w.honest.signed())  # the note is genuine
    w.evil.set_override("/" + path, forged)
    r = get(w.passthrough(), path)
    assert (r.body, r.cache) == (good, "miss")
    assert w.store.data[f"sumdb/{NAME}/{path}"] == good
    assert [(e[1], e[2]) for e in w.events.rejected] == [("evil", path)]
    assert "cannot authenticate record data" in w.events.rejected[0][3]


def test_record_id_outside_its_note_is_rejected() -> None:
    w = World()
    path = "lookup/example.com/m5@v1.0.0"
    good = w.good(path)
    record_id, _, _ = good.partition(b"\n")
    # A genuine record and a genuine, older note that does not contain it yet.
    old = TestSumdb()
    for r in SUMDB["records"][:3]:
        old.add_record(r["module"], r["version"], r["text"].encode())
    text = go_sum_record("example.com/m5", "v1.0.0", H1, H1)
    w.evil.set_override("/" + path, record_id + b"\n" + text + b"\n" + old.signed())
    assert get(w.passthrough(), path).body == good
    assert "cannot validate record" in w.events.rejected[0][3]


def test_note_with_a_bad_signature_is_rejected() -> None:
    w = World()
    w.corrupt("latest")
    r = get(w.passthrough(), "latest")
    assert r.body == w.honest.signed()
    assert [(e[1], e[2]) for e in w.events.rejected] == [("evil", "latest")]


def test_verifying_client_fails_over_too() -> None:
    w = World()
    w.corrupt("tile/8/0/000")
    w.evil.set_override(
        "/lookup/example.com/m9@v1.0.0",
        w.good("lookup/example.com/m9@v1.0.0").replace(H1.encode(), OTHER.encode(), 1),
    )
    lines = asyncio.run(w.client().lookup("example.com/m9", "v1.0.0"))
    assert lines == [f"example.com/m9 v1.0.0 {H1}", f"example.com/m9 v1.0.0/go.mod {H1}"]
    assert {e[1] for e in w.events.rejected} == {"evil"}


def test_every_route_bad_is_an_error_naming_them_and_nothing_is_cached() -> None:
    w = World()
    w.corrupt("tile/8/0/000")
    good = w.good("tile/8/0/000")
    w.honest.set_override("/tile/8/0/000", _flip(good, 99), content_type="application/octet-stream")
    with pytest.raises(SumdbError) as exc:
        get(w.passthrough(), "tile/8/0/000")
    text = str(exc.value)
    assert text.startswith("downloaded inconsistent tile")
    assert "served by evil" in text and "honest" in text
    assert not any(k.startswith(f"sumdb/{NAME}/tile/8/0/000") for k in w.store.data)
    assert [e[1] for e in w.events.rejected] == ["evil", "honest"]


def test_cached_tile_corrupted_on_disk_is_dropped_and_refetched() -> None:
    w = World()
    key = f"sumdb/{NAME}/tile/8/0/000"
    good = w.good("tile/8/0/000")
    first = w.passthrough()
    assert get(first, "tile/8/0/000").body == good
    w.store.data[key] = _flip(w.store.data[key])
    w.honest.clear_requests()
    w.evil.clear_requests()
    # The same pass-through (which authenticated these bytes before) notices the change;
    # a restarted one finds the repaired copy.
    for p in (first, w.passthrough()):
        assert get(p, "tile/8/0/000").body == good
    assert w.store.data[key] == good
    assert w.evil.requests + w.honest.requests == ["/tile/8/0/000"]  # fetched exactly once
    assert w.events.rejected == []  # the cache, not a route, was at fault


def test_cached_root_tile_corrupted_is_dropped_and_refetched() -> None:
    w = World()
    key = f"sumdb/{NAME}/tile/8/0/001.p/54"
    assert get(w.passthrough(), "tile/8/0/000").cache == "miss"
    w.store.data[key] = _flip(w.store.data[key])
    assert get(w.passthrough(), "tile/8/0/000").body == w.good("tile/8/0/000")
    assert w.store.data[key] == w.good("tile/8/0/001.p/54")
    assert w.events.rejected == []


def test_cached_lookup_corrupted_is_dropped_and_refetched() -> None:
    w = World()
    path = "lookup/example.com/m3@v1.0.0"
    key = f"sumdb/{NAME}/{path}"
    get(w.passthrough(), path)
    w.store.data[key] = w.store.data[key].replace(H1.encode(), OTHER.encode(), 1)
    r = get(w.passthrough(), path)
    assert (r.body, r.cache) == (w.good(path), "miss")
    assert w.store.data[key] == w.good(path)


def test_unreadable_persisted_head_is_ignored() -> None:
    w = World()
    get(w.passthrough(), "latest")
    w.store.data[latest_key(NAME)] = _flip(w.store.data[latest_key(NAME)], 25)
    assert get(w.passthrough(), "lookup/example.com/m3@v1.0.0").body
    assert w.store.data[latest_key(NAME)] == w.honest.signed()


def test_domain_errors_only() -> None:
    """Routes that are down or lack a path give domain errors, never anything else."""
    w = World()
    for db in (w.evil, w.honest):
        db.set_override("/tile/8/0/000", b"", status=503)
    with pytest.raises(SumdbUnavailable):
        get(w.passthrough(), "tile/8/0/000")
    with pytest.raises(NotFound):
        get(w.passthrough(), "lookup/example.com/nope@v1.0.0")
    with pytest.raises(GomirrorError):
        get(w.passthrough(), "lookup/x@v1")

"""test_lookup_identity: a genuine record of another module is not an answer for this one.

(And an empty ``latest`` is not "no tree head yet": the last test.)

Found by tests/hardening/test_fuzz_sumdb.py: a route that answers the lookup of
``m6`` with the (authentic, signed, included) lookup of ``m7`` passed every
check, and was cached under ``m6``, so every later lookup of ``m6`` served
``m7``'s record, also after a restart and after the route turned honest. The
response must name the module version asked for; otherwise the route is
rejected (an event names it) and the next route is asked.
"""

from __future__ import annotations

import asyncio

import pytest

from gomirror.errors import SumdbError
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.events import NoRouteEvents
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.routes import Route, fetch_verified
from support.sumdb_server import DirectTransport, MemoryStore, TestSumdb

H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
ASKED, OTHER = "lookup/example.com/m6@v1.0.0", "lookup/example.com/m7@v1.0.0"


def _db() -> TestSumdb:
    db = TestSumdb()
    for i in range(20):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    return db


class Routes:
    def __init__(self, *dbs: TestSumdb) -> None:
        self.dbs = dbs
        self.rejected: list[tuple[str, str]] = []

    def order(self) -> list[Route]:
        return [Route(i, f"route{i}") for i in range(len(self.dbs))]

    async def fetch_from(self, route: Route, path: str) -> bytes:
        return await DirectTransport(self.dbs[route.index]).fetch(path)

    def succeeded(self, route: Route) -> None:
        return None

    async def fetch(self, path: str) -> bytes:
        async def accept(body: bytes) -> bytes:
            return body

        return await fetch_verified(self, "db", path, accept, NoRouteEvents())

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        self.rejected.append((route, detail))


def test_another_modules_record_is_rejected_and_the_next_route_answers() -> None:
    evil, honest = _db(), _db()
    evil.set_override("/" + ASKED, evil.answer("/" + OTHER).body)
    routes, store = Routes(evil, honest), MemoryStore()
    client = SumdbClient(honest.verifier_key, routes, store, events=routes)
    answer = asyncio.run(SumdbPassThrough([client]).handle_path(f"{honest.name}/{ASKED}"))
    assert answer.body == honest.answer("/" + ASKED).body
    assert store.data[f"sumdb/{honest.name}/{ASKED}"] == answer.body
    [(route, detail)] = routes.rejected
    assert route == "route0" and "not the record of example.com/m6@v1.0.0" in detail


def test_another_modules_record_from_the_only_route_is_an_error_and_not_cached() -> None:
    evil = _db()
    evil.set_override("/" + ASKED, evil.answer("/" + OTHER).body)
    store = MemoryStore()
    client = SumdbClient(evil.verifier_key, Routes(evil), store)
    with pytest.raises(SumdbError, match=r"not the record of example\.com/m6@v1\.0\.0"):
        asyncio.run(client.lookup("example.com/m6", "v1.0.0"))
    assert not any("m6" in k for k in store.data)
    evil.clear_overrides()
    lines = asyncio.run(client.lookup("example.com/m6", "v1.0.0"))
    assert lines == [f"example.com/m6 v1.0.0 {H1}", f"example.com/m6 v1.0.0/go.mod {H1}"]


def test_a_cached_record_of_another_module_is_dropped_and_refetched() -> None:
    db = _db()
    store = MemoryStore()
    key = f"sumdb/{db.name}/{ASKED}"
    client = SumdbClient(db.verifier_key, Routes(db), store)
    asyncio.run(client.lookup("example.com/m6", "v1.0.0"))
    store.data[key] = db.answer("/" + OTHER).body  # a poisoned copy from an older version
    fresh = SumdbClient(db.verifier_key, Routes(db), store)
    lines = asyncio.run(fresh.lookup("example.com/m6", "v1.0.0"))
    assert lines[0].startswith("example.com/m6 v1.0.0 ")
    assert store.data[key] == db.answer("/" + ASKED).body


def test_an_empty_latest_from_a_route_is_rejected_not_taken_for_no_head() -> None:
    # Also found by the fuzz suite: b"" was read as "no tree head yet" and served as latest.
    evil, honest = _db(), _db()
    evil.set_override("/latest", b"")
    routes = Routes(evil, honest)
    client = SumdbClient(honest.verifier_key, routes, MemoryStore(), events=routes)
    answer = asyncio.run(SumdbPassThrough([client]).handle_path(f"{honest.name}/latest"))
    assert answer.body == honest.signed()
    assert [r for r, _ in routes.rejected] == ["route0"]

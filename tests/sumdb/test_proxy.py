"""test_sumdb_proxy checks SumdbPassThrough, the /sumdb/<name>/ pass-through with caching."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gomirror.answers import IMMUTABLE, STALE, Answer, Lifetime
from gomirror.errors import GomirrorError, InvalidRequest, NotFound, SumdbError, UpstreamError
from gomirror.server.responses import ErrorAnswer, error_answer
from gomirror.sumdb.client import SumdbClient, latest_key
from gomirror.sumdb.note import generate_key
from gomirror.sumdb.proxy import BINARY, TEXT, SumdbPassThrough
from support.sumdb_server import DirectTransport, MemoryStore, TestSumdb
from support.vectors import group

SUMDB = group("sumdb")
NAME = SUMDB["name"]
H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _db(n: int = 10, **kw: Any) -> TestSumdb:
    db = TestSumdb(**kw)
    for r in SUMDB["records"][:n]:
        db.add_record(r["module"], r["version"], r["text"].encode())
    return db


def _proxy(
    db: TestSumdb, store: MemoryStore | None = None, key: str = "", **kw: Any
) -> SumdbPassThrough:
    client = SumdbClient(
        key or db.verifier_key, DirectTransport(db), store if store is not None else MemoryStore()
    )
    return SumdbPassThrough([client], **kw)


def get(p: SumdbPassThrough, path: str) -> Answer:
    return asyncio.run(p.handle_path(path))


def fail(p: SumdbPassThrough, path: str) -> tuple[ErrorAnswer, GomirrorError]:
    """Request path, which must raise a domain error; return how the server would answer."""
    with pytest.raises(GomirrorError) as exc:
        asyncio.run(p.handle_path(path))
    return error_answer(exc.value), exc.value


def test_supported_only_for_configured_names() -> None:
    p = _proxy(_db())
    assert get(p, f"{NAME}/supported") == Answer(b"", TEXT, Lifetime.fresh(300), "hit")
    assert fail(p, "sum.golang.org/supported")[0].status == 404
    with pytest.raises(NotFound, match=r"unknown checksum database sum\.golang\.org"):
        asyncio.run(p.handle("sum.golang.org", "supported"))
    assert p.split(f"{NAME}/lookup/a@v1.0.0") == (NAME, "lookup/a@v1.0.0")
    assert p.names == [NAME]
    answer, err = fail(p, f"{NAME}/nope")
    assert answer.status == 404 and isinstance(err, NotFound)


def test_lookup_passes_bytes_through_and_caches_forever() -> None:
    db, store = _db(), MemoryStore()
    p = _proxy(db, store)
    path = "lookup/rsc.io/!q!u!o!t!e@v1.5.2"
    r = get(p, f"{NAME}/{path}")
    assert (r.content_type, r.body, r.lifetime, r.cache) == (
        TEXT,
        db.answer("/" + path).body,
        IMMUTABLE,
        "miss",
    )
    assert store.data[f"sumdb/{NAME}/{path}"] == r.body
    db.clear_requests()
    again = get(p, f"{NAME}/{path}")
    assert (again.body, again.cache) == (r.body, "hit")
    assert db.requests == []
    # A new pass-through over the same store serves it too, still without asking upstream.
    assert get(_proxy(db, store), f"{NAME}/{path}").body == r.body
    assert db.requests == []


def test_lookup_validation_and_not_found() -> None:
    db = _db()
    p = _proxy(db)
    for bad in [
        "lookup/rsc.io/quote",
        "lookup/rsc.io/quote@master",
        "lookup/rsc.io/QUOTE@v1.5.2",
        "lookup/rsc.io/quote@v1.5.2@v1.5.3",
        "lookup/rsc.io/quote@v1.5.2%2F",
    ]:
        answer, err = fail(p, f"{NAME}/{bad}")
        assert answer.status == 400 and isinstance(err, InvalidRequest), bad
    assert db.requests == []
    answer, err = fail(p, f"{NAME}/lookup/example.com/missing@v1.0.0")
    assert (answer.status, answer.body) == (404, b"not found: example.com/missing@v1.0.0\n")


def test_lookup_with_foreign_signature_is_not_cached() -> None:
    skey, _ = generate_key(NAME)
    db, store = _db(signer_key=skey), MemoryStore()
    p = _proxy(db, store, key=SUMDB["verifier_key"])
    answer, err = fail(p, f"{NAME}/lookup/rsc.io/quote@v1.5.2")
    assert answer.status == 502 and isinstance(err, SumdbError)
    assert "note has no verifiable signatures" in str(err)
    assert fail(p, f"{NAME}/latest")[0].status == 502
    assert store.data == {}


def _big_db(**kw: Any) -> TestSumdb:
    db = _db(**kw)
    for i in range(300):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    return db


def test_hash_and_data_tiles_and_truncation_from_full_tiles() -> None:
    db, store = _big_db(), MemoryStore()
    p = _proxy(db, store)
    for path, ctype in [("tile/8/0/000", BINARY), ("tile/8/data/000", TEXT)]:
        r = get(p, f"{NAME}/{path}")
        assert (r.content_type, r.body, r.lifetime) == (
            ctype,
            db.answer("/" + path).body,
            IMMUTABLE,
        )
        assert f"sumdb/{NAME}/{path}" in store.data
    db.clear_requests()
    for path in ["tile/8/0/000.p/10", "tile/8/data/000.p/10", "tile/8/0/000.p/255"]:
        r = get(p, f"{NAME}/{path}")
        assert (r.body, r.cache) == (db.answer("/" + path).body, "hit"), path
    assert db.requests == [  # only the test's own direct calls: nothing went upstream
        "/tile/8/0/000.p/10",
        "/tile/8/data/000.p/10",
        "/tile/8/0/000.p/255",
    ]
    assert get(p, f"{NAME}/tile/8/1/000.p/1").body == db.answer("/tile/8/1/000.p/1").body
    assert f"sumdb/{NAME}/tile/8/1/000.p/1" in store.data


def test_partial_tiles_are_cut_from_the_verified_tree_and_bad_paths_rejected() -> None:
    db, clock = _big_db(drop_partial_tiles=True), Clock()
    p = _proxy(db, latest_ttl=30, clock=clock)
    # The database dropped 000.p/3 (000 is full now): the answer is cut from the full tile.
    assert db.answer("/tile/8/0/000.p/3").status == 404
    r = get(p, f"{NAME}/tile/8/0/000.p/3")
    assert r.body == db.answer("/tile/8/0/000").body[: 3 * 32]
    for bad in ["tile/8/0/000.p/256", "tile/8/0/x000/000", "tile/8/x/000"]:
        assert fail(p, f"{NAME}/{bad}")[0].status == 400, bad
    # Beyond the signed tree (310 records): not found, after one refresh of latest
    # (none while the last refresh is fresh).
    db.clear_requests()
    assert fail(p, f"{NAME}/tile/8/0/002")[0].status == 404
    assert db.requests == []
    clock.now += 31
    assert fail(p, f"{NAME}/tile/8/0/002")[0].status == 404
    assert fail(p, f"{NAME}/tile/8/2/000.p/1")[0].status == 404
    assert fail(p, f"{NAME}/tile/4/0/000")[0].status == 404  # the go command uses height 8
    assert db.requests == ["/latest"]


def test_bad_tile_from_the_only_route_is_an_error_and_not_cached() -> None:
    db, store = _big_db(), MemoryStore()
    db.set_override("/tile/8/0/001.p/54", b"short", content_type=BINARY)
    p = _proxy(db, store)
    answer, err = fail(p, f"{NAME}/tile/8/0/001.p/44")
    assert answer.status == 502 and isinstance(err, SumdbError)
    assert "downloaded inconsistent tile" in str(err)
    assert set(store.data) == {latest_key(NAME)}  # the signed head is authentic; no tile is


def test_latest_is_cached_briefly_and_served_stale_on_error() -> None:
    db, clock = _db(3), Clock()
    p = _proxy(db, latest_ttl=30, clock=clock)
    first = get(p, f"{NAME}/latest")
    assert (first.body, first.lifetime, first.cache) == (db.signed(), Lifetime.fresh(30), "miss")
    for i in range(4):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    assert get(p, f"{NAME}/latest").body == first.body  # still fresh
    clock.now += 31
    assert get(p, f"{NAME}/latest").body == db.signed()
    db.set_override("/latest", b"down", status=503)
    clock.now += 31
    stale = get(p, f"{NAME}/latest")
    assert (stale.body, stale.lifetime, stale.cache) == (db.signed(), STALE, "stale")


def test_stale_latest_survives_a_restart() -> None:
    db, store = _db(3), MemoryStore()
    head = db.signed()
    assert get(_proxy(db, store), f"{NAME}/latest").body == head
    db.set_override("/latest", b"down", status=503)
    stale = get(_proxy(db, store), f"{NAME}/latest")  # a new pass-through: the persisted head
    assert (stale.body, stale.lifetime, stale.cache) == (head, STALE, "stale")


def test_upstream_failure_is_502() -> None:
    db = _db()
    db.set_override("/lookup/rsc.io/quote@v1.5.2", b"boom", status=500)
    answer, err = fail(_proxy(db), f"{NAME}/lookup/rsc.io/quote@v1.5.2")
    assert answer.status == 502 and answer.cache_control == "no-store"
    assert isinstance(err, (UpstreamError, SumdbError))
    assert "unavailable" in str(err)

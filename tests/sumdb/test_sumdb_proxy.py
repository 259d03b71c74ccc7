"""test_sumdb_proxy checks SumdbPassThrough, the /sumdb/<name>/ pass-through with caching."""

from __future__ import annotations

import asyncio
from typing import Any

from gomirror.sumdb.note import generate_key
from gomirror.sumdb.proxy import BINARY, TEXT, Response, SumdbPassThrough
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


def _proxy(db: TestSumdb, store: MemoryStore | None = None, **kw: Any) -> SumdbPassThrough:
    return SumdbPassThrough(
        {db.name: DirectTransport(db)},
        store if store is not None else MemoryStore(),
        verifier_keys={db.name: db.verifier_key},
        **kw,
    )


def get(p: SumdbPassThrough, path: str) -> Response:
    return asyncio.run(p.handle_path(path))


def test_supported_only_for_configured_names() -> None:
    p = _proxy(_db())
    assert get(p, f"{NAME}/supported") == Response(200, TEXT, b"", "public, max-age=300")
    assert get(p, "sum.golang.org/supported").status == 404
    assert asyncio.run(p.handle("sum.golang.org", "supported")).status == 404
    assert p.split(f"{NAME}/lookup/a@v1.0.0") == (NAME, "lookup/a@v1.0.0")
    assert get(p, f"{NAME}/nope").status == 404


def test_lookup_passes_bytes_through_and_caches_forever() -> None:
    db, store = _db(), MemoryStore()
    p = _proxy(db, store)
    path = "lookup/rsc.io/!q!u!o!t!e@v1.5.2"
    r = get(p, f"{NAME}/{path}")
    assert (r.status, r.content_type, r.body) == (200, TEXT, db.answer("/" + path).body)
    assert "immutable" in r.cache_control
    assert store.data[f"sumdb/{NAME}/{path}"] == r.body
    db.clear_requests()
    assert get(p, f"{NAME}/{path}").body == r.body
    assert db.requests == []


def test_lookup_validation_and_not_found() -> None:
    db = _db()
    p = _proxy(db)
    for bad in ["lookup/rsc.io/quote", "lookup/rsc.io/quote@master", "lookup/rsc.io/QUOTE@v1.5.2"]:
        r = get(p, f"{NAME}/{bad}")
        assert r.status == 400 and r.content_type.startswith("text/plain")
    assert db.requests == []
    r = get(p, f"{NAME}/lookup/example.com/missing@v1.0.0")
    assert (r.status, r.body) == (404, b"not found: example.com/missing@v1.0.0\n")


def test_lookup_with_foreign_signature_is_not_cached() -> None:
    skey, _ = generate_key(NAME)
    db, store = _db(signer_key=skey), MemoryStore()
    p = SumdbPassThrough(
        {NAME: DirectTransport(db)}, store, verifier_keys={NAME: SUMDB["verifier_key"]}
    )
    assert get(p, f"{NAME}/lookup/rsc.io/quote@v1.5.2").status == 502
    assert get(p, f"{NAME}/latest").status == 502
    assert store.data == {}


def test_hash_and_data_tiles_and_truncation_from_full_tiles() -> None:
    db, store = _db(), MemoryStore()
    for i in range(300):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    p = _proxy(db, store)
    for path, ctype in [("tile/8/0/000", BINARY), ("tile/8/data/000", TEXT)]:
        r = get(p, f"{NAME}/{path}")
        assert (r.status, r.content_type, r.body) == (200, ctype, db.answer("/" + path).body)
    db.clear_requests()
    for path in ["tile/8/0/000.p/10", "tile/8/data/000.p/10", "tile/8/0/000.p/255"]:
        r = get(p, f"{NAME}/{path}")
        assert r.body == db.answer("/" + path).body, path
    assert db.requests == [  # only the test's own direct calls: nothing went upstream
        "/tile/8/0/000.p/10",
        "/tile/8/data/000.p/10",
        "/tile/8/0/000.p/255",
    ]
    assert get(p, f"{NAME}/tile/8/1/000.p/1").status == 200
    assert f"sumdb/{NAME}/tile/8/1/000.p/1" in store.data


def test_partial_tile_404_is_forwarded_and_bad_tiles_rejected() -> None:
    db = _db(drop_partial_tiles=True)
    for i in range(300):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    store = MemoryStore()
    p = _proxy(db, store)
    assert get(p, f"{NAME}/tile/8/0/000.p/3").status == 404
    assert get(p, f"{NAME}/tile/8/0/000.p/256").status == 400
    assert get(p, f"{NAME}/tile/8/0/x000/000").status == 400
    db.set_override("/tile/8/0/001.p/44", b"short", content_type=BINARY)
    assert get(p, f"{NAME}/tile/8/0/001.p/44").status == 502
    assert store.data == {}


def test_latest_is_cached_briefly_and_served_stale_on_error() -> None:
    db, clock = _db(3), Clock()
    p = _proxy(db, latest_ttl=30, clock=clock)
    first = get(p, f"{NAME}/latest")
    assert (first.status, first.body) == (200, db.signed())
    for i in range(4):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    assert get(p, f"{NAME}/latest").body == first.body  # still fresh
    clock.now += 31
    assert get(p, f"{NAME}/latest").body == db.signed()
    db.set_override("/latest", b"down", status=503)
    clock.now += 31
    stale = get(p, f"{NAME}/latest")
    assert (stale.status, stale.body, stale.cache_control) == (200, db.signed(), "max-age=0")


def test_upstream_failure_is_502() -> None:
    db = _db()
    db.set_override("/lookup/rsc.io/quote@v1.5.2", b"boom", status=500)
    r = get(_proxy(db), f"{NAME}/lookup/rsc.io/quote@v1.5.2")
    assert r.status == 502 and r.cache_control == "no-store"

"""test_sumdb_client checks SumdbClient: Go's request transcripts, then bad databases."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror.errors import NotFound, SumdbError
from gomirror.sumdb.client import SumdbClient, SumdbNotFound, latest_key
from gomirror.sumdb.note import generate_key
from gomirror.sumdb.transport import HttpSumdbTransport
from support.sumdb_server import TEST_VERIFIER_KEY, DirectTransport, MemoryStore, TestSumdb
from support.vectors import group

T = TypeVar("T")
SUMDB = group("sumdb")
NAME = SUMDB["name"]
LATEST = latest_key(NAME)
H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def _db(n: int = 10, **kw: Any) -> TestSumdb:
    db = TestSumdb(**kw)
    for r in SUMDB["records"][:n]:
        db.add_record(r["module"], r["version"], r["text"].encode())
    return db


def _lookups(client: SumdbClient, lookups: list[str]) -> list[list[str]]:
    async def run() -> list[list[str]]:
        return [await client.lookup(*q.split(" ")) for q in lookups]

    return asyncio.run(run())


def test_client_fresh_transcript() -> None:
    case = SUMDB["client_fresh"]
    db, store = _db(), MemoryStore()
    client = SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), store)
    results = _lookups(client, case["lookups"])
    assert db.requests == case["remote_requests"]
    for lines in results:  # one lookup serves both lines
        assert lines == case["lines"] + case["lines_go_mod"]
    assert store.data[LATEST] == case["stored_latest_after"].encode()
    assert set(store.data) == {
        LATEST,
        f"sumdb/{NAME}/lookup/rsc.io/quote@v1.5.2",
        f"sumdb/{NAME}/tile/8/0/000.p/10",
    }
    assert client.latest.n == 10


def test_client_consistency_from_3_transcript() -> None:
    case = SUMDB["client_consistency_from_3"]
    db, store = _db(), MemoryStore()
    store.data[LATEST] = case["initial_latest"].encode()
    client = SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), store)
    results = _lookups(client, case["lookups"])
    assert db.requests == case["remote_requests"]
    assert [line for line in results[0] if "/go.mod" not in line] == case["lines"]
    assert store.data[LATEST] == case["stored_latest_after"].encode()


def test_cached_lookup_makes_no_remote_request() -> None:
    db, store = _db(), MemoryStore()
    _lookups(SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), store), ["rsc.io/quote v1.5.2"])
    db.clear_requests()
    again = SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), store)
    assert _lookups(again, ["rsc.io/quote v1.5.2", "rsc.io/quote v1.5.1"])[0][0].endswith("L0=")
    assert db.requests == ["/lookup/rsc.io/quote@v1.5.1"]


def _over_http(db: TestSumdb, fn: Callable[[HttpSumdbTransport], Awaitable[T]]) -> T:
    async def run() -> T:
        async with aiohttp.ClientSession() as session:
            return await fn(HttpSumdbTransport([db.url], session))

    return asyncio.run(run())


def _lookup_http(db: TestSumdb, store: MemoryStore, module: str, version: str) -> list[str]:
    async def fn(t: HttpSumdbTransport) -> list[str]:
        return await SumdbClient(db.verifier_key, t, store).lookup(module, version)

    return _over_http(db, fn)


def test_growth_with_consistency_proof_over_loopback() -> None:
    store = MemoryStore()
    with _db(3) as db:
        assert _lookup_http(db, store, "rsc.io/quote", "v1.5.2")[0].startswith(
            "rsc.io/quote v1.5.2 "
        )
        first = store.data[LATEST]
        for i in range(300):
            db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
        db.clear_requests()
        lines = _lookup_http(db, store, "example.com/m299", "v1.0.0")
        assert lines == [f"example.com/m299 v1.0.0 {H1}", f"example.com/m299 v1.0.0/go.mod {H1}"]
        assert store.data[LATEST] != first
        assert store.data[LATEST] == db.signed()
        assert "/tile/8/1/000.p/1" in db.requests
        # An older lookup response is still accepted: its tree is a prefix of the latest.
        assert _lookup_http(db, store, "rsc.io/quote", "v1.5.2")


def test_fork_is_detected_and_persisted_head_is_kept() -> None:
    store = MemoryStore()
    with _db() as db:
        _lookup_http(db, store, "rsc.io/quote", "v1.5.2")
        head = store.data[LATEST]
        db.fork("rsc.io/quote", "v1.5.1", H1, H1)  # rewrite record 3 in place
        db.add("example.com/new", "v1.0.0", H1, H1)
        with pytest.raises(SumdbError) as exc:
            _lookup_http(db, store, "example.com/new", "v1.0.0")
        message = str(exc.value)
        assert "SECURITY ERROR" in message
        assert (
            "go.sum database tree\n\t10\n" in message and "go.sum database tree\n\t11\n" in message
        )
        assert store.data[LATEST] == head
        assert f"sumdb/{NAME}/lookup/example.com/new@v1.0.0" not in store.data


def test_rollback_to_prefix_is_accepted_but_rewritten_history_is_not() -> None:
    store = MemoryStore()
    with _db() as db:
        _lookup_http(db, store, "rsc.io/quote", "v1.5.2")
        head = store.data[LATEST]
        db.rollback(5)
        assert _lookup_http(db, store, "rsc.io/fortune", "v1.0.0")  # size 5 is a prefix of 10
        assert store.data[LATEST] == head
        for i in range(6):
            db.add(f"example.com/other{i}", "v1.0.0", H1, H1)
        with pytest.raises(SumdbError, match="SECURITY ERROR"):
            _lookup_http(db, store, "example.com/other0", "v1.0.0")
        assert store.data[LATEST] == head


def test_tampered_tile_is_rejected_and_not_cached() -> None:
    store = MemoryStore()
    with _db() as db:
        db.set_override(
            "/tile/8/0/000.p/10", b"\x00" * 320, content_type="application/octet-stream"
        )
        with pytest.raises(SumdbError, match="downloaded inconsistent tile"):
            _lookup_http(db, store, "rsc.io/quote", "v1.5.2")
        # Only the signed head may be kept (it is authentic); no tile and no lookup is.
        assert set(store.data) <= {LATEST}


def test_tampered_lookup_record_is_rejected() -> None:
    store = MemoryStore()
    with _db() as db:
        good = db.answer("/lookup/rsc.io/quote@v1.5.2").body
        bad = good.replace(b"h1:3fEy", b"h1:4fEy")
        db.set_override("/lookup/rsc.io/quote@v1.5.2", bad)
        with pytest.raises(SumdbError, match="cannot authenticate record data"):
            _lookup_http(db, store, "rsc.io/quote", "v1.5.2")
        assert f"sumdb/{NAME}/lookup/rsc.io/quote@v1.5.2" not in store.data


def test_foreign_signature_is_rejected() -> None:
    skey, _ = generate_key(NAME)  # same name, different key
    store = MemoryStore()
    with (
        _db(signer_key=skey) as db,
        pytest.raises(SumdbError, match="reading tree note: note has no verifiable signatures"),
    ):
        _over_http(
            db,
            lambda t: SumdbClient(TEST_VERIFIER_KEY, t, store).lookup("rsc.io/quote", "v1.5.2"),
        )
    assert LATEST not in store.data


def test_unknown_module_is_not_found() -> None:
    with _db() as db:
        with pytest.raises(SumdbNotFound) as exc:
            _lookup_http(db, MemoryStore(), "example.com/missing", "v1.0.0")
        assert str(exc.value) == "sumdb has no record of example.com/missing@v1.0.0"
        assert isinstance(exc.value, NotFound)


def test_partial_tile_gone_falls_back_to_full_tile() -> None:
    store = MemoryStore()
    store.data[LATEST] = SUMDB["signed_tree_at_3"].encode()
    db = _db(drop_partial_tiles=True)
    for i in range(300):
        db.add(f"example.com/m{i}", "v1.0.0", H1, H1)
    client = SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), store)
    assert _lookups(client, ["example.com/m7 v1.0.0"])[0]
    assert db.requests[:2] == ["/tile/8/0/000.p/3", "/tile/8/0/000"]
    assert len(store.data[f"sumdb/{NAME}/tile/8/0/000.p/3"]) == 3 * 32  # truncated full tile
    assert store.data[LATEST] == db.signed()


def test_concurrent_lookups_share_work_and_persist_one_head() -> None:
    db, store = _db(), MemoryStore()
    client = SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), store)

    async def run() -> list[list[str]]:
        queries = [r for r in SUMDB["records"]] * 3
        return await asyncio.gather(*(client.lookup(r["module"], r["version"]) for r in queries))

    results = asyncio.run(run())
    assert all(len(lines) == 2 for lines in results)
    assert store.data[LATEST] == db.signed()
    assert db.requests.count("/lookup/rsc.io/quote@v1.5.2") == 1
    assert store.puts.count(LATEST) == 1

"""test_guard checks PrivateGuard: private module paths never reach a checksum database."""

from __future__ import annotations

import asyncio

import pytest

from gomirror.errors import NotFound
from gomirror.server.responses import error_answer
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.guard import PRIVATE_MESSAGE, PrivateGuard
from gomirror.sumdb.proxy import SumdbPassThrough
from support.sumdb_server import DirectTransport, MemoryStore, TestSumdb

H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def _guard(private: str) -> tuple[PrivateGuard, TestSumdb]:
    db = TestSumdb()
    for m in ("example.com/public", "corp.example.com/secret", "Corp.Example.com/secret"):
        db.add(m, "v1.0.0", H1, H1)
    client = SumdbClient(db.verifier_key, DirectTransport(db), MemoryStore())
    return PrivateGuard(SumdbPassThrough([client]), private), db


@pytest.mark.parametrize(
    "escaped",
    [
        "corp.example.com/secret",
        "corp.example.com/secret/v2",
        "!corp.!example.com/secret",  # the same host in another case
        "corp.example.com/!secret",
    ],
)
def test_private_lookups_are_refused_and_never_forwarded(escaped: str) -> None:
    guard, db = _guard("corp.example.com,*.internal")
    with pytest.raises(NotFound) as exc:
        asyncio.run(guard.handle_path(f"{db.name}/lookup/{escaped}@v1.0.0"))
    assert str(exc.value) == PRIVATE_MESSAGE
    assert error_answer(exc.value).status == 404
    assert db.requests == []


def test_public_lookups_and_tiles_pass() -> None:
    guard, db = _guard("corp.example.com")
    r = asyncio.run(guard.handle_path(f"{db.name}/lookup/example.com/public@v1.0.0"))
    assert r.body == db.answer("/lookup/example.com/public@v1.0.0").body
    assert asyncio.run(guard.handle_path(f"{db.name}/tile/8/0/000.p/3")).body
    assert guard.split(f"{db.name}/latest") == (db.name, "latest")


def test_no_private_patterns_forward_everything() -> None:
    guard, db = _guard("")
    r = asyncio.run(guard.handle_path(f"{db.name}/lookup/corp.example.com/secret@v1.0.0"))
    assert r.body.startswith(b"1\n")

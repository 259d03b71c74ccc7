"""test_sumdb_server checks the test checksum database is byte-identical to Go's transcript."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from typing import Any

import pytest

from gomirror.errors import NotFound
from support.sumdb_server import TEST_VERIFIER_KEY, TestSumdb
from support.vectors import group

SUMDB = group("sumdb")
NONEXISTENT = (
    "open $GOROOT/src/cmd/go/testdata/mod/rsc.io_nonexistent_v1.0.0.txt: no such file or directory"
)


def _source(module: str, version: str) -> tuple[str, str] | None:
    # Go's test server reads testdata files; unknown modules fail with this error text.
    raise NotFound(NONEXISTENT)


def _db(n: int = 10, **kw: Any) -> TestSumdb:
    db = TestSumdb(source=_source, **kw)
    for r in SUMDB["records"][:n]:
        assert db.add_record(r["module"], r["version"], r["text"].encode()) == r["id"]
    return db


def _body(case: dict[str, Any]) -> bytes:
    return base64.b64decode(case["body_b64"]) if "body_b64" in case else case["body"].encode()


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_keys_and_heads() -> None:
    assert SUMDB["verifier_key"] == TEST_VERIFIER_KEY
    db = _db(3)
    assert db.name == SUMDB["name"]
    assert db.verifier_key == TEST_VERIFIER_KEY
    assert db.signed() == SUMDB["signed_tree_at_3"].encode()
    assert _db().signed() == SUMDB["signed_tree_latest"].encode()


@pytest.mark.parametrize("case", SUMDB["http"], ids=lambda c: c["path"])
def test_http_transcript_in_process(case: dict[str, Any]) -> None:
    answer = _db().answer(case["path"])
    assert (answer.status, answer.content_type, answer.body) == (
        case["status"],
        case["content_type"],
        _body(case),
    )


@pytest.mark.parametrize("prefix", ["", "/sumdb/localhost.localdev/sumdb"])
def test_http_transcript_over_loopback(prefix: str) -> None:
    with _db(prefix=prefix) as db:
        for case in SUMDB["http"]:
            status, ctype, body = _get(db.url + case["path"])
            assert (status, ctype, body) == (case["status"], case["content_type"], _body(case))
        assert db.requests == [c["path"] for c in SUMDB["http"]]


def test_source_adds_records_lazily() -> None:
    db = TestSumdb(source=lambda m, v: ("h1:zip=", "h1:mod=") if m == "example.com/a" else None)
    answer = db.answer("/lookup/example.com/a@v1.0.0")
    assert answer.status == 200
    assert answer.body.startswith(
        b"0\nexample.com/a v1.0.0 h1:zip=\nexample.com/a v1.0.0/go.mod h1:mod=\n\n"
    )
    assert db.size == 1
    assert db.answer("/lookup/example.com/b@v1.0.0").status == 404


def test_tiles_beyond_the_tree_and_dropped_partials() -> None:
    db = _db(drop_partial_tiles=True)
    assert db.answer("/tile/8/0/000.p/11").status == 404
    assert db.answer("/tile/8/data/000.p/11").status == 404
    assert db.answer("/tile/2/0/000.p/3").status == 404  # full tile/2/0/000 exists
    assert db.answer("/tile/2/0/000").status == 200
    assert db.answer("/tile/2/0/002.p/2").status == 200

"""test_tlog checks gomirror.sumdb.tlog against every `tlog` hash, proof and format vector."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gomirror.errors import SumdbError
from gomirror.sumdb.tlog import (
    EMPTY_HASH,
    ListHashReader,
    Tree,
    check_record,
    check_tree,
    format_record,
    format_tree,
    node_hash,
    parse_record,
    parse_tree,
    prove_record,
    prove_tree,
    record_hash,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes,
    tree_hash,
)
from support.vectors import group

TLOG = group("tlog")
TT = TLOG["test_tree"]


def b64(s: str) -> bytes:
    return base64.b64decode(s)


def _bytes(m: Any) -> bytes:
    return bytes.fromhex(m["hex"]) if isinstance(m, dict) else m.encode()


def _build(n: int) -> list[bytes]:
    hashes: list[bytes] = []
    for i in range(n):
        hashes.extend(stored_hashes(i, f"leaf {i}".encode(), ListHashReader(hashes)))
    return hashes


HASHES = tuple(_build(100))


def test_basic_hashes() -> None:
    rh = TLOG["record_hash"]
    assert record_hash(rh["data"].encode()) == b64(rh["hash"])
    nh = TLOG["node_hash"]
    assert node_hash(b64(nh["left"]), b64(nh["right"])) == b64(nh["hash"])
    assert b64(TLOG["empty_tree_hash"]["hash"]) == EMPTY_HASH
    assert tree_hash(0, ListHashReader([])) == EMPTY_HASH


@pytest.mark.parametrize("case", TLOG["stored_hash_index"])
def test_stored_hash_index(case: dict[str, int]) -> None:
    assert stored_hash_index(case["level"], case["n"]) == case["index"]
    assert split_stored_hash_index(case["index"]) == (case["level"], case["n"])


@pytest.mark.parametrize("case", TLOG["stored_hash_count"])
def test_stored_hash_count(case: dict[str, int]) -> None:
    assert stored_hash_count(case["n"]) == case["stored_hash_count"]


def test_test_tree_leaves_and_stored_hashes() -> None:
    assert [base64.b64encode(h).decode() for h in HASHES] == TT["stored_hashes_b64"]
    for i, h in enumerate(TT["leaf_hashes"]):
        assert HASHES[stored_hash_index(0, i)] == b64(h)
    assert len(HASHES) == stored_hash_count(100)


def test_tree_hash_every_size() -> None:
    reader = ListHashReader(HASHES)
    for k, h in enumerate(TT["tree_hash_by_size"]):
        assert tree_hash(k + 1, reader) == b64(h), k + 1


@pytest.mark.parametrize(
    "case", TT["record_proofs"], ids=lambda c: f"{c['record']}/{c['tree_size']}"
)
def test_record_proofs(case: dict[str, Any]) -> None:
    t, n = case["tree_size"], case["record"]
    proof = prove_record(t, n, ListHashReader(HASHES))
    assert proof == [b64(p) for p in case["proof"]]
    th = b64(TT["tree_hash_by_size"][t - 1])
    leaf = record_hash(f"leaf {n}".encode())
    check_record(proof, t, th, n, leaf)
    with pytest.raises(SumdbError, match="invalid transparency proof"):
        check_record(proof, t, th, n, record_hash(b"other"))


@pytest.mark.parametrize(
    "case", TT["tree_proofs"], ids=lambda c: f"{c['old_size']}/{c['new_size']}"
)
def test_tree_proofs(case: dict[str, Any]) -> None:
    t, n = case["new_size"], case["old_size"]
    proof = prove_tree(t, n, ListHashReader(HASHES))
    assert proof == [b64(p) for p in case["proof"]]
    th, h = b64(TT["tree_hash_by_size"][t - 1]), b64(TT["tree_hash_by_size"][n - 1])
    check_tree(proof, t, th, n, h)
    with pytest.raises(SumdbError, match="invalid transparency proof"):
        check_tree(proof, t, th, n, record_hash(b"forged"))


def test_format_tree() -> None:
    ft = TLOG["format_tree"]
    assert format_tree(Tree(ft["n"], b64(ft["hash"]))) == ft["text"].encode()


@pytest.mark.parametrize("case", TLOG["parse_tree"], ids=lambda c: repr(c["text"][:40]))
def test_parse_tree(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(SumdbError) as exc:
            parse_tree(case["text"].encode())
        assert str(exc.value) == case["error"]
    else:
        assert parse_tree(case["text"].encode()) == Tree(case["n"], b64(case["hash"]))


def test_format_record() -> None:
    fr = TLOG["format_record"]
    assert format_record(fr["id"], fr["text"].encode()) == fr["msg"].encode()


@pytest.mark.parametrize("case", TLOG["format_record_bad"], ids=repr)
def test_format_record_bad(case: dict[str, str]) -> None:
    with pytest.raises(SumdbError) as exc:
        format_record(1, case["text"].encode())
    assert str(exc.value) == case["error"]


@pytest.mark.parametrize("case", TLOG["parse_record"], ids=lambda c: repr(c["msg"])[:40])
def test_parse_record(case: dict[str, Any]) -> None:
    msg = _bytes(case["msg"])
    if case["error"]:
        with pytest.raises(SumdbError) as exc:
            parse_record(msg)
        assert str(exc.value) == case["error"]
    else:
        assert parse_record(msg) == (case["id"], case["text"].encode(), _bytes(case["rest"]))

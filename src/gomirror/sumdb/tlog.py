"""tlog implements the checksum database's transparent log (golang.org/x/mod/sumdb/tlog).

It provides RFC 6962 record and node hashes, the stored-hash numbering used by
tiles, tree hashes, inclusion proofs (``prove_record``/``check_record``) and
consistency proofs (``prove_tree``/``check_tree``), plus the tree-note and
record text formats. Hashes are 32-byte ``bytes``. Functions that need stored
hashes take a ``HashReader``; the ``*_indexes`` helpers say which indexes a
computation reads, so async callers can fetch them first and then run the
computation over a ``MapHashReader``. Errors are SumdbError subclasses with Go's
texts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gomirror.errors import SumdbError

HASH_SIZE = 32
EMPTY_HASH = hashlib.sha256(b"").digest()
TREE_PREFIX = b"go.sum database tree\n"
_DECIMAL = re.compile(r"[+-]?[0-9]+")


class MalformedTree(SumdbError):
    """A tree note text is malformed."""

    def __init__(self) -> None:
        super().__init__("malformed tree note")


class MalformedRecord(SumdbError):
    """A record or lookup response is malformed."""

    def __init__(self) -> None:
        super().__init__("malformed record data")


class ProofError(SumdbError):
    """A transparency proof does not check out."""


@dataclass(frozen=True, slots=True)
class Tree:
    """A tree head: the number of records and the root hash."""

    n: int
    hash: bytes


class HashReader(Protocol):
    """Returns the stored hashes at the given stored-hash indexes, in order."""

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]: ...


class ListHashReader:
    """A HashReader over a list of all stored hashes (index = list position)."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self._hashes = hashes

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return [self._hashes[i] for i in indexes]


class MapHashReader:
    """A HashReader over a mapping of already-fetched stored hashes."""

    def __init__(self, hashes: Mapping[int, bytes]) -> None:
        self._hashes = hashes

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return [self._hashes[i] for i in indexes]


def format_hash(h: bytes) -> str:
    """Return the standard base64 text of a hash."""
    return base64.b64encode(h).decode()


def parse_hash(s: str) -> bytes:
    """Parse the base64 text of a hash."""
    try:
        h = base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SumdbError("malformed hash") from None
    if len(h) != HASH_SIZE:
        raise SumdbError("malformed hash")
    return h


def record_hash(data: bytes) -> bytes:
    """Return the leaf hash of a record: sha256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash sha256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _maxpow2(n: int) -> tuple[int, int]:
    """Return (k, l): k = 2**l is the largest power of two below n (1 for n <= 2)."""
    level = max(0, (n - 1).bit_length() - 1)
    return 1 << level, level


def stored_hash_index(level: int, n: int) -> int:
    """Return the stored-hash index of the n-th hash at the given level."""
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Invert stored_hash_index: return (level, n)."""
    n = index // 2
    index_n = stored_hash_index(0, n)
    if index_n > index:
        raise AssertionError("bad math in split_stored_hash_index")
    while True:
        # Each record adds one leaf hash plus one hash per completed subtree.
        m = n + 1
        x = index_n + 1 + ((m & -m).bit_length() - 1)
        if x > index:
            break
        n += 1
        index_n = x
    level = index - index_n
    return level, n >> level


def stored_hash_count(n: int) -> int:
    """Return how many hashes are stored for a tree of n records."""
    if n == 0:
        return 0
    count = stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:
        count += 1
        i >>= 1
    return count


def stored_hashes_for_record_hash(n: int, h: bytes, reader: HashReader) -> list[bytes]:
    """Return the hashes to append when record n with leaf hash h is added."""
    m = ((n + 1) & -(n + 1)).bit_length() - 1
    indexes = [0] * m
    for i in range(m):
        indexes[m - 1 - i] = stored_hash_index(i, (n >> i) - 1)
    old = reader.read_hashes(indexes)
    hashes = [h]
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        hashes.append(h)
    return hashes


def stored_hashes(n: int, data: bytes, reader: HashReader) -> list[bytes]:
    """Return the hashes to append when record n with the given data is added."""
    return stored_hashes_for_record_hash(n, record_hash(data), reader)


def _sub_tree_index(lo: int, hi: int, need: list[int]) -> list[int]:
    while lo < hi:
        k, level = _maxpow2(hi - lo + 1)
        need.append(stored_hash_index(level, lo >> level))
        lo += k
    return need


def _sub_tree_hash(lo: int, hi: int, hashes: list[bytes]) -> tuple[bytes, list[bytes]]:
    num = 0
    while lo < hi:
        k, _ = _maxpow2(hi - lo + 1)
        num += 1
        lo += k
    h = hashes[num - 1]
    for i in range(num - 2, -1, -1):
        h = node_hash(hashes[i], h)
    return h, hashes[num:]


def tree_hash_indexes(n: int) -> list[int]:
    """Return the stored-hash indexes tree_hash(n) reads."""
    return _sub_tree_index(0, n, [])


def tree_hash(n: int, reader: HashReader) -> bytes:
    """Return the root hash of the tree of the first n records."""
    if n == 0:
        return EMPTY_HASH
    indexes = tree_hash_indexes(n)
    h, rest = _sub_tree_hash(0, n, _checked_read(reader, indexes))
    if rest:
        raise AssertionError("bad index math in tree_hash")
    return h


def _checked_read(reader: HashReader, indexes: list[int]) -> list[bytes]:
    hashes = reader.read_hashes(indexes)
    if len(hashes) != len(indexes):
        raise SumdbError(f"tlog: read_hashes({len(indexes)} indexes) = {len(hashes)} hashes")
    return list(hashes)


def _leaf_proof_index(lo: int, hi: int, n: int, need: list[int]) -> list[int]:
    if lo + 1 == hi:
        return need
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        _leaf_proof_index(lo, lo + k, n, need)
        _sub_tree_index(lo + k, hi, need)
    else:
        _sub_tree_index(lo, lo + k, need)
        _leaf_proof_index(lo + k, hi, n, need)
    return need


def _leaf_proof(lo: int, hi: int, n: int, hashes: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    if lo + 1 == hi:
        return [], hashes
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        p, hashes = _leaf_proof(lo, lo + k, n, hashes)
        th, hashes = _sub_tree_hash(lo + k, hi, hashes)
    else:
        th, hashes = _sub_tree_hash(lo, lo + k, hashes)
        p, hashes = _leaf_proof(lo + k, hi, n, hashes)
    return [*p, th], hashes


def record_proof_indexes(t: int, n: int) -> list[int]:
    """Return the stored-hash indexes prove_record(t, n) reads."""
    if t < 0 or n < 0 or n >= t:
        raise SumdbError("tlog: invalid inputs in ProveRecord")
    return _leaf_proof_index(0, t, n, [])


def prove_record(t: int, n: int, reader: HashReader) -> list[bytes]:
    """Return the proof that record n is in the tree of size t."""
    indexes = record_proof_indexes(t, n)
    if not indexes:
        return []
    p, rest = _leaf_proof(0, t, n, _checked_read(reader, indexes))
    if rest:
        raise AssertionError("bad index math in prove_record")
    return p


def _run_record_proof(p: Sequence[bytes], lo: int, hi: int, n: int, leaf: bytes) -> bytes:
    if lo + 1 == hi:
        if p:
            raise ProofError("invalid transparency proof")
        return leaf
    if not p:
        raise ProofError("invalid transparency proof")
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        return node_hash(_run_record_proof(p[:-1], lo, lo + k, n, leaf), p[-1])
    return node_hash(p[-1], _run_record_proof(p[:-1], lo + k, hi, n, leaf))


def check_record(proof: Sequence[bytes], t: int, th: bytes, n: int, h: bytes) -> None:
    """Check that proof shows record n with hash h is in the tree of size t and hash th."""
    if t < 0 or n < 0 or n >= t:
        raise SumdbError("tlog: invalid inputs in CheckRecord")
    if _run_record_proof(proof, 0, t, n, h) != th:
        raise ProofError("invalid transparency proof")


def _tree_proof_index(lo: int, hi: int, n: int, need: list[int]) -> list[int]:
    if n == hi:
        return need if lo == 0 else _sub_tree_index(lo, hi, need)
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        _tree_proof_index(lo, lo + k, n, need)
        _sub_tree_index(lo + k, hi, need)
    else:
        _sub_tree_index(lo, lo + k, need)
        _tree_proof_index(lo + k, hi, n, need)
    return need


def _tree_proof(lo: int, hi: int, n: int, hashes: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    if n == hi:
        if lo == 0:
            return [], hashes
        th, hashes = _sub_tree_hash(lo, hi, hashes)
        return [th], hashes
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        p, hashes = _tree_proof(lo, lo + k, n, hashes)
        th, hashes = _sub_tree_hash(lo + k, hi, hashes)
    else:
        th, hashes = _sub_tree_hash(lo, lo + k, hashes)
        p, hashes = _tree_proof(lo + k, hi, n, hashes)
    return [*p, th], hashes


def tree_proof_indexes(t: int, n: int) -> list[int]:
    """Return the stored-hash indexes prove_tree(t, n) reads."""
    if t < 1 or n < 1 or n > t:
        raise SumdbError("tlog: invalid inputs in ProveTree")
    return _tree_proof_index(0, t, n, [])


def prove_tree(t: int, n: int, reader: HashReader) -> list[bytes]:
    """Return the proof that the tree of size t contains the tree of size n."""
    indexes = tree_proof_indexes(t, n)
    if not indexes:
        return []
    p, rest = _tree_proof(0, t, n, _checked_read(reader, indexes))
    if rest:
        raise AssertionError("bad index math in prove_tree")
    return p


def _run_tree_proof(
    p: Sequence[bytes], lo: int, hi: int, n: int, old: bytes
) -> tuple[bytes, bytes]:
    if n == hi:
        if lo == 0:
            if p:
                raise ProofError("invalid transparency proof")
            return old, old
        if len(p) != 1:
            raise ProofError("invalid transparency proof")
        return p[0], p[0]
    if not p:
        raise ProofError("invalid transparency proof")
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        oh, th = _run_tree_proof(p[:-1], lo, lo + k, n, old)
        return oh, node_hash(th, p[-1])
    oh, th = _run_tree_proof(p[:-1], lo + k, hi, n, old)
    return node_hash(p[-1], oh), node_hash(p[-1], th)


def check_tree(proof: Sequence[bytes], t: int, th: bytes, n: int, h: bytes) -> None:
    """Check that proof shows the tree (t, th) contains the tree (n, h)."""
    if t < 1 or n < 1 or n > t:
        raise SumdbError("tlog: invalid inputs in CheckTree")
    h2, th2 = _run_tree_proof(proof, 0, t, n, h)
    if th2 != th or h2 != h:
        raise ProofError("invalid transparency proof")


def format_tree(tree: Tree) -> bytes:
    """Return the tree note text ``go.sum database tree\\n<N>\\n<hash>\\n``."""
    return TREE_PREFIX + f"{tree.n}\n{format_hash(tree.hash)}\n".encode()


def parse_tree(text: bytes) -> Tree:
    """Parse a tree note text; extra lines after the third are ignored."""
    if not text.startswith(TREE_PREFIX) or text.count(b"\n") < 3 or len(text) > 1_000_000:
        raise MalformedTree()
    lines = text.split(b"\n", 3)
    n_text = lines[1].decode("ascii", "replace")
    if not _DECIMAL.fullmatch(n_text):
        raise MalformedTree()
    n = int(n_text)
    if n < 0 or n_text != str(n) or n >= 1 << 63:
        raise MalformedTree()
    try:
        h = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise MalformedTree() from None
    if len(h) != HASH_SIZE:
        raise MalformedTree()
    return Tree(n, h)


def is_valid_record_text(text: bytes) -> bool:
    """Report whether text is valid record text: UTF-8 lines, no controls, no blank line."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not decoded.endswith("\n") or "\n\n" in decoded:
        return False
    return not any(c < " " and c != "\n" for c in decoded)


def format_record(record_id: int, text: bytes) -> bytes:
    """Return ``<id>\\n<text>\\n``, the record part of a lookup response."""
    if not is_valid_record_text(text):
        raise MalformedRecord()
    return f"{record_id}\n".encode() + text + b"\n"


def parse_record(msg: bytes) -> tuple[int, bytes, bytes]:
    """Split a lookup response into (record id, record text, rest = signed tree note)."""
    head, sep, msg = msg.partition(b"\n")
    id_text = head.decode("ascii", "replace")
    if not sep or not _DECIMAL.fullmatch(id_text):
        raise MalformedRecord()
    record_id = int(id_text)
    if not -(1 << 63) <= record_id < 1 << 63:
        raise MalformedRecord()
    i = msg.find(b"\n\n")
    if i < 0:
        raise MalformedRecord()
    text, rest = msg[: i + 1], msg[i + 2 :]
    if not is_valid_record_text(text):
        raise MalformedRecord()
    return record_id, text, rest

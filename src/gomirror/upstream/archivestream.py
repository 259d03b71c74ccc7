"""upstream.archivestream reads git's stored zip archive as it is written and packs each file.

Contract: :func:`read_members` consumes ``git archive --format=zip -0`` from a
pipe (see ``GitRepo.archive_to``). Every file's bytes are handed, in batches
of about 256 KiB, to a thread pool that hashes and compresses them
(``modzip.hash_and_pack``, as ``create_zip`` itself does) while git is still writing the rest, so building the
module zip overlaps git's own work instead of following it. What it returns
is the archive's file list (``vcsrepo.ArchiveFile``, prefix and module
subdirectory stripped, kinds from the central directory) with, per file, a
callable giving its ``(sha256 hex, Packed)``; the zip rules are applied
afterwards by ``modzip.create_zip`` as for any input.

It handles only what git writes for ordinary trees: stored entries with
sizes in the local header, UTF-8 or ASCII names, a central directory that
lists the same names in the same order, and at most ``limit`` bytes of
content (memory: the compressed output is held until it is written). Anything
else raises :class:`Unstreamable` (a ``StopReading``: git is stopped), and
the caller builds the zip from a file as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import BinaryIO

from gomirror.module.foldcase import str_to_fold
from gomirror.module.modzip import PACK_BATCH, hash_and_pack
from gomirror.module.zipwrite import Packed
from gomirror.upstream.git import StopReading
from gomirror.upstream.vcsrepo import ArchiveFile, kind_of_mode

STREAM_LIMIT = 64 << 20
_LOCAL = struct.Struct("<HHHHHIIIHH")  # after the signature
_CENTRAL = struct.Struct("<HHHHHHIIIHHHHHII")  # after the signature
_SIG_LOCAL = b"PK\x03\x04"
_SIG_CENTRAL = b"PK\x01\x02"
_DESCRIPTOR = 0x8
_UTF8 = 0x800

Result = tuple[str, Packed]


class Unstreamable(StopReading):
    """The archive is not one this reader handles; build the zip from a file instead."""


def _pack_batch(items: list[bytes]) -> list[Result]:
    return [hash_and_pack(data) for data in items]


class _Batches:
    """Collects file contents into batches for the pool; hands out a result getter per file."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._items: list[bytes] = []
        self._size = 0
        self._pending: list[Callable[[Future[list[Result]]], None]] = []

    def add(self, data: bytes) -> Callable[[], Result]:
        box: list[Future[list[Result]]] = []
        index = len(self._items)
        self._items.append(data)
        self._size += len(data)
        self._pending.append(box.append)
        if self._size >= PACK_BATCH:
            self.flush()
        return lambda: box[0].result()[index]

    def flush(self) -> None:
        if not self._items:
            return
        fut = self._pool.submit(_pack_batch, self._items)
        for give in self._pending:
            give(fut)
        self._items, self._size, self._pending = [], 0, []


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise Unstreamable("archive ended early")
    return data


def _decode(raw: bytes, flags: int) -> str:
    if flags & _UTF8:
        return raw.decode("utf-8", "surrogateescape")
    if raw.isascii():
        return raw.decode("ascii")
    raise Unstreamable("a name that is neither ASCII nor flagged UTF-8")


def read_members(
    f: BinaryIO, subdir: str, pool: Executor, limit: int = STREAM_LIMIT
) -> list[ArchiveFile]:
    """Read the whole archive from f; return its files with their packing under way."""
    batches = _Batches(pool)
    local: list[tuple[bytes, int, Callable[[], Result], bytes | None]] = []
    total = 0
    while True:
        sig = f.read(4)
        if sig == _SIG_CENTRAL:
            break
        if sig != _SIG_LOCAL:
            raise Unstreamable("unexpected record in the archive")
        (_, flags, method, _, _, _, csize, size, name_len, extra_len) = _LOCAL.unpack(
            _read_exact(f, _LOCAL.size)
        )
        if flags & _DESCRIPTOR or method != 0 or csize != size:
            raise Unstreamable("an entry that is not stored with its sizes up front")
        raw = _read_exact(f, name_len)
        _read_exact(f, extra_len)
        total += size
        if total > limit:
            raise Unstreamable(f"more than {limit} bytes of content")
        data = _read_exact(f, size)
        if raw.endswith(b"/"):
            continue  # a directory entry: nothing to pack
        keep = data if str_to_fold(raw.rsplit(b"/", 1)[-1].decode("latin-1")) == "go.mod" else None
        local.append((raw, size, batches.add(data), keep))
    batches.flush()
    return _with_kinds(sig + f.read(), local, subdir)


def _with_kinds(
    central: bytes,
    local: list[tuple[bytes, int, Callable[[], Result], bytes | None]],
    subdir: str,
) -> list[ArchiveFile]:
    """Match the central directory to the local entries; return the module's files."""
    prefix_dir = subdir.strip("/") + "/" if subdir.strip("/") else ""
    files: list[ArchiveFile] = []
    at = 0
    top = ""
    entries = iter(local)
    while central[at : at + 4] == _SIG_CENTRAL:
        fields = _CENTRAL.unpack_from(central, at + 4)
        made_by, flags, size = fields[0], fields[2], fields[8]
        name_len, extra_len, comment_len, external = fields[9], fields[10], fields[11], fields[14]
        start = at + 4 + _CENTRAL.size
        raw = central[start : start + name_len]
        at = start + name_len + extra_len + comment_len
        name = _decode(raw, flags)
        if not top:
            i = name.find("/")
            if i < 0:
                raise Unstreamable("no top-level directory")
            top = name[: i + 1]
        if not name.startswith(top):
            raise Unstreamable("more than one top-level directory")
        if raw.endswith(b"/"):
            continue
        entry = next(entries, None)
        if entry is None or entry[0] != raw or entry[1] != size:
            raise Unstreamable("the central directory disagrees with the entries")
        rel = name[len(top) :]
        if not rel.startswith(prefix_dir):
            continue
        rel = rel[len(prefix_dir) :]
        kind = kind_of_mode(external >> 16) if made_by >> 8 == 3 else "regular"
        files.append(ArchiveFile(path=rel, size=size, kind=kind, data=entry[3], packed=entry[2]))
    if next(entries, None) is not None:
        raise Unstreamable("entries missing from the central directory")
    return files

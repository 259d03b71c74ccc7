"""client verifies go.sum lines against a checksum database, as x/mod's sumdb.Client does.

``SumdbClient.lookup(module, version)`` returns the database's go.sum lines for
that module version (the ``h1:`` line and the ``/go.mod`` line) only after:

- the signed tree note in the response opens with the configured verifier key;
- the tree is consistent with the latest verified tree head, which is persisted
  in the state store under ``_gomirror/sumdb/<name>/latest``: an older (or equal)
  tree must hash to the same root through tiles of the newer one, and a newer
  tree must contain the known one (the consistency proof, recomputed from tiles);
- the record is included in the latest tree (its leaf hash read through tiles).

Tiles (height 8) are authenticated before they are cached in the store under
``sumdb/<name>/tile/...``, and verified lookup responses are cached under
``sumdb/<name>/lookup/<escpath>@<escver>``: the layout of a GOPROXY tree, so the
cache directory can serve as a ``file://`` proxy. A fork or rollback raises
SumdbError naming both tree heads; the persisted head is then left unchanged.
A 404/410 for the lookup raises ``SumdbNotFound``. Cached responses are
re-verified when read, like the go command does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from enum import Enum
from typing import Protocol

from gomirror.errors import NotFound, SumdbError, UpstreamError
from gomirror.module.paths import escape_path, escape_version
from gomirror.storage.coordination import SingleFlight
from gomirror.sumdb.note import Verifier, open_note, parse_verifier
from gomirror.sumdb.tiles import Tile, TileHashReader, prove_tree_async, tree_hash_async
from gomirror.sumdb.tlog import (
    EMPTY_HASH,
    HASH_SIZE,
    Tree,
    check_tree,
    format_hash,
    parse_record,
    parse_tree,
    record_hash,
    stored_hash_index,
)

log = logging.getLogger(__name__)

TILE_HEIGHT = 8
_SAVED_TILES_MEMORY = 4096  # how many saved-tile names to remember, to skip rewrites


class SumdbTransport(Protocol):
    """Fetches a path below the database URL (``lookup/...``, ``tile/...``, ``latest``).

    Raises NotFound (or Gone) for 404/410 and UpstreamError for anything else.
    """

    async def fetch(self, path: str) -> bytes: ...


class StateStore(Protocol):
    """The part of gomirror's Storage the client needs (``DiskStorage`` satisfies it)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put_bytes(self, key: str, data: bytes) -> None: ...


class SumdbNotFound(NotFound):
    """The checksum database has no record of the module version."""

    def __init__(self, module: str, version: str) -> None:
        self.module = module
        self.version = version
        super().__init__(f"sumdb has no record of {module}@{version}")


class _When(Enum):
    PAST = 1
    NOW = 2
    FUTURE = 3


def latest_key(name: str) -> str:
    """Return the state-store key of the persisted latest tree note for a database."""
    return f"_gomirror/sumdb/{name}/latest"


def cache_prefix(name: str) -> str:
    """Return the storage prefix of a database's cached lookups and tiles."""
    return f"sumdb/{name}/"


class _CachingTileReader:
    """Reads tiles from the store, else from the database; saves only authenticated ones."""

    height = TILE_HEIGHT

    def __init__(self, name: str, transport: SumdbTransport, store: StateStore) -> None:
        self._prefix = cache_prefix(name)
        self._transport = transport
        self._store = store
        self._flight = SingleFlight()
        self._saved: OrderedDict[Tile, None] = OrderedDict()
        self.remote_reads = 0

    def _mark_saved(self, tile: Tile) -> None:
        self._saved[tile] = None
        self._saved.move_to_end(tile)
        while len(self._saved) > _SAVED_TILES_MEMORY:
            self._saved.popitem(last=False)

    async def read_tiles(self, tiles: Sequence[Tile]) -> list[bytes]:
        return list(await asyncio.gather(*(self._read_tile(t) for t in tiles)))

    async def _read_tile(self, tile: Tile) -> bytes:
        return await self._flight.do(tile.path(), lambda: self._load(tile))

    async def _load(self, tile: Tile) -> bytes:
        data = await self._store.get(self._prefix + tile.path())
        if data is not None:
            self._mark_saved(tile)
            return data
        full = tile.full()
        if full != tile:
            data = await self._store.get(self._prefix + full.path())
            if data is not None:
                self._mark_saved(tile)  # never store the partial: the full one is there
                return data[: tile.W * HASH_SIZE]
        try:
            return await self._fetch(tile)
        except (NotFound, UpstreamError):
            if full == tile:
                raise
            # A partial tile may have become full and been dropped by the server.
            try:
                return (await self._fetch(full))[: tile.W * HASH_SIZE]
            except (NotFound, UpstreamError):
                pass
            raise

    async def _fetch(self, tile: Tile) -> bytes:
        self.remote_reads += 1
        try:
            return await self._transport.fetch(tile.path())
        except NotFound as e:
            # Never let a missing tile look like a missing module to the caller.
            raise UpstreamError(f"reading {tile.path()}: {e}") from e

    async def save_tiles(self, tiles: Sequence[Tile], data: Sequence[bytes]) -> None:
        for tile, d in zip(tiles, data, strict=True):
            if tile not in self._saved:
                self._mark_saved(tile)
                await self._store.put_bytes(self._prefix + tile.path(), d)


def _indent(b: bytes) -> str:
    return b.decode("utf-8", "replace").replace("\n", "\n\t")


class SumdbClient:
    """Looks up and verifies go.sum lines in one checksum database (see module docstring)."""

    def __init__(self, verifier_key: str, transport: SumdbTransport, store: StateStore) -> None:
        self._verifier: Verifier = parse_verifier(verifier_key.strip())
        self.name = self._verifier.name
        self._transport = transport
        self._store = store
        self._tiles = _CachingTileReader(self.name, transport, store)
        self._lookups = SingleFlight()
        self._latest = Tree(0, EMPTY_HASH)
        self._latest_msg = b""
        self._initialized = False
        self._init_lock = asyncio.Lock()
        self._persist_lock = asyncio.Lock()

    @property
    def latest(self) -> Tree:
        """The latest verified tree head known in memory (size 0 before the first use)."""
        return self._latest

    @property
    def latest_note(self) -> bytes:
        """The signed note of ``latest`` (empty before the first verified head)."""
        return self._latest_msg

    def _ready(self) -> bool:
        return self._initialized

    async def _ensure_init(self) -> None:
        if self._ready():
            return
        async with self._init_lock:
            if self._ready():  # another task finished while this one waited
                return
            stored = await self._store.get(latest_key(self.name)) or b""
            try:
                await self._merge_latest(stored)
            except SumdbError as e:
                raise SumdbError(f"checking stored {latest_key(self.name)}: {e}") from e
            self._initialized = True  # failures are retried: they may be transient

    async def refresh(self) -> Tree:
        """Fetch the database's ``latest`` note and merge it; return the latest tree."""
        await self._ensure_init()
        await self._merge_latest(await self._transport.fetch("latest"))
        return self._latest

    async def lookup(self, module: str, version: str) -> list[str]:
        """Return the verified go.sum lines for module version (h1 and /go.mod lines)."""
        version = version.removesuffix("/go.mod")
        remote = f"lookup/{escape_path(module)}@{escape_version(version)}"
        await self._ensure_init()
        try:
            text = await self._lookups.do(remote, lambda: self._lookup_record(remote))
        except SumdbNotFound:
            raise
        except NotFound as e:
            raise SumdbNotFound(module, version) from e
        except SumdbError as e:
            raise SumdbError(f"{module}@{version}: {e}") from e
        except UpstreamError as e:
            raise UpstreamError(f"{module}@{version}: {e}") from e
        prefixes = (f"{module} {version} ", f"{module} {version}/go.mod ")
        return [line for line in text.decode("utf-8").split("\n") if line.startswith(prefixes)]

    async def _lookup_record(self, remote: str) -> bytes:
        key = cache_prefix(self.name) + remote
        data = await self._store.get(key)
        fresh = data is None
        if data is None:
            data = await self._transport.fetch(remote)
        record_id, text, tree_msg = parse_record(data)
        await self._merge_latest(tree_msg)
        await self._check_record(record_id, text)
        if fresh:
            await self._store.put_bytes(key, data)
        return text

    async def _merge_latest(self, msg: bytes) -> None:
        """Merge a signed tree note into the latest tree, persisting it if it is newer."""
        if await self._merge_latest_mem(msg) is not _When.FUTURE:
            return
        # Compare-and-swap against the store: another client may have written a newer head.
        async with self._persist_lock:
            while True:
                stored = await self._store.get(latest_key(self.name)) or b""
                if await self._merge_latest_mem(stored) is not _When.PAST:
                    return
                await self._store.put_bytes(latest_key(self.name), self._latest_msg)

    async def _merge_latest_mem(self, msg: bytes) -> _When:
        if not msg:
            return _When.NOW if self._latest.n == 0 else _When.PAST
        try:
            note = open_note(msg, [self._verifier])
        except SumdbError as e:
            raise SumdbError(f"reading tree note: {e}\nnote:\n{_indent(msg)}") from e
        try:
            tree = parse_tree(note.text.encode())
        except SumdbError as e:
            raise SumdbError(f"reading tree: {e}\ntree:\n{note.text}") from e
        while True:
            latest, latest_msg = self._latest, self._latest_msg
            if tree.n <= latest.n:
                await self._check_trees(tree, msg, latest, latest_msg)
                return _When.PAST if tree.n < latest.n else _When.NOW
            await self._check_trees(latest, latest_msg, tree, msg)
            if self._latest == latest:  # nobody installed another head while we checked
                self._latest, self._latest_msg = tree, msg
                log.info("sumdb tree advanced", extra={"db": self.name, "size": tree.n})
                return _When.FUTURE

    async def _check_trees(
        self, older: Tree, older_msg: bytes, newer: Tree, newer_msg: bytes
    ) -> None:
        """Require that newer's tiles give older's hash; raise SumdbError with both heads."""
        reader = TileHashReader(newer, self._tiles)
        what = f"tree#{older.n}" + ("" if older.n == newer.n else f" against tree#{newer.n}")
        try:
            h = await tree_hash_async(older.n, reader)
        except SumdbError as e:
            raise SumdbError(f"checking {what}: {e}") from e
        except UpstreamError as e:
            raise UpstreamError(f"checking {what}: {e}") from e
        if h == older.hash:
            return
        lines = [
            # The first line is all most error paths show: name the inconsistency there.
            f"SECURITY ERROR: {self.name} tree#{older.n} is inconsistent with tree#{newer.n}",
            "go.sum database server misbehavior detected!",
            "",
            f"old database:\n\t{_indent(older_msg)}",
            f"new database:\n\t{_indent(newer_msg)}",
            f"proof of misbehavior:\n\t{format_hash(h)}",
        ]
        try:
            proof = await prove_tree_async(newer.n, older.n, reader)
            check_tree(proof, newer.n, newer.hash, older.n, h)
            lines.extend(f"\t{format_hash(p)}" for p in proof)
        except (SumdbError, UpstreamError) as e:
            lines.append(f"\tinternal error: {e}")
        message = "\n".join(lines)
        log.error("sumdb misbehavior", extra={"db": self.name, "old": older.n, "new": newer.n})
        raise SumdbError(message)

    async def _check_record(self, record_id: int, text: bytes) -> None:
        latest = self._latest
        if record_id < 0 or record_id >= latest.n:
            raise SumdbError(f"cannot validate record {record_id} in tree of size {latest.n}")
        reader = TileHashReader(latest, self._tiles)
        hashes = await reader.read_hashes([stored_hash_index(0, record_id)])
        if hashes[0] != record_hash(text):
            raise SumdbError("cannot authenticate record data in server response")

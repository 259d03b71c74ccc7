"""client verifies go.sum lines against a checksum database, as x/mod's sumdb.Client does.

``SumdbClient.lookup(module, version)`` returns the database's go.sum lines for
that module version (the ``h1:`` line and the ``/go.mod`` line) only after:

- the signed tree note in the response opens with the configured verifier key;
- the tree is consistent with the latest verified tree head, which is persisted
  in the state store under ``_gomirror/sumdb/<name>/latest``: an older (or equal)
  tree must hash to the same root through tiles of the newer one, and a newer
  tree must contain the known one (the consistency proof, recomputed from tiles);
- the record id lies inside the note's tree and the record is included in the
  latest tree (its leaf hash read through authenticated tiles).

The same client serves the ``/sumdb/`` pass-through: ``lookup_record`` returns
the verified raw response, ``tile(tile)`` a tile authenticated against the
latest verified tree (``covers`` says whether that tree is big enough) and
``refresh()`` merges the database's ``latest`` note. Every piece of content is
checked before it is cached or returned, so the verifier and the pass-through
share one persisted state and never disagree.

Content is fetched through ``routes`` one route at a time: content that fails
its check is rejected (``RouteEvents`` hears of it) and the next route is
asked. Tiles (height 8) are read by ``tileauth.TileAuthenticator`` and cached
under ``sumdb/<name>/tile/...``; verified lookups are cached under
``sumdb/<name>/lookup/<escpath>@<escver>``: the layout of a GOPROXY tree, so
the cache directory can serve as a ``file://`` proxy. Cached lookups are
re-verified when read, and one that no longer verifies is dropped and fetched
again; a persisted head whose signature does not verify is ignored. A fork or
rollback raises SumdbError naming both tree heads; the persisted head is then
left unchanged. A 404/410 for the lookup raises ``SumdbNotFound``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from gomirror.coordination.singleflight import SingleFlight
from gomirror.errors import NotFound, SumdbError, UpstreamError
from gomirror.module.paths import escape_path, escape_version
from gomirror.sumdb.events import NoRouteEvents, RouteEvents
from gomirror.sumdb.note import Verifier, open_note, parse_verifier
from gomirror.sumdb.routes import RouteRejected, SumdbUnavailable, as_routed, fetch_verified
from gomirror.sumdb.tileauth import (
    TILE_HEIGHT,
    StateStore,
    TileAuthenticator,
    cache_prefix,
    drop_cached,
    truncate_data_tile,
)
from gomirror.sumdb.tiles import Tile, prove_tree_async, tile_parent, tree_hash_async
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

__all__ = [
    "TILE_HEIGHT",
    "StateStore",
    "SumdbClient",
    "SumdbNotFound",
    "SumdbTransport",
    "VerifiedLookup",
    "cache_prefix",
    "latest_key",
]

log = logging.getLogger(__name__)


class SumdbTransport(Protocol):
    """Fetches a path below the database URL (``lookup/...``, ``tile/...``, ``latest``).

    Raises NotFound (or Gone) for 404/410 and UpstreamError for anything else.
    A transport that is also a ``routes.RoutedTransport`` is used route by route.
    """

    async def fetch(self, path: str) -> bytes: ...


class SumdbNotFound(NotFound):
    """The checksum database has no record of the module version."""

    def __init__(self, module: str, version: str) -> None:
        self.module = module
        self.version = version
        super().__init__(f"sumdb has no record of {module}@{version}")


class Misbehavior(RouteRejected):
    """Two signed tree heads contradict each other (a fork or a rewritten history)."""


@dataclass(frozen=True, slots=True)
class VerifiedLookup:
    """A lookup response that passed every check, and whether it came from the cache."""

    body: bytes
    record_id: int
    text: bytes
    tree: Tree
    cached: bool


class _When(Enum):
    PAST = 1
    NOW = 2
    FUTURE = 3


def latest_key(name: str) -> str:
    """Return the state-store key of the persisted latest tree note for a database."""
    return f"_gomirror/sumdb/{name}/latest"


def records_needed(tile: Tile) -> int:
    """Return the tree size from which ``tile`` exists."""
    end = (tile.N << tile.H) + tile.W
    return end if tile.L == -1 else end << (tile.H * tile.L)


def _lines(text: bytes) -> list[str]:
    return text.decode("utf-8", "replace").split("\n")


def _indent(b: bytes) -> str:
    return b.decode("utf-8", "replace").replace("\n", "\n\t")


class SumdbClient:
    """Looks up and verifies go.sum lines in one checksum database (see module docstring)."""

    def __init__(
        self,
        verifier_key: str,
        transport: SumdbTransport,
        store: StateStore,
        *,
        events: RouteEvents | None = None,
    ) -> None:
        self._verifier: Verifier = parse_verifier(verifier_key.strip())
        self.name = self._verifier.name
        self._routes = as_routed(transport)
        self._store = store
        self._events: RouteEvents = events if events is not None else NoRouteEvents()
        self._tiles = TileAuthenticator(self.name, self._routes, store, self._events)
        self._lookups = SingleFlight()
        self._refreshes = SingleFlight()
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

    @property
    def remote_tile_reads(self) -> int:
        """How many tile requests went to a route (for tests and metrics)."""
        return self._tiles.remote_reads

    def _ready(self) -> bool:
        return self._initialized

    async def ready(self) -> None:
        """Load and check the persisted tree head (done once; failures are retried)."""
        if self._ready():
            return
        async with self._init_lock:
            if self._ready():  # another task finished while this one waited
                return
            stored = await self._stored_note()
            try:
                await self._merge_latest(stored)
            except SumdbError as e:
                raise SumdbError(f"checking stored {latest_key(self.name)}: {e}") from e
            self._initialized = True

    async def _stored_note(self) -> bytes:
        """The persisted head, or b"" when it is unreadable (corrupt, not a forgery: unsigned)."""
        stored = await self._store.get(latest_key(self.name)) or b""
        if not stored:
            return b""
        try:
            parse_tree(open_note(stored, [self._verifier]).text.encode())
        except SumdbError as e:
            log.error(
                "sumdb stored tree head unreadable, ignored",
                extra={"db": self.name, "key": latest_key(self.name), "reason": str(e)},
            )
            return b""
        return stored

    async def refresh(self) -> Tree:
        """Fetch the database's ``latest`` note, verify and merge it; return the latest tree."""
        await self.ready()

        async def check(body: bytes) -> None:
            if not body:  # b"" means "no head yet" to _merge_latest; from a route it is junk
                raise RouteRejected("reading tree note: the answer is empty")
            await self._merge_latest(body)

        await self._refreshes.do(
            "latest", lambda: fetch_verified(self._routes, self.name, "latest", check, self._events)
        )
        return self._latest

    async def lookup(self, module: str, version: str) -> list[str]:
        """Return the verified go.sum lines for module version (h1 and /go.mod lines)."""
        version = version.removesuffix("/go.mod")
        try:
            found = await self.lookup_record(module, version)
        except SumdbNotFound:
            raise
        except NotFound as e:
            raise SumdbNotFound(module, version) from e
        except SumdbUnavailable as e:
            raise SumdbUnavailable(f"{module}@{version}: {e}") from e
        except SumdbError as e:
            raise SumdbError(f"{module}@{version}: {e}") from e
        except UpstreamError as e:
            raise UpstreamError(f"{module}@{version}: {e}") from e
        prefixes = (f"{module} {version} ", f"{module} {version}/go.mod ")
        return [
            line for line in found.text.decode("utf-8").split("\n") if line.startswith(prefixes)
        ]

    async def lookup_record(self, module: str, version: str) -> VerifiedLookup:
        """Return the verified lookup response for module version (cached, or fetched)."""
        remote = f"lookup/{escape_path(module)}@{escape_version(version)}"
        await self.ready()
        return await self._lookups.do(
            remote, lambda: self._lookup_record(remote, f"{module} {version}")
        )

    async def _lookup_record(self, remote: str, names: str) -> VerifiedLookup:
        key = cache_prefix(self.name) + remote
        data = await self._store.get(key)
        if data is not None:
            try:
                return await self._verify_lookup(data, names, cached=True)
            except RouteRejected as e:
                log.warning(
                    "sumdb cached lookup dropped",
                    extra={"db": self.name, "key": key, "reason": str(e).split("\n", 1)[0]},
                )
                await drop_cached(self._store, key)

        async def check(body: bytes) -> VerifiedLookup:
            return await self._verify_lookup(body, names, cached=False)

        found = await fetch_verified(self._routes, self.name, remote, check, self._events)
        await self._store.put_bytes(key, found.body)
        return found

    async def _verify_lookup(self, body: bytes, names: str, *, cached: bool) -> VerifiedLookup:
        """Check a lookup for ``names`` ("<module> <version>"); RouteRejected: the response's fault."""
        try:
            record_id, text, tree_msg = parse_record(body)
        except SumdbError as e:
            raise RouteRejected(f"invalid lookup response: {e}") from e
        # A genuine record of another module version authenticates just as well: it
        # must not be cached (and served) as the answer for this one.
        if not any(line.startswith((names + " ", names + "/go.mod ")) for line in _lines(text)):
            raise RouteRejected(f"lookup response is not the record of {names.replace(' ', '@')}")
        tree = await self._merge_latest(tree_msg)
        if record_id < 0 or record_id >= tree.n:
            raise RouteRejected(f"cannot validate record {record_id} in tree of size {tree.n}")
        await self._check_record(record_id, text)
        return VerifiedLookup(body, record_id, text, tree, cached)

    # --- tiles for the pass-through --------------------------------------------------

    def covers(self, tile: Tile) -> bool:
        """Report whether the latest verified tree contains ``tile``."""
        return records_needed(tile) <= self._latest.n

    async def tile(self, tile: Tile) -> tuple[bytes, bool]:
        """Return the bytes of ``tile`` authenticated against the latest verified tree.

        The second value says whether they came from the cache. A tile beyond
        that tree, or of another height than 8, raises NotFound.
        """
        await self.ready()
        tree = self._latest
        if tile.H != TILE_HEIGHT or records_needed(tile) > tree.n:
            raise NotFound("tile not found")
        start = tile.N << tile.H
        if tile.L == -1:
            shape = Tile(tile.H, -1, tile.N, min(1 << tile.H, tree.n - start))
            data, cached = await self._tiles.data_tile(tree, shape)
            return truncate_data_tile(data, tile.W), cached
        shape_or_none = tile_parent(tile, 0, tree.n)
        assert shape_or_none is not None  # the tree covers the tile
        data, cached = await self._tiles.hash_tile(tree, shape_or_none)
        return data[: tile.W * HASH_SIZE], cached

    # --- tree heads ----------------------------------------------------------------

    async def _merge_latest(self, msg: bytes) -> Tree:
        """Merge a signed tree note into the latest tree, persisting it if it is newer.

        Returns the note's tree. A note that does not open, or contradicts the
        latest tree, raises RouteRejected (Misbehavior for a contradiction).
        """
        when, tree = await self._merge_latest_mem(msg)
        if when is not _When.FUTURE:
            return tree
        # Compare-and-swap against the store: another client may have written a newer head.
        async with self._persist_lock:
            while True:
                stored = await self._stored_note()
                if (await self._merge_latest_mem(stored))[0] is not _When.PAST:
                    return tree
                await self._store.put_bytes(latest_key(self.name), self._latest_msg)

    async def _merge_latest_mem(self, msg: bytes) -> tuple[_When, Tree]:
        if not msg:
            return (_When.NOW if self._latest.n == 0 else _When.PAST), Tree(0, EMPTY_HASH)
        try:
            note = open_note(msg, [self._verifier])
        except SumdbError as e:
            raise RouteRejected(f"reading tree note: {e}\nnote:\n{_indent(msg)}") from e
        try:
            tree = parse_tree(note.text.encode())
        except SumdbError as e:
            raise RouteRejected(f"reading tree: {e}\ntree:\n{note.text}") from e
        while True:
            latest, latest_msg = self._latest, self._latest_msg
            if tree.n <= latest.n:
                await self._check_trees(tree, msg, latest, latest_msg)
                return (_When.PAST if tree.n < latest.n else _When.NOW), tree
            await self._check_trees(latest, latest_msg, tree, msg)
            if self._latest == latest:  # nobody installed another head while we checked
                self._latest, self._latest_msg = tree, msg
                log.info("sumdb tree advanced", extra={"db": self.name, "size": tree.n})
                return _When.FUTURE, tree

    async def _check_trees(
        self, older: Tree, older_msg: bytes, newer: Tree, newer_msg: bytes
    ) -> None:
        """Require that newer's tiles give older's hash; raise Misbehavior with both heads."""
        reader = self._tiles.reader(newer)
        what = f"tree#{older.n}" + ("" if older.n == newer.n else f" against tree#{newer.n}")
        try:
            h = await tree_hash_async(older.n, reader)
        except SumdbUnavailable:
            raise
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
        raise Misbehavior(message)

    async def _check_record(self, record_id: int, text: bytes) -> None:
        latest = self._latest
        if record_id < 0 or record_id >= latest.n:
            raise RouteRejected(f"cannot validate record {record_id} in tree of size {latest.n}")
        hashes = await self._tiles.read_hashes(latest, [stored_hash_index(0, record_id)])
        if hashes[0] != record_hash(text):
            raise RouteRejected("cannot authenticate record data in server response")

"""tileauth reads a checksum database's tiles and authenticates each one before it is used.

``TileAuthenticator(db, routes, store, events)`` gives, for a signed tree head
the caller has verified:

- ``read_hashes(tree, indexes)``: stored hashes of the tree, read through tiles
  (``reader(tree)`` wraps that as an ``AsyncHashReader``);
- ``hash_tile(tree, tile)``: the bytes of a hash tile as it is in that tree;
- ``data_tile(tree, tile)``: the bytes of a data tile, each record of which
  hashes to the leaf hash the (authenticated) level-0 tile holds.

Authentication follows the go command's tile hash reader: the tiles holding
the tree's subtree roots must fold to the signed tree hash, and every other
tile is full and must hash to the value its parent tile holds. Tiles come
from the store (``sumdb/<name>/tile/...``, a GOPROXY-tree layout) or from the
routes, the same first-choice way Go reads them (the requested tile, else the
full one truncated). When authentication fails, the culprit is found rather
than guessed: a cached tile that no longer authenticates is deleted and
fetched again (bytes already authenticated once are recognised by their
digest, so a cache hit costs one hash); a route whose tiles do not authenticate is rejected (reported
to ``RouteEvents``) and the tiles are read from the next route, one route at
a time. Only authenticated tiles are ever saved or returned; when no route
gives authentic tiles the error says why for each route.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gomirror.coordination.singleflight import SingleFlight
from gomirror.errors import GomirrorError, NotFound, UpstreamError
from gomirror.sumdb.events import RouteEvents, report_rejection
from gomirror.sumdb.routes import (
    Route,
    RoutedTransport,
    RouteFailure,
    RouteUnavailable,
    failure_of,
    no_route_error,
)
from gomirror.sumdb.tiles import (
    AsyncHashReader,
    Tile,
    TilePlan,
    child_matches,
    expected_child_hash,
    hash_from_tile,
    plan_tiles,
    roots_match,
    tile_parent,
)
from gomirror.sumdb.tlog import HASH_SIZE, Tree, record_hash, stored_hash_index

log = logging.getLogger(__name__)

TILE_HEIGHT = 8
_SAVED_TILES_MEMORY = 4096  # how many saved-tile names to remember, to skip rewrites
INCONSISTENT = "downloaded inconsistent tile"


class StateStore(Protocol):
    """The part of gomirror's Storage the sumdb code needs (``DiskStorage`` satisfies it)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put_bytes(self, key: str, data: bytes) -> None: ...


@runtime_checkable
class _Deletes(Protocol):
    async def delete(self, key: str) -> None: ...


def cache_prefix(name: str) -> str:
    """Return the storage prefix of a database's cached lookups and tiles."""
    return f"sumdb/{name}/"


async def drop_cached(store: StateStore, key: str) -> None:
    """Delete a cached entry that failed authentication, when the store can delete."""
    if isinstance(store, _Deletes):
        try:
            await store.delete(key)
        except (OSError, GomirrorError):
            log.warning("sumdb cached entry not deleted", extra={"key": key})


def split_data_tile(data: bytes) -> list[bytes] | None:
    """Return the record texts of a data tile (each ends in a newline), or None if malformed."""
    if not data.endswith(b"\n\n"):
        return None
    return [piece + b"\n" for piece in data[:-2].split(b"\n\n")]


def truncate_data_tile(data: bytes, width: int) -> bytes:
    """Return the first ``width`` records of a data tile (all of it when it has fewer)."""
    records = split_data_tile(data)
    if records is None or len(records) < width:
        return data
    return b"".join(r + b"\n" for r in records[:width])


def _records_match(data: bytes, leaves: Sequence[bytes]) -> bool:
    records = split_data_tile(data)
    if records is None or len(records) != len(leaves):
        return False
    return all(record_hash(r) == h for r, h in zip(records, leaves, strict=True))


def _truncate_hashes(tile: Tile) -> Callable[[bytes], bytes]:
    return lambda full: full[: tile.W * HASH_SIZE]


def _truncate_records(tile: Tile) -> Callable[[bytes], bytes]:
    return lambda full: truncate_data_tile(full, tile.W)


@dataclass(frozen=True, slots=True)
class _Got:
    """A tile's bytes and where they came from: a store key, or a route."""

    data: bytes
    route: Route | None = None
    key: str | None = None


class _TreeHashes:
    """An AsyncHashReader over one tree."""

    def __init__(self, auth: TileAuthenticator, tree: Tree) -> None:
        self._auth = auth
        self._tree = tree

    async def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return await self._auth.read_hashes(self._tree, indexes)


class TileAuthenticator:
    """Reads and authenticates one database's tiles (see the module docstring)."""

    height = TILE_HEIGHT

    def __init__(
        self, db: str, routes: RoutedTransport, store: StateStore, events: RouteEvents
    ) -> None:
        self._db = db
        self._prefix = cache_prefix(db)
        self._routes = routes
        self._store = store
        self._events = events
        self._flight = SingleFlight()
        self._saved: OrderedDict[Tile, None] = OrderedDict()
        # Digests of tile contents already authenticated. A tile's content never
        # changes in an append-only log, so matching bytes need no second proof.
        self._authentic: OrderedDict[Tile, bytes] = OrderedDict()
        self.remote_reads = 0

    def reader(self, tree: Tree) -> AsyncHashReader:
        """Return a hash reader for ``tree``."""
        return _TreeHashes(self, tree)

    # --- the public reads ----------------------------------------------------

    async def read_hashes(self, tree: Tree, indexes: Sequence[int]) -> list[bytes]:
        """Return the stored hashes of ``tree`` at ``indexes``, read through authentic tiles."""
        plan = plan_tiles(self.height, tree.n, indexes)
        data, _ = await self._authenticate(tree, plan)
        return [
            hash_from_tile(plan.tiles[j], data[j], x)
            for x, j in zip(indexes, plan.index_order, strict=True)
        ]

    async def hash_tile(self, tree: Tree, tile: Tile) -> tuple[bytes, bool]:
        """Return hash tile ``tile`` (its shape in ``tree``) and whether it came from the cache."""
        if tile_parent(tile, 0, tree.n) != tile:
            raise ValueError(f"{tile.path()} is not a tile of tree size {tree.n}")
        known = await self._known(tile, _truncate_hashes(tile))
        if known is not None:
            return known, True
        start = tile.N << tile.H
        level = tile.L * tile.H
        indexes = [stored_hash_index(level, start + i) for i in range(tile.W)]
        plan = plan_tiles(self.height, tree.n, indexes)
        data, cached = await self._authenticate(tree, plan)
        j = plan.tiles.index(tile)
        return data[j], cached[j]

    async def data_tile(self, tree: Tree, tile: Tile) -> tuple[bytes, bool]:
        """Return data tile ``tile`` (its shape in ``tree``) and whether it came from the cache."""
        start = tile.N << tile.H
        if tile.L != -1 or min(1 << tile.H, tree.n - start) != tile.W:
            raise ValueError(f"{tile.path()} is not a data tile of tree size {tree.n}")
        known = await self._known(tile, _truncate_records(tile))
        if known is not None:
            return known, True
        leaves = await self.read_hashes(
            tree, [stored_hash_index(0, start + i) for i in range(tile.W)]
        )
        got = await self._cached(tile, _truncate_records(tile))
        if got is not None:
            if _records_match(got.data, leaves):
                self._remember(tile, got.data)
                return got.data, True
            await self._drop(tile, got)
        failures: list[RouteFailure] = []
        for route in self._routes.order():
            try:
                data = await self._fetch_from(route, tile, _truncate_records(tile))
            except (NotFound, UpstreamError) as e:
                failures.append(failure_of(route, e))
                continue
            if _records_match(data, leaves):
                self._routes.succeeded(route)
                self._remember(tile, data)
                await self._save(tile, data)
                return data, False
            detail = f"{INCONSISTENT}: records of {tile.path()} are not in tree {tree.n}"
            await self._reject(route, tile.path(), detail, set(), failures)
        raise self._error(tile.path(), failures)

    # --- authentication ----------------------------------------------------------

    async def _authenticate(self, tree: Tree, plan: TilePlan) -> tuple[list[bytes], list[bool]]:
        tiles = plan.tiles
        got = list(await asyncio.gather(*(self._read(t) for t in tiles)))
        rejected: set[int] = set()
        failures: list[RouteFailure] = []
        if not roots_match(tree, plan, [g.data for g in got]):
            got[: plan.roots] = await self._repair_roots(tree, plan, got, rejected, failures)
        order = {t: i for i, t in enumerate(tiles)}
        for i in range(plan.roots, len(tiles)):
            parent = tile_parent(tiles[i], 1, tree.n)
            if parent is None or parent not in order:
                raise AssertionError(f"tile plan lost the parent of {tiles[i].path()}")
            expect = expected_child_hash(tree.n, tiles[i], got[order[parent]].data)
            if not child_matches(tiles[i], got[i].data, expect):
                got[i] = await self._repair_child(tiles[i], expect, got[i], rejected, failures)
        for tile, g in zip(tiles, got, strict=True):
            self._remember(tile, g.data)
            if g.route is not None:
                await self._save(tile, g.data)
        return [g.data for g in got], [g.route is None for g in got]

    async def _repair_roots(
        self,
        tree: Tree,
        plan: TilePlan,
        got: Sequence[_Got],
        rejected: set[int],
        failures: list[RouteFailure],
    ) -> list[_Got]:
        roots = plan.tiles[: plan.roots]
        what = " ".join(t.path() for t in roots)
        detail = f"{INCONSISTENT}: {what} do not hash to the signed tree {tree.n}"
        first = list(got[: plan.roots])
        for tile, g in zip(roots, first, strict=True):
            if g.route is None:
                await self._drop(tile, g)
        sources = {g.route for g in first}
        if len(sources) == 1 and None not in sources:
            (only,) = sources
            assert only is not None
            await self._reject(only, what, detail, rejected, failures)
        # Read every root tile from one route at a time, so a failure names its route.
        for route in self._routes.order():
            if route.index in rejected:
                continue
            try:
                data = list(
                    await asyncio.gather(
                        *(self._fetch_from(route, t, _truncate_hashes(t)) for t in roots)
                    )
                )
            except (NotFound, UpstreamError) as e:
                failures.append(failure_of(route, e))
                continue
            if roots_match(tree, plan, data):
                self._routes.succeeded(route)
                return [_Got(d, route) for d in data]
            await self._reject(route, what, detail, rejected, failures)
        raise self._error(what, failures)

    async def _repair_child(
        self,
        tile: Tile,
        expect: bytes,
        got: _Got,
        rejected: set[int],
        failures: list[RouteFailure],
    ) -> _Got:
        detail = f"{INCONSISTENT}: {tile.path()} does not hash to its parent tile"
        if got.route is None:
            await self._drop(tile, got)
        else:
            await self._reject(got.route, tile.path(), detail, rejected, failures)
        for route in self._routes.order():
            if route.index in rejected:
                continue
            try:
                data = await self._fetch_from(route, tile, _truncate_hashes(tile))
            except (NotFound, UpstreamError) as e:
                failures.append(failure_of(route, e))
                continue
            if child_matches(tile, data, expect):
                self._routes.succeeded(route)
                return _Got(data, route)
            await self._reject(route, tile.path(), detail, rejected, failures)
        raise self._error(tile.path(), failures)

    async def _reject(
        self,
        route: Route,
        what: str,
        detail: str,
        rejected: set[int],
        failures: list[RouteFailure],
    ) -> None:
        failures.append(RouteFailure(route.name, "rejected", detail))
        if route.index in rejected:
            return  # already reported for this read
        rejected.add(route.index)
        await report_rejection(self._events, self._db, route.name, what, detail)

    def _error(self, what: str, failures: Sequence[RouteFailure]) -> GomirrorError:
        err = no_route_error(self._db, what, failures)
        if isinstance(err, NotFound):
            # A tile of a verified tree must exist: never let it look like a missing module.
            return UpstreamError(f"reading {what}: {err}")
        return err

    # --- reading and caching ----------------------------------------------------

    async def _read(self, tile: Tile) -> _Got:
        return await self._flight.do(tile.path(), lambda: self._load(tile))

    async def _load(self, tile: Tile) -> _Got:
        got = await self._cached(tile, _truncate_hashes(tile))
        if got is not None:
            return got
        failures: list[RouteFailure] = []
        for route in self._routes.order():
            try:
                data = await self._fetch_from(route, tile, _truncate_hashes(tile))
            except (NotFound, UpstreamError) as e:
                failures.append(failure_of(route, e))
                continue
            self._routes.succeeded(route)
            return _Got(data, route)
        raise self._error(tile.path(), failures)

    async def _cached(self, tile: Tile, truncate: Callable[[bytes], bytes]) -> _Got | None:
        key = self._prefix + tile.path()
        data = await self._store.get(key)
        if data is not None:
            self._mark_saved(tile)
            return _Got(data, None, key)
        full = tile.full()
        if full != tile:
            key = self._prefix + full.path()
            data = await self._store.get(key)
            if data is not None:
                self._mark_saved(tile)  # never store the partial: the full one is there
                return _Got(truncate(data), None, key)
        return None

    async def _fetch_from(
        self, route: Route, tile: Tile, truncate: Callable[[bytes], bytes]
    ) -> bytes:
        self.remote_reads += 1
        try:
            return await self._routes.fetch_from(route, tile.path())
        except RouteUnavailable:
            raise
        except (NotFound, UpstreamError):
            if tile.is_full:
                raise
            # A partial tile may have become full and been dropped by the server.
            self.remote_reads += 1
            try:
                return truncate(await self._routes.fetch_from(route, tile.full().path()))
            except (NotFound, UpstreamError):
                pass
            raise

    async def _drop(self, tile: Tile, got: _Got) -> None:
        self._saved.pop(tile, None)
        if got.key is None:
            return
        log.warning(
            "sumdb cached tile dropped",
            extra={"db": self._db, "key": got.key, "reason": "does not authenticate"},
        )
        self._saved.pop(tile.full(), None)
        await drop_cached(self._store, got.key)

    async def _known(self, tile: Tile, truncate: Callable[[bytes], bytes]) -> bytes | None:
        """Return the cached bytes of ``tile`` if they are bytes already authenticated."""
        digest = self._authentic.get(tile)
        if digest is None:
            return None
        got = await self._cached(tile, truncate)
        if got is None or hashlib.sha256(got.data).digest() != digest:
            return None  # gone or changed on disk: authenticate (and repair) again
        self._authentic.move_to_end(tile)
        return got.data

    def _remember(self, tile: Tile, data: bytes) -> None:
        self._authentic[tile] = hashlib.sha256(data).digest()
        self._authentic.move_to_end(tile)
        while len(self._authentic) > _SAVED_TILES_MEMORY:
            self._authentic.popitem(last=False)

    def _mark_saved(self, tile: Tile) -> None:
        self._saved[tile] = None
        self._saved.move_to_end(tile)
        while len(self._saved) > _SAVED_TILES_MEMORY:
            self._saved.popitem(last=False)

    async def _save(self, tile: Tile, data: bytes) -> None:
        if tile in self._saved:
            return
        self._mark_saved(tile)
        await self._store.put_bytes(self._prefix + tile.path(), data)
